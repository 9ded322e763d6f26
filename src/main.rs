//! The `gregor` binary: parse the command line, set up tracing, run the broker until SIGTERM or
//! SIGINT, exit non-zero with the cause on a start-up failure.

use clap::Parser;
use gregor::cli::{Cli, Command};
use gregor::config::KafkaConfig;
use tracing_subscriber::EnvFilter;

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot install SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => {
            if let Err(e) = r {
                tracing::error!(error = %e, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
            tracing::info!("SIGINT received");
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let Command::Broker { config, overrides } = cli.command;
    let config = match KafkaConfig::load(&config, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gregor: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Kafka's network threads and request-handler threads are one pool of async workers here:
    // as many as the two settings ask for together, up to the cores the process may run on.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let workers = config.runtime_workers(cores);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gregor: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(
        broker = config.broker_id,
        workers,
        cores,
        "async runtime started"
    );
    match runtime.block_on(gregor::server::run(config, shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "broker failed");
            eprintln!("gregor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
