//! The `rtlake` binary: parses the command line, sets up logging, builds the layered config and
//! calls the libraries. Nothing here does pipeline work itself.

mod cli;
mod commands;
mod settings;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("RTLAKE_LOG").ok())
        .unwrap_or_else(|| "info".into());
    // The embedded broker and the table libraries are chatty at info; keep rtlake's own lines.
    let filter = format!("{filter},tansu_broker=warn,tansu_storage=warn,tansu_sans_io=warn,tansu_schema=warn,rama=warn,libsql=warn,deltalake_core=warn,datafusion=warn");
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
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
