//! Crash-safety driver for integration/chaos.sh: runs concurrent ingests (random sizes up
//! to 8 MiB), commits, deletes, reads and abandoned or resumed ingests against a real
//! `ipcs serve`, SIGKILLs it at a random moment of every round, checks the data dir with
//! `ipcs fsck --repair` while it is down (only repairs a crash can explain are accepted),
//! restarts it, lets the round's operations continue, then verifies everything the client
//! knows (see verify.rs). Prints the figures at the end; exits 1 on any failure.
//!
//!   chaos --ipcs BIN --kubo-api URL --work DIR [--rounds 20] [--ops 200]
//!         [--concurrency 8] [--seed 1] [--time-limit 600]
mod data;
mod server;
mod verify;
mod workload;

use rand::{Rng, SeedableRng};
use server::Server;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::{Shared, Worker};

struct Args {
    ipcs: PathBuf,
    kubo_api: String,
    work: PathBuf,
    rounds: u64,
    ops: u64,
    concurrency: u64,
    seed: u64,
    time_limit: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut m = BTreeMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let k = k
            .strip_prefix("--")
            .ok_or(format!("unexpected {k}"))?
            .to_string();
        let v = it.next().ok_or(format!("--{k} needs a value"))?;
        m.insert(k, v);
    }
    let get = |k: &str| m.get(k).cloned();
    let num = |k: &str, d: u64| -> Result<u64, String> {
        get(k).map_or(Ok(d), |v| v.parse().map_err(|e| format!("--{k}: {e}")))
    };
    Ok(Args {
        ipcs: get("ipcs").ok_or("--ipcs BIN is required")?.into(),
        kubo_api: get("kubo-api").ok_or("--kubo-api URL is required")?,
        work: get("work").ok_or("--work DIR is required")?.into(),
        rounds: num("rounds", 20)?,
        ops: num("ops", 200)?,
        concurrency: num("concurrency", 8)?,
        seed: num("seed", 1)?,
        time_limit: Duration::from_secs(num("time-limit", 600)?),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut srv = Server::new(args.ipcs.clone(), &args.work, args.kubo_api.clone());
    if let Err(e) = srv.start().await {
        eprintln!("chaos: {e}");
        return ExitCode::FAILURE;
    }
    let kubo = ipcs::ipfs::KuboClient::new(&args.kubo_api, Duration::from_secs(60), 1 << 20)
        .expect("kubo client");
    let (up, _) = tokio::sync::watch::channel(0u64);
    let shared = Arc::new(Shared {
        socket: srv.socket.clone(),
        pools: Default::default(),
        counts: Default::default(),
        errors: Mutex::new(Vec::new()),
        epoch: AtomicU64::new(0),
        down: AtomicBool::new(false),
        up,
        stop: AtomicBool::new(false),
        next_seed: AtomicU64::new(args.seed << 32),
        run_id: args.seed,
    });
    let mut kills = 0u64;
    let mut verified = 0u64;
    let mut fsck_findings: BTreeMap<String, u64> = BTreeMap::new();
    let mut fsck_runs = 0u64;
    let mut slowest_fsck = Duration::ZERO;
    let mut rounds_done = 0u64;
    for round in 1..=args.rounds {
        if started.elapsed() > args.time_limit {
            println!("# time limit reached after {} rounds", rounds_done);
            break;
        }
        let tried0 = shared.counts.tried.load(Ordering::SeqCst);
        shared.stop.store(false, Ordering::SeqCst);
        let workers: Vec<_> = (0..args.concurrency)
            .map(|i| tokio::spawn(Worker::new(shared.clone(), rng.random::<u64>() ^ i).run()))
            .collect();
        // The kill lands at a random moment while the workers are busy.
        let delay = Duration::from_millis(rng.random_range(200..=3000));
        tokio::time::sleep(delay).await;
        shared.down.store(true, Ordering::SeqCst);
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        srv.kill9();
        kills += 1;
        let t0 = Instant::now();
        let repair = srv.fsck(&["--repair"]);
        fsck_runs += 1;
        slowest_fsck = slowest_fsck.max(t0.elapsed());
        for (k, n) in &repair.kinds {
            *fsck_findings.entry(k.clone()).or_default() += n;
        }
        if repair.code != 0 || repair.unexpected != 0 || repair.remaining != 0 {
            shared.fail(format!(
                "round {round}: fsck --repair after the kill (exit {}):\n{}",
                repair.code, repair.output
            ));
        }
        let after = srv.fsck(&[]);
        if after.code != 0 || after.found != 0 {
            shared.fail(format!(
                "round {round}: fsck not clean after repair (exit {}):\n{}",
                after.code, after.output
            ));
        }
        if let Err(e) = srv.start().await {
            shared.fail(format!("round {round}: restart: {e}"));
            break;
        }
        shared.down.store(false, Ordering::SeqCst);
        shared.up.send_modify(|g| *g += 1);
        // The round's operations continue against the restarted server.
        let deadline = Instant::now() + Duration::from_secs(120);
        while shared.counts.tried.load(Ordering::SeqCst) - tried0 < args.ops
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shared.stop.store(true, Ordering::SeqCst);
        for w in workers {
            let _ = w.await;
        }
        let last = round == args.rounds || started.elapsed() > args.time_limit;
        let check = verify::round(&shared, &kubo, last, rng.random()).await;
        verified += check.verified;
        rounds_done += 1;
        let fsck_kinds: Vec<String> = repair
            .kinds
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        println!(
            "# round {round}: killed after {:.1}s, ops {}, fsck repaired {} [{}], verified {}, \
             resolved commits {}, partials resumed {} aborted {}",
            delay.as_secs_f64(),
            shared.counts.tried.load(Ordering::SeqCst) - tried0,
            repair.found,
            fsck_kinds.join(","),
            check.verified,
            check.resolved_commits,
            check.resumed,
            check.aborted,
        );
    }
    // Orderly stop, then a verifying fsck must find nothing at all.
    srv.stop();
    let t0 = Instant::now();
    let last = srv.fsck(&["--verify"]);
    let final_fsck = t0.elapsed();
    if last.code != 0 || last.found != 0 {
        shared.fail(format!(
            "final fsck --verify (exit {}):\n{}",
            last.code, last.output
        ));
    }
    let c = &shared.counts;
    let errors = shared.errors.lock().unwrap().clone();
    let kinds: Vec<String> = fsck_findings
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    let blobs_now = shared.pools.lock().unwrap().committed.len();
    println!("# ---- chaos figures ----");
    println!(
        "# rounds: {rounds_done}, kills survived: {kills}, restarts: {}",
        kills
    );
    println!(
        "# ops tried: {}, committed: {}, deleted: {}, aborted: {}, abandoned mid-stream: {}, \
         resumed: {}, reads: {}, cut by a kill: {}",
        c.tried.load(Ordering::SeqCst),
        c.committed.load(Ordering::SeqCst),
        c.deleted.load(Ordering::SeqCst),
        c.aborted.load(Ordering::SeqCst),
        c.abandoned.load(Ordering::SeqCst),
        c.resumed.load(Ordering::SeqCst),
        c.reads.load(Ordering::SeqCst),
        c.interrupted.load(Ordering::SeqCst),
    );
    println!(
        "# blobs verified (Read + ipfs cat + pinned): {verified}; blobs at the end: {blobs_now}"
    );
    println!(
        "# fsck after kills: {fsck_runs} runs, findings repaired: {} (all expected after a crash: {}); \
         slowest {:.2}s; final fsck --verify: found {} in {:.2}s",
        if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") },
        errors.iter().all(|e| !e.contains("fsck --repair")),
        slowest_fsck.as_secs_f64(),
        last.found,
        final_fsck.as_secs_f64(),
    );
    println!(
        "# ipcs peak RSS: {:.1} MiB; slowest restart until listening: {:.2}s; total {:.0}s",
        srv.peak_rss_kib as f64 / 1024.0,
        srv.slowest_start.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if errors.is_empty() {
        println!("ok - chaos: {kills} kills survived, no inconsistency");
        ExitCode::SUCCESS
    } else {
        println!("not ok - chaos: {} failures", errors.len());
        for e in errors.iter().take(20) {
            println!("#   {e}");
        }
        ExitCode::FAILURE
    }
}
