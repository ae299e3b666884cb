//! Lays the release binary's hot functions out together (lld's `--symbol-ordering-file`).
//!
//! The functions a pipeline runs are spread over the binary's 167 MiB of code, and the kernel
//! maps code in 64 KiB windows around each first touch: a drain of the 90-minute replay held
//! ~104 MiB of the binary resident, a third of the process's peak RSS, for ~12 MiB of code it
//! actually ran. `link/hot-functions.txt` lists the functions that profiled runs executed
//! (hottest first; `scripts/hot-functions.sh` makes it again), so that they share a few windows.
//! A name the build no longer has is skipped quietly: a stale list costs memory, never
//! correctness. Debug builds are left alone (their names differ and links must stay quick).

fn main() {
    let list = "link/hot-functions.txt";
    println!("cargo:rerun-if-changed={list}");
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    // The option is lld's (GNU ld has none like it): given only when lld links, as
    // `.cargo/config.toml` asks on x86-64 Linux.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if !flags.split('\x1f').any(|f| f.ends_with("-fuse-ld=lld")) {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bin=rtlake=-Wl,--symbol-ordering-file={dir}/{list}");
    println!("cargo:rustc-link-arg-bin=rtlake=-Wl,--no-warn-symbol-ordering");
}
