//! The `rtlake` binary: parses the command line, sets up logging, builds the layered config and
//! calls the libraries. Nothing here does pipeline work itself.

mod cli;
mod commands;
mod demo_cmd;
mod lake_cmd;
mod settings;
mod topics_cmd;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // By default rtlake's own crates log at info and the libraries (broker, Delta kernel,
    // DataFusion) only warnings; --log / RTLAKE_LOG replace the whole filter.
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
            // delta-kernel logs an ERROR (#[instrument(err)]) when a table is probed before it
            // exists; rtlake handles that result itself, so the event is noise.
            ["warn", "buoyant_kernel=off"]
                .iter()
                .map(|s| s.to_string())
                .chain(ours.iter().map(|c| format!("{c}=info")))
                .collect::<Vec<_>>()
                .join(",")
        });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
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
