//! One module per subcommand; each builds its configuration from the layers and its flags,
//! and calls a library.

mod bench;
mod broker;
mod demo;
mod lake;
mod produce;
mod replay;
mod run;
mod serve;
mod sql;
mod topics;

use crate::cli::{BenchCommand, Cli, Command, ProduceCommand};
use crate::config::{Config, Sources};
use anyhow::Result;
use rtlake_core::config::{ConfigError, Origins};

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Demo(a) => demo::demo(&cli, a).await,
        Command::Broker(a) => broker::broker(&cli, a).await,
        Command::Produce {
            what: ProduceCommand::Bikes(a),
        } => produce::bikes(&cli, a).await,
        Command::Produce {
            what: ProduceCommand::Gbfs(a),
        } => produce::gbfs(&cli, a).await,
        Command::Run(a) => run::run(&cli, a).await,
        Command::Sql(a) => sql::sql(&cli, a).await,
        Command::Serve(a) => serve::serve(&cli, a).await,
        Command::Topics { op } => topics::topics(&cli, op).await,
        Command::Lake { op } => lake::lake(&cli, op).await,
        Command::Replay(a) => replay::replay(&cli, a).await,
        Command::Bench {
            what: BenchCommand::Consume { kafka, count },
        } => bench::consume(&cli, kafka, *count).await,
    }
}

/// Loads the configuration (defaults < file < environment) with a subcommand's flags on top.
pub(crate) fn load(
    cli: &Cli,
    flags: impl FnOnce(&mut Config, &mut Origins),
) -> Result<Config, ConfigError> {
    crate::config::load(
        Sources {
            file: cli.config.as_deref(),
            pipeline: None,
        },
        flags,
    )
}
