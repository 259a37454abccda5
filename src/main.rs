//! The `ipcs` command line.
use clap::{Parser, Subcommand};
use ipcs::config::{Config, Overrides};
use ipcs::server::proto::admin::admin_client::AdminClient;
use ipcs::server::proto::admin::{BlobsRequest, StatsRequest};
use ipcs::server::{self, client};
use ipcs::store::{self, ContentStore, FsckOptions, Outcome};
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

// Parsed once per process; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve containerd's content API on a unix socket.
    Serve(Overrides),
    /// Print every committed blob as `digest cid size`.
    Blobs(ClientArgs),
    /// Print the store's totals and whether its Kubo node answers.
    Status(ClientArgs),
    /// Check a stopped store's data dir against Kubo (pins, DAGs, ingests, cache) and
    /// optionally repair it. Exits 1 when problems remain, 2 when it cannot run.
    Fsck(FsckArgs),
}

#[derive(clap::Args)]
struct FsckArgs {
    #[command(flatten)]
    config: Overrides,
    /// Repair what is found (re-pin, re-import from cache, finish commits a crash cut
    /// after Kubo's pinned add, unpin this store's orphan pins, drop unrecoverable records
    /// and debris).
    #[arg(long)]
    repair: bool,
    /// Also read every DAG back from Kubo and hash every cache file.
    #[arg(long)]
    verify: bool,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// Socket of a running `ipcs serve`.
    #[arg(long, env = "IPCS_SOCKET", default_value = "/run/ipcs/ipcs.sock")]
    socket: std::path::PathBuf,
    /// containerd filter strings (e.g. 'labels."containerd.io/gc.root"'), OR'ed.
    #[arg(long = "filter")]
    filters: Vec<String>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPCS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    if let Some(addr) = &config.mirror_listen {
        let addr = addr
            .parse()
            .map_err(|e| format!("mirror_listen {addr}: {e}"))?;
        ipcs::mirror::serve(store.clone(), addr)
            .await
            .map_err(|e| format!("registry mirror on {addr}: {e}"))?;
    }
    let listener = server::bind_socket(&config.socket).map_err(|e| e.to_string())?;
    tracing::info!(socket = %config.socket.display(), data_dir = %config.data_dir.display(), "serving containerd content API");
    server::serve(store, listener, config.max_message_bytes, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn admin_client(
    socket: &std::path::Path,
) -> Result<AdminClient<tonic::transport::Channel>, String> {
    let channel = client::connect(socket)
        .await
        .map_err(|e| format!("cannot reach ipcs at {}: {e}", socket.display()))?;
    Ok(AdminClient::new(channel))
}

async fn blobs(a: ClientArgs) -> Result<(), String> {
    let mut c = admin_client(&a.socket).await?;
    let mut stream = c
        .blobs(BlobsRequest { filters: a.filters })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    while let Some(batch) = stream
        .message()
        .await
        .map_err(|s| s.message().to_string())?
    {
        for b in batch.blobs {
            println!("{} {} {}", b.digest, b.cid, b.size);
        }
    }
    Ok(())
}

async fn status(a: ClientArgs) -> Result<(), String> {
    let mut c = admin_client(&a.socket).await?;
    let s = c
        .stats(StatsRequest {})
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    println!("socket:      {}", a.socket.display());
    println!("blobs:       {} ({} bytes)", s.blobs, s.blob_bytes);
    println!("ingests:     {}", s.ingests);
    println!("cache:       {} bytes", s.cache_bytes);
    if s.kubo_error.is_empty() {
        println!("kubo:        {} (version {})", s.kubo_api, s.kubo_version);
        Ok(())
    } else {
        println!("kubo:        {} UNREACHABLE: {}", s.kubo_api, s.kubo_error);
        Err("kubo is unreachable".into())
    }
}

/// Prints each finding, then one `fsck:` summary line scripts can parse.
async fn fsck(a: FsckArgs) -> ExitCode {
    let report = match Config::load(&a.config) {
        Err(e) => Err(e.to_string()),
        Ok(config) => {
            let opts = FsckOptions {
                repair: a.repair,
                verify: a.verify,
            };
            store::fsck(&config, opts).await.map_err(|e| e.to_string())
        }
    };
    let r = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ipcs fsck: {e}");
            return ExitCode::from(2);
        }
    };
    for f in &r.findings {
        let outcome = match &f.outcome {
            Outcome::Reported => "not repaired".to_string(),
            Outcome::Repaired(what) => format!("repaired: {what}"),
            Outcome::Failed(why) => format!("REPAIR FAILED: {why}"),
        };
        println!("{} {} ({}): {outcome}", f.kind.name(), f.subject, f.detail);
    }
    let kinds: Vec<String> = r
        .counts()
        .iter()
        .map(|(k, n)| format!("{}={n}", k.name()))
        .collect();
    let unexpected = r
        .findings
        .iter()
        .filter(|f| !f.kind.expected_after_crash())
        .count();
    println!(
        "fsck: blobs={} pins={} own_pins={} ingests={} cache_files={} verified={} found={} \
         repaired={} remaining={} unexpected={} kinds={} pin_name={}",
        r.blobs,
        r.pins,
        r.own_pins,
        r.ingests,
        r.cache_files,
        r.verified,
        r.findings.len(),
        r.repaired(),
        r.remaining(),
        unexpected,
        if kinds.is_empty() {
            "-".to_string()
        } else {
            kinds.join(",")
        },
        r.pin_name,
    );
    if r.remaining() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fsck(a) => return fsck(a).await,
        Command::Serve(o) => serve(o).await,
        Command::Blobs(a) => blobs(a).await,
        Command::Status(a) => status(a).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipcs: {e}");
            ExitCode::FAILURE
        }
    }
}
