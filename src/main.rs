//! The `ipcs` command line.
use clap::{Parser, Subcommand};
use ipcs::config::{Config, LogFormat, Overrides};
use ipcs::fsck::{FsckOptions, Outcome};
use ipcs::metrics::http::{Listen, ReadyCheck};
use ipcs::metrics::Metrics;
use ipcs::server::proto::admin::admin_client::AdminClient;
use ipcs::server::proto::admin::{BlobsRequest, StatsRequest};
use ipcs::server::shutdown::{self, StopRequests, Stopped};
use ipcs::server::{self, client};
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
    /// Write images (their manifests, configs and layers, from the running ipcs) as one
    /// CAR file, for a site with no network.
    Export(ExportArgs),
    /// Import a CAR made by `ipcs export` into the running ipcs (every blob verified
    /// against its digest, all or nothing) and register its images in containerd.
    Import(ImportArgs),
    /// Report, per image and per pair, the bytes that are unique, shared as whole
    /// layers, and shared only as 256 KiB blocks (each block counted once).
    Compare(CompareArgs),
    /// Write an image containerd holds in nerdctl's `ipfs://` format (the conversion
    /// `nerdctl push ipfs://` makes) and print the CID for `nerdctl pull ipfs://`.
    IpfsPush(IpfsPushArgs),
}

#[derive(clap::Args)]
struct IpfsPushArgs {
    #[command(flatten)]
    endpoints: ipcs::cli::Endpoints,
    /// containerd image name.
    image: String,
    /// Keep this platform of an index (os/arch[/variant]; repeatable). Default: this
    /// host's platform only, as nerdctl.
    #[arg(long = "platform")]
    platforms: Vec<String>,
    /// Keep every platform of an index (its content must all be present).
    #[arg(long, conflicts_with = "platforms")]
    all_platforms: bool,
}

#[derive(clap::Args)]
struct ExportArgs {
    #[command(flatten)]
    endpoints: ipcs::cli::Endpoints,
    /// containerd image names.
    #[arg(required = true)]
    images: Vec<String>,
    /// The CAR file to write.
    #[arg(short, long)]
    output: std::path::PathBuf,
}

#[derive(clap::Args)]
struct ImportArgs {
    #[command(flatten)]
    endpoints: ipcs::cli::Endpoints,
    /// A CAR file written by `ipcs export`.
    car: std::path::PathBuf,
}

#[derive(clap::Args)]
struct CompareArgs {
    #[command(flatten)]
    endpoints: ipcs::cli::Endpoints,
    /// containerd image names.
    #[arg(required = true)]
    images: Vec<String>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
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
    /// First wait until every committed blob is in Kubo (commits answer before Kubo's
    /// import finishes), at most SECS; fails if imports are still pending then.
    #[arg(long, value_name = "SECS")]
    settle: Option<u64>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPCS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // One object per line; the RPC span's fields (method, digest, ref) in "span".
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

/// The log format the command's configuration asks for; a configuration that does not
/// load is reported by the command itself, in text.
fn log_format(cmd: &Command) -> LogFormat {
    let o = match cmd {
        Command::Serve(o) => o,
        Command::Fsck(a) => &a.config,
        _ => return LogFormat::Text,
    };
    Config::load(o).map(|c| c.log_format).unwrap_or_default()
}

/// The socket passed by a service manager, taken before the runtime's threads exist.
type Inherited = Result<
    (Option<std::os::unix::net::UnixListener>, Option<String>),
    server::activation::ActivationError,
>;

async fn serve(o: Overrides, inherited: Inherited) -> Result<(), String> {
    let (inherited, note) = inherited.map_err(|e| e.to_string())?;
    if let Some(note) = note {
        tracing::info!("socket activation: {note}");
    }
    let config = Config::load(&o).map_err(|e| e.to_string())?;
    // Before anything slow: a signal during start-up then ends the process as a stop.
    let mut stops = StopRequests::from_signals().map_err(|e| format!("signal handlers: {e}"))?;
    let dir = config.data_dir.clone();
    tokio::task::spawn_blocking(move || private_dir(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("data_dir {}: {e}", config.data_dir.display()))?;
    let metrics = Metrics::new();
    let node = ipcs::node::open(&config, metrics.clone())
        .await
        .map_err(|e| e.to_string())?;
    let store = node.store;
    match store.backend().version().await {
        Ok(v) => tracing::info!(kubo = %config.kubo_api, version = %v, "kubo reachable"),
        // Not fatal: ipcs starts and answers with clear errors until Kubo is back.
        Err(e) => tracing::warn!(error = %e, "kubo not reachable yet"),
    }
    let peers = node.peers.clone();
    let mut mirror = None;
    if let Some(addr) = &config.mirror_listen {
        let addr = addr
            .parse()
            .map_err(|e| format!("mirror_listen {addr}: {e}"))?;
        let dir = config.data_dir.clone();
        let secret = tokio::task::spawn_blocking(move || ipcs::mirror::auth::load_or_create(&dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("mirror secret: {e}"))?;
        mirror = Some(
            ipcs::mirror::serve(store.clone(), node.peers, addr, secret, &config)
                .await
                .map_err(|e| format!("registry mirror on {addr}: {e}"))?,
        );
    }
    let mut metrics_endpoint = None;
    if let Some(at) = &config.metrics_listen {
        let at = Listen::parse(at).map_err(|e| format!("metrics_listen {e}"))?;
        let s = store.clone();
        let ready: ReadyCheck = std::sync::Arc::new(move || {
            let s = s.clone();
            Box::pin(async move { s.ready().await })
        });
        metrics_endpoint = Some(
            ipcs::metrics::http::serve(&at, metrics, ready)
                .await
                .map_err(|e| format!("metrics endpoint on {at}: {e}"))?,
        );
    }
    let activated = inherited.is_some();
    let listener = server::listener(&config.socket, inherited).map_err(|e| e.to_string())?;
    tracing::info!(socket = %config.socket.display(), data_dir = %config.data_dir.display(), socket_activation = activated, "serving containerd content API");
    let (begin_drain, drain_begun) = tokio::sync::oneshot::channel::<()>();
    let differ = ipcs::differ::Differ::new(store.clone(), config.data_dir.join("tmpmounts"));
    let grpc = server::serve(
        store,
        differ,
        node.archive,
        listener,
        config.max_message_bytes,
        async {
            let _ = drain_begun.await;
        },
    );
    tokio::pin!(grpc);
    let signal = tokio::select! {
        r = &mut grpc => {
            r.map_err(|e| e.to_string())?;
            return Err("the socket stopped accepting connections".into());
        }
        name = stops.next() => name,
    };
    tracing::info!(
        signal,
        drain_secs = config.drain_secs,
        "stopping: no new connections; requests in flight may finish (a second signal stops at once)"
    );
    let _ = begin_drain.send(());
    let in_flight = async {
        let (r, (), ()) = tokio::join!(
            grpc,
            async {
                if let Some(m) = mirror {
                    m.stop().await
                }
            },
            async {
                if let Some(m) = metrics_endpoint {
                    m.stop().await
                }
            }
        );
        if let Err(e) = r {
            tracing::warn!(error = %e, "content API ended with an error while draining");
        }
    };
    // The member record goes while requests drain (its own bound): the others stop
    // ranking this node for new blobs at their next pinset read.
    let (stopped, ()) = tokio::join!(
        shutdown::drain(in_flight, config.drain(), &mut stops),
        peers.leave_swarm()
    );
    match stopped {
        Stopped::Drained => {
            tracing::info!("stopped: every request in flight finished");
            Ok(())
        }
        Stopped::DeadlineExceeded(d) => Err(format!(
            "stopped after the drain deadline ({} s, drain_secs) with requests still in flight; \
             open ingests resume on the next start",
            d.as_secs()
        )),
        Stopped::Interrupted(name) => Err(format!(
            "stopped at once by a second {name}; requests in flight were cut, open ingests resume on the next start"
        )),
    }
}

/// Makes `dir` (created if absent) enterable by its owner only: it holds whole blobs (the
/// cache, ingests) and the mirror's secret, which no other local account may read.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
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
    if let Some(secs) = a.settle {
        let mut admin = ipcs::server::admin_client::Admin::connect(&a.socket).await?;
        admin.settle(std::time::Duration::from_secs(secs)).await?;
    }
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
    if let Some(secs) = a.settle {
        let mut admin = ipcs::server::admin_client::Admin::connect(&a.socket).await?;
        admin.settle(std::time::Duration::from_secs(secs)).await?;
    }
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
    let kept = match s.kept_once {
        true => "once: Kubo's filestore references the stored files",
        false => "twice: copied into Kubo's blockstore, cached here",
    };
    println!("blobs kept:  {kept}");
    println!(
        "pending imports: {} (committed, kubo's import still to come)",
        s.pending_imports
    );
    println!("disk (bytes on disk per part):");
    println!("  index:     {}", s.index_bytes);
    println!("  ingests:   {}", s.ingest_bytes);
    println!("  cache:     {}", s.cache_bytes);
    println!(
        "  stored:    {} in {} files (filestore references)",
        s.stored_bytes, s.stored_blobs
    );
    println!("  kubo repo: {} (ipfs repo stat)", s.kubo_repo_bytes);
    println!(
        "  total:     {}",
        s.index_bytes + s.ingest_bytes + s.cache_bytes + s.stored_bytes + s.kubo_repo_bytes
    );
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
            // Reading every DAG back takes a while: a bar on a terminal.
            let bar = ipcs::cli::progress::LazyBytes::new("verify");
            let shown = bar.clone();
            let r = if a.verify {
                let progress: ipcs::fsck::Progress =
                    std::sync::Arc::new(move |done, total| shown.set(done, total));
                ipcs::fsck::run_with_progress(&config, opts, progress).await
            } else {
                ipcs::fsck::run(&config, opts).await
            };
            bar.end(r.is_ok());
            r.map_err(|e| e.to_string())
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
        "fsck: blobs={} pins={} own_pins={} ingests={} cache_files={} stored_files={} \
         pending_imports={} verified={} found={} repaired={} remaining={} unexpected={} \
         kinds={} pin_name={}",
        r.blobs,
        r.pins,
        r.own_pins,
        r.ingests,
        r.cache_files,
        r.stored_files,
        r.pending_imports,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(log_format(&cli.command));
    // Socket activation changes the environment, which is only sound single-threaded.
    let inherited = match &cli.command {
        Command::Serve(_) => Some(server::activation::take()),
        _ => None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipcs: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async move {
        let result = match cli.command {
            Command::Fsck(a) => return fsck(a).await,
            Command::Serve(o) => serve(o, inherited.expect("taken for serve")).await,
            Command::Blobs(a) => blobs(a).await,
            Command::Status(a) => status(a).await,
            Command::Export(a) => ipcs::cli::car::export(&a.endpoints, &a.images, &a.output).await,
            Command::Import(a) => ipcs::cli::car::import(&a.endpoints, &a.car).await,
            Command::IpfsPush(a) => {
                ipcs::cli::ipfs_push::ipfs_push(
                    &a.endpoints,
                    &a.image,
                    &a.platforms,
                    a.all_platforms,
                )
                .await
            }
            Command::Compare(a) => {
                ipcs::cli::compare::compare(&a.endpoints, &a.images, a.json).await
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ipcs: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // Requests cut by a forced stop may still be running on the runtime: do not wait.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
