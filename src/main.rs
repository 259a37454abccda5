//! The `ipcs` command line.
use clap::{Parser, Subcommand};
use ipcs::config::{Config, Overrides};
use ipcs::server;
use ipcs::store::ContentStore;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ipcs",
    version,
    about = "A containerd content store that keeps every blob in IPFS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve containerd's content API on a unix socket.
    Serve(Overrides),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPCS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

async fn serve(o: Overrides) -> Result<(), String> {
    let config = Config::load(&o).map_err(|e| e.to_string())?;
    let store = ContentStore::open(&config)
        .await
        .map_err(|e| e.to_string())?;
    match store.kubo().version().await {
        Ok(v) => tracing::info!(kubo = %config.kubo_api, version = %v, "kubo reachable"),
        // Not fatal: ipcs starts and answers with clear errors until Kubo is back.
        Err(e) => tracing::warn!(error = %e, "kubo not reachable yet"),
    }
    let listener = server::bind_socket(&config.socket).map_err(|e| e.to_string())?;
    tracing::info!(socket = %config.socket.display(), data_dir = %config.data_dir.display(), "serving containerd content API");
    server::serve(store, listener, config.max_message_bytes, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(o) => serve(o).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcs: {e}");
            ExitCode::FAILURE
        }
    }
}
