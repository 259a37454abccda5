//! Model-based fuzzing of Write streams against a real `ipcs serve` (and real Kubo):
//! random sequences of STAT/WRITE/COMMIT with offsets 0, current, past, before, negative and
//! near i64::MAX, random totals and expected digests (none, right, wrong, malformed, of
//! existing content), interleaved streams on several refs, half-closes, aborts and Status
//! calls. Every answer (code, offset, total, digest) is checked against a model of
//! containerd's contract (docs/content-contract.md, "Write stream rules"); ipcs must never
//! panic. Case count: IPCS_FUZZ_CASES (default 1024, ~15 s).
mod common;

use common::*;
use ipcs::server::proto::content_client::ContentClient;
use ipcs::server::proto::{AbortRequest, StatusRequest, WriteAction, WriteContentRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use tonic::transport::Channel;
use tonic::Code;

const REFS: usize = 3;

/// Outcomes seen, printed at the end to show what the cases covered.
static TALLY: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

#[derive(Debug, Clone)]
enum Off {
    Zero,
    Current,
    Past(u8),
    Before(u8),
    Negative,
    NearMax,
}

#[derive(Debug, Clone)]
enum Total {
    Zero,
    Exact,
    Small(u8),
    Negative,
    Max,
}

#[derive(Debug, Clone)]
enum Exp {
    None,
    Right,
    Wrong,
    Malformed,
    Existing,
}

#[derive(Debug, Clone)]
enum Op {
    Open(usize, Total, Exp),
    Stat(usize, Total, Exp),
    Write(usize, Off, Vec<u8>),
    Commit(usize, Off, Total, Exp),
    Close(usize),
    Abort(usize),
    Status(usize),
}

fn off() -> impl Strategy<Value = Off> {
    prop_oneof![
        3 => Just(Off::Current),
        2 => Just(Off::Zero),
        1 => (1u8..4).prop_map(Off::Past),
        1 => (1u8..4).prop_map(Off::Before),
        1 => Just(Off::Negative),
        1 => Just(Off::NearMax),
    ]
}

fn total() -> impl Strategy<Value = Total> {
    prop_oneof![
        3 => Just(Total::Zero),
        2 => Just(Total::Exact),
        1 => any::<u8>().prop_map(Total::Small),
        1 => Just(Total::Negative),
        1 => Just(Total::Max),
    ]
}

fn exp() -> impl Strategy<Value = Exp> {
    prop_oneof![
        4 => Just(Exp::None),
        3 => Just(Exp::Right),
        1 => Just(Exp::Wrong),
        1 => Just(Exp::Malformed),
        1 => Just(Exp::Existing),
    ]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(0u8..3, 0..4),
        prop::collection::vec(any::<u8>(), 1..32),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..REFS;
    prop_oneof![
        2 => (r.clone(), total(), exp()).prop_map(|(r, t, e)| Op::Open(r, t, e)),
        1 => (r.clone(), total(), exp()).prop_map(|(r, t, e)| Op::Stat(r, t, e)),
        // A tiny alphabet so that different cases write the same bytes: commits of
        // existing content (ALREADY_EXISTS) happen often.
        5 => (r.clone(), off(), data()).prop_map(|(r, o, d)| Op::Write(r, o, d)),
        3 => (r.clone(), off(), total(), exp()).prop_map(|(r, o, t, e)| Op::Commit(r, o, t, e)),
        1 => r.clone().prop_map(Op::Close),
        1 => r.clone().prop_map(Op::Abort),
        1 => r.prop_map(Op::Status),
    ]
}

/// The model: what containerd's contract says each ref's ingest holds. `persisted` and
/// `persisted_expected` are what was recorded when a stream opened (what Status and the
/// next stream start from, as in containerd's local store); `total` and `expected` are
/// the open stream's view, which later messages may change for that stream only.
#[derive(Debug, Clone, Default)]
struct Ingest {
    data: Vec<u8>,
    total: u64,
    persisted: u64,
    expected: Option<String>,
    persisted_expected: Option<String>,
}

struct Open {
    session: WriteSession,
    /// Committed (or dropped as a duplicate): every further message is refused.
    done: bool,
}

struct World {
    c: ContentClient<Channel>,
    prefix: String,
    ingests: HashMap<usize, Ingest>,
    open: HashMap<usize, Open>,
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

impl World {
    fn name(&self, r: usize) -> String {
        format!("{}/ref-{r}", self.prefix)
    }

    fn data(&self, r: usize) -> Vec<u8> {
        self.ingests
            .get(&r)
            .map(|i| i.data.clone())
            .unwrap_or_default()
    }

    fn total_value(&self, r: usize, t: &Total) -> i64 {
        match t {
            Total::Zero => 0,
            Total::Exact => self.data(r).len() as i64,
            Total::Small(n) => *n as i64,
            Total::Negative => -1,
            Total::Max => i64::MAX,
        }
    }

    fn offset_value(&self, r: usize, o: &Off) -> i64 {
        let cur = self.data(r).len() as i64;
        match o {
            Off::Zero => 0,
            Off::Current => cur,
            Off::Past(k) => cur + *k as i64,
            Off::Before(k) => cur - *k as i64,
            Off::Negative => -1,
            Off::NearMax => i64::MAX - 1,
        }
    }

    fn expected_value(&self, r: usize, e: &Exp, committed: &HashSet<String>) -> String {
        match e {
            Exp::None => String::new(),
            Exp::Right => sha256_digest(&self.data(r)),
            Exp::Wrong => sha256_digest(&[self.data(r), b"!".to_vec()].concat()),
            Exp::Malformed => "sha256:not-hex".into(),
            Exp::Existing => committed
                .iter()
                .min()
                .cloned()
                .unwrap_or_else(|| sha256_digest(b"never written")),
        }
    }
}

/// The answer the contract requires: (committed?, offset, digest so far, total).
type Answer = (bool, usize, String, u64);

fn malformed(expected: &str) -> bool {
    let well_formed = expected.len() == 71
        && expected.starts_with("sha256:")
        && expected[7..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    !expected.is_empty() && !well_formed
}

/// What the contract says one message does to `ing`: the answer, or the error code.
/// `first` marks the message that opens the stream (and carries the ref).
#[allow(clippy::too_many_arguments)]
fn model_step(
    ing: &mut Option<Ingest>,
    committed: &mut HashSet<String>,
    first: bool,
    action: WriteAction,
    offset: i64,
    total: i64,
    expected: &str,
    data: &[u8],
) -> Result<Answer, Code> {
    if malformed(expected) {
        return Err(Code::InvalidArgument);
    }
    let exp = (!expected.is_empty()).then(|| expected.to_string());
    if first {
        // Opening: a negative total, then an existing expected digest, are refused before
        // the ingest is touched.
        if total < 0 {
            return Err(Code::InvalidArgument);
        }
        if exp.as_ref().is_some_and(|e| committed.contains(e)) {
            return Err(Code::AlreadyExists);
        }
        let i = ing.get_or_insert_with(Ingest::default);
        if total > 0 {
            i.persisted = total as u64;
        }
        if exp.is_some() {
            i.persisted_expected = exp.clone();
        }
        i.total = i.persisted;
        i.expected = i.persisted_expected.clone();
    }
    let i = ing.as_mut().expect("ingest exists while a stream is open");
    if let Some(e) = &exp {
        if committed.contains(e) {
            *ing = None;
            return Err(Code::AlreadyExists);
        }
        i.expected = Some(e.clone());
    }
    if total < 0 {
        return Err(Code::InvalidArgument);
    }
    if total > 0 {
        i.total = total as u64;
    }
    if action != WriteAction::Stat {
        if offset < 0 {
            return Err(Code::InvalidArgument);
        }
        if offset > 0 && offset as u64 != i.data.len() as u64 {
            return Err(Code::OutOfRange);
        }
        if offset == 0 {
            i.data.clear();
        }
        i.data.extend_from_slice(data);
    }
    let answer = (false, i.data.len(), sha256_digest(&i.data), i.total);
    if action == WriteAction::Commit {
        if i.total > 0 && i.total != i.data.len() as u64 {
            return Err(Code::FailedPrecondition);
        }
        if i.expected.as_ref().is_some_and(|e| *e != answer.2) {
            return Err(Code::FailedPrecondition);
        }
        *ing = None;
        if !committed.insert(answer.2.clone()) {
            return Err(Code::AlreadyExists);
        }
        return Ok((true, answer.1, answer.2, answer.3));
    }
    Ok(answer)
}

fn req(
    action: WriteAction,
    r: &str,
    offset: i64,
    total: i64,
    expected: &str,
    data: &[u8],
) -> WriteContentRequest {
    WriteContentRequest {
        action: action as i32,
        r#ref: r.into(),
        offset,
        total,
        expected: expected.into(),
        data: data.to_vec(),
        ..Default::default()
    }
}

async fn close(w: &mut World, r: usize) {
    if let Some(o) = w.open.remove(&r) {
        o.session.close_and_drain().await;
    }
}

/// Sends one message (opening a stream with it if none is open) and checks the answer.
#[allow(clippy::too_many_arguments)]
async fn send(
    w: &mut World,
    committed: &mut HashSet<String>,
    r: usize,
    action: WriteAction,
    offset: i64,
    total: i64,
    expected: &str,
    data: &[u8],
) -> Result<(), TestCaseError> {
    let first = !w.open.contains_key(&r);
    let name = w.name(r);
    let mut ing = w.ingests.get(&r).cloned();
    let already_done = w.open.get(&r).is_some_and(|o| o.done);
    let want = if already_done && malformed(expected) {
        Err(Code::InvalidArgument)
    } else if already_done {
        Err(Code::FailedPrecondition)
    } else {
        model_step(
            &mut ing, committed, first, action, offset, total, expected, data,
        )
    };
    let outcome = match &want {
        Ok((true, ..)) => "committed".to_string(),
        Ok(_) => "ok".to_string(),
        Err(c) => format!("{c:?}"),
    };
    *TALLY
        .lock()
        .unwrap()
        .entry(format!("{action:?} {outcome}"))
        .or_default() += 1;
    let sent_ref = if first { name.clone() } else { String::new() };
    let m = req(action, &sent_ref, offset, total, expected, data);
    let got = if first {
        match WriteSession::open(&mut w.c, m).await {
            Ok((s, resp)) => {
                w.open.insert(
                    r,
                    Open {
                        session: s,
                        done: false,
                    },
                );
                Ok(resp)
            }
            Err(e) => Err(e),
        }
    } else {
        w.open.get_mut(&r).unwrap().session.send(m).await
    };
    let ctx = format!(
        "ref {r} {action:?} offset={offset} total={total} expected={expected:?} data={data:?}"
    );
    match (&want, got) {
        (Ok((committed_now, len, digest, t)), Ok(resp)) => {
            // Every answer: offset, total and the digest of the bytes so far.
            prop_assert_eq!(resp.offset, *len as i64, "offset: {}", ctx);
            prop_assert_eq!(&resp.digest, digest, "digest: {}", ctx);
            prop_assert_eq!(resp.total, *t as i64, "total: {}", ctx);
            if *committed_now {
                w.open.get_mut(&r).unwrap().done = true;
            }
        }
        (Err(code), Err(status)) => {
            prop_assert_eq!(status.code(), *code, "code: {} -> {:?}", ctx, status);
            // An error ends the stream; the ingest (if any) stays for a resume.
            if let Some(o) = w.open.remove(&r) {
                o.session.close_and_drain().await;
            }
        }
        (want, got) => {
            return Err(fail(format!(
                "{ctx}: model says {want:?}, ipcs answered {:?}",
                got.map(|g| (g.offset, g.digest))
                    .map_err(|s| (s.code(), s.message().to_string()))
            )))
        }
    }
    match ing {
        Some(i) => w.ingests.insert(r, i),
        None => w.ingests.remove(&r),
    };
    Ok(())
}

async fn run_case(
    w: &mut World,
    committed: &mut HashSet<String>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    for op in ops {
        match op {
            Op::Open(r, t, e) => {
                close(w, r).await;
                let (t, e) = (w.total_value(r, &t), w.expected_value(r, &e, committed));
                send(w, committed, r, WriteAction::Stat, 0, t, &e, &[]).await?;
            }
            Op::Stat(r, t, e) => {
                let (t, e) = (w.total_value(r, &t), w.expected_value(r, &e, committed));
                send(w, committed, r, WriteAction::Stat, 0, t, &e, &[]).await?;
            }
            Op::Write(r, o, d) => {
                let o = w.offset_value(r, &o);
                send(w, committed, r, WriteAction::Write, o, 0, "", &d).await?;
            }
            Op::Commit(r, o, t, e) => {
                let o = w.offset_value(r, &o);
                let (t, e) = (w.total_value(r, &t), w.expected_value(r, &e, committed));
                send(w, committed, r, WriteAction::Commit, o, t, &e, &[]).await?;
            }
            Op::Close(r) => close(w, r).await,
            Op::Abort(r) => {
                close(w, r).await;
                let name = w.name(r);
                let res = w.c.abort(AbortRequest { r#ref: name }).await;
                let existed = w.ingests.remove(&r).is_some();
                match res {
                    Ok(_) => prop_assert!(existed, "abort of a ref the model lacks succeeded"),
                    Err(s) => {
                        prop_assert!(!existed, "abort failed: {:?}", s);
                        prop_assert_eq!(s.code(), Code::NotFound);
                    }
                }
            }
            Op::Status(r) => {
                let res = w.c.status(StatusRequest { r#ref: w.name(r) }).await;
                let streaming = w.open.get(&r).is_some_and(|o| !o.done);
                match (w.ingests.get(&r), res) {
                    (Some(i), Ok(s)) => {
                        let s = s.into_inner().status.unwrap();
                        let t = if streaming { i.total } else { i.persisted };
                        prop_assert_eq!(
                            s.offset,
                            i.data.len() as i64,
                            "status offset of ref {}",
                            r
                        );
                        prop_assert_eq!(s.total, t as i64, "status total of ref {}", r);
                    }
                    (None, Err(s)) => prop_assert_eq!(s.code(), Code::NotFound),
                    (m, got) => {
                        return Err(fail(format!("status ref {r}: model {m:?}, ipcs {got:?}")))
                    }
                }
            }
        }
    }
    for r in 0..REFS {
        close(w, r).await;
    }
    Ok(())
}

#[test]
fn write_sequences_follow_the_contract() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut ipcs = rt.block_on(Ipcs::start());
    let cases = std::env::var("IPCS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    });
    let counter = RefCell::new(0u64);
    let c = rt.block_on(ipcs.content());
    let result = runner.run(&prop::collection::vec(op(), 1..24), |ops| {
        *counter.borrow_mut() += 1;
        let mut w = World {
            c: c.clone(),
            prefix: format!("fuzz-{}", counter.borrow()),
            ingests: HashMap::new(),
            open: HashMap::new(),
        };
        rt.block_on(async {
            // Start each case from what ipcs really holds, so that a failed (or shrunk)
            // case cannot leave the model out of step with the store.
            let mut committed: HashSet<String> = ipcs.cids().await.into_keys().collect();
            tokio::time::timeout(
                std::time::Duration::from_secs(60),
                run_case(&mut w, &mut committed, ops),
            )
            .await
            .unwrap_or_else(|_| Err(fail("case did not finish within 60 s".into())))
        })
    });
    eprintln!("write_fuzz: {cases} cases, outcomes checked against the model:");
    for (k, n) in TALLY.lock().unwrap().iter() {
        eprintln!("  {k:<28} {n:>6}");
    }
    assert!(ipcs.is_running(), "ipcs died");
    assert!(!ipcs.log_text().contains("panicked"), "{}", ipcs.log_text());
    if let Err(e) = result {
        panic!("{e}");
    }
}
