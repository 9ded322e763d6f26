//! Command-line interface (`clap`): `gregor broker --config server.properties [--override k=v]…`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// gregor: a Kafka-compatible message broker coordinated by ZooKeeper.
#[derive(Debug, Parser)]
#[command(name = "gregor", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker.
    Broker {
        /// Path to a Kafka-style server.properties file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Override one property, e.g. `--override broker.id=2` (repeatable; later ones win).
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_command() {
        let cli = Cli::try_parse_from([
            "gregor",
            "broker",
            "--config",
            "s.properties",
            "--override",
            "broker.id=2",
            "--override",
            "log.dirs=/tmp/x",
        ])
        .unwrap();
        let Command::Broker { config, overrides } = cli.command;
        assert_eq!(config, PathBuf::from("s.properties"));
        assert_eq!(overrides, vec!["broker.id=2", "log.dirs=/tmp/x"]);
    }
}
