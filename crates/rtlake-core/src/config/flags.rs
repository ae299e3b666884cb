//! [`flags!`](crate::flags): a section's command-line flags, declared beside the section.

/// Declares the flags that set fields of a [`Section`](crate::config::Section).
///
/// Each flag is a field of the section, written with its help text and its type; the macro
/// makes a `clap::Args` struct of `Option`s and an `apply` that sets each given flag's field and
/// notes the flag as the value's origin. A flag is named after its field (`max_batch_events`
/// is `--max-batch-events`) unless `as "name"` renames it; a `switch` is a flag without a value
/// that sets its field to the value given. Since `apply` assigns `section.field = value`, a flag
/// that names no field, or has a type its field does not take, does not compile. The crate
/// that uses it depends on `clap`.
///
/// ```ignore
/// rtlake_core::flags! {
///     /// `rtlake run`'s settings.
///     pub struct RunFlags for RunConfig {
///         /// An epoch closes at this many events [run.max-batch-events; default 50000].
///         max_batch_events: usize,
///         /// The consumer group [run.group-id; default rtlake-<pipeline>].
///         group_id as "group": String,
///     }
///     switches {
///         /// Skip offsets deleted by retention with a warning instead of stopping.
///         fail_on_data_loss as "no-fail-on-data-loss" = false,
///     }
/// }
/// ```
#[macro_export]
macro_rules! flags {
    (
        $(#[$sm:meta])*
        $vis:vis struct $name:ident for $section:ty {
            $(
                $(#[$fm:meta])*
                $field:ident $(as $flag:literal)? : $ty:ty
            ),* $(,)?
        }
        $(switches {
            $(
                $(#[$wm:meta])*
                $sfield:ident as $sflag:literal = $svalue:expr
            ),* $(,)?
        })?
    ) => {
        $(#[$sm])*
        #[derive(Clone, Debug, Default, clap::Args)]
        $vis struct $name {
            $(
                $(#[$fm])*
                #[arg(long $(= $flag)?)]
                pub $field: Option<$ty>,
            )*
            $($(
                $(#[$wm])*
                #[arg(long = $sflag)]
                pub $sfield: bool,
            )*)?
        }

        impl $name {
            /// Sets the section's field of each flag given, noting the flag as its origin.
            pub fn apply(self, section: &mut $section, origins: &mut $crate::config::Origins) {
                let name = <$section as $crate::config::Section>::NAME;
                $(
                    if let Some(v) = self.$field {
                        section.$field = v.into();
                        let flag = $crate::flags!(@flag $field $($flag)?);
                        origins.set(
                            &format!("{name}.{}", stringify!($field).replace('_', "-")),
                            format!("flag --{}", flag.replace('_', "-")),
                        );
                    }
                )*
                $($(
                    if self.$sfield {
                        section.$sfield = $svalue;
                        origins.set(
                            &format!("{name}.{}", stringify!($sfield).replace('_', "-")),
                            concat!("flag --", $sflag),
                        );
                    }
                )*)?
            }
        }
    };
    (@flag $field:ident) => { stringify!($field) };
    (@flag $field:ident $flag:literal) => { $flag };
}
