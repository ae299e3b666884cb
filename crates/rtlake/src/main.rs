//! The `rtlake` binary: parses the command line, sets up logging, builds the layered config and
//! calls the libraries. Nothing here does pipeline work itself.

/// `println!` for a command's output: when stdout's reader has gone (`rtlake run | head -1`),
/// the process ends quietly with success, as other writers into `head` do, instead of panicking
/// as `println!` does (exit 101). Commands print what they have done after doing it (`run`'s
/// summary comes after its last epoch landed), so ending there loses no work.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout_line(format_args!($($arg)*))
    };
}

mod cli;
mod commands;
mod config;
mod pipeline_file;
mod runtime;

use clap::Parser;
use std::process::ExitCode;

/// Caps glibc's malloc arenas at twice the cores (at least 4; glibc's default is 8 per core).
/// With the engine's threads (stages, decoding, commits, the next file chunk) allocating at once,
/// the default arenas held 330-370 MB at the peak of the 90-minute replay from a file; with 4 on
/// 2 cores, 190-235 MB and no slower (`bench/README.md`). mimalloc, tried instead, peaked at
/// 400-500 MB with twice the system time. Must run before any other thread starts.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let arenas = i32::try_from((2 * cores).max(4)).unwrap_or(i32::MAX);
        // SAFETY: mallopt only sets an allocator parameter; it is called before any other
        // thread exists, as glibc asks.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Fixes glibc's mmap threshold at its ceiling (32 MiB) and raises its trim threshold, so the
/// engine's per-epoch buffers (an epoch's messages, Arrow columns, Parquet pages: a few MiB each)
/// come from the arenas and stay there when freed, instead of a fresh `mmap` per buffer whose
/// every page faults in zeroed. The 90-minute replay from a file, 14 pairs in turn against
/// glibc's adaptive thresholds (set through `GLIBC_TUNABLES`): CPU 0.95, system time 0.47 s
/// instead of 0.60, peak 30 MB higher (`bench/README.md`, "The Kafka path, eighteenth step").
/// What is freed goes back to the system on the periodic trim below. Must run before any other
/// thread starts.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: as in `cap_malloc_arenas`.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    }
}

/// Hands the allocator's free pages back to the system every 10 seconds. glibc returns memory
/// freed in the middle of an arena only when asked (`malloc_trim`); a live pipeline's epochs
/// allocate and free in a pattern that left 70-80 MB free but held after five minutes at 40x,
/// which put the process past 300 MB (`bench/README.md`, "The Kafka path, fourth step"). A trim
/// takes a few milliseconds.
fn trim_malloc_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(10));
                    // SAFETY: malloc_trim only releases free memory; glibc locks each arena.
                    unsafe {
                        libc::malloc_trim(0);
                    }
                }
            });
        if let Err(e) = spawned {
            eprintln!("warning: no malloc-trim thread: {e}");
        }
    }
}

/// Standard error for the log, where a line that cannot be delivered because the reader went
/// away (`rtlake run ... 2>&1 | head`) is dropped. tracing-subscriber reports a failed write
/// with `eprintln!`, which panics on that same closed stderr: the panic unwound through a
/// running pipeline, and dropping its Kafka consumer on the way out hung the process for good.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::io::stderr().write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(buf.len()),
            written => written,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match std::io::stderr().flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            flushed => flushed,
        }
    }
}

/// Writes `line` and a newline to stdout (see [`out!`]).
fn stdout_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}

fn main() -> ExitCode {
    cap_malloc_arenas();
    keep_freed_buffers();
    trim_malloc_periodically();
    let cli = cli::Cli::parse();
    // By default rtlake's own crates log at info and the libraries (broker, Delta kernel,
    // DataFusion) only warnings; --log / RTLAKE_LOG replace that base filter.
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("RTLAKE_LOG").ok())
        .unwrap_or_else(|| {
            let ours = [
                "rtlake",
                "rtlake_core",
                "rtlake_kafka",
                "rtlake_broker",
                "rtlake_bikes",
                "rtlake_lake",
                "rtlake_stream",
                "rtlake_query",
            ];
            std::iter::once("warn".to_string())
                .chain(ours.iter().map(|c| format!("{c}=info")))
                .collect::<Vec<_>>()
                .join(",")
        });
    let mut env = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into());
    // Library events that are noise at any level, kept quiet under any filter that does not
    // name their target itself (so `RTLAKE_LOG=warn` does not print them, and
    // `RTLAKE_LOG=warn,buoyant_kernel=debug` still does):
    // - delta-kernel logs an ERROR (#[instrument(err)]) when a table is probed before it
    //   exists, on every new table; rtlake handles that result itself.
    // - delta-rs' MERGE warns on every upsert that the scan reported no skipped-file metric and
    //   that it derived one: nothing is wrong, and the count is right.
    // - rdkafka logs an ERROR when it drops a consumer that was closed already, which the
    //   processor does on purpose (rtlake_stream's `source::close`); that module's other two
    //   messages are warnings about events it ignores.
    for (target, directive) in [
        ("buoyant_kernel", "buoyant_kernel=off"),
        ("deltalake_core", "deltalake_core::operations::merge=error"),
        ("rdkafka", "rdkafka::consumer::base_consumer=off"),
    ] {
        if !filter.contains(target) {
            env = env.add_directive(directive.parse().expect("a valid directive"));
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(|| LogWriter)
        // Colours only on a terminal: logs written to files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::dispatch(cli));
    // A client call stuck in librdkafka on a blocking thread (a transaction call that outlived
    // its timeout when a broker died) must not keep a finished command from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<rtlake_core::ConfigError>().is_some() {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
