//! `limits`: what a per-recipient limit check costs in the store, in process
//! (no HTTP), call by call: admissions that pass the check (check, consume
//! and store in one atomic operation) and admissions the check refuses (the
//! check alone), first from one task (the latency of the operation itself),
//! then from 64 concurrent tasks (with the queueing of a busy node).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::BenchArgs;
use super::redis_server::{Persistence, RedisServer};
use super::report::{Latency, StoreInfo, Summary};
use super::server::StoreChoice;
use crate::limits::LimitPolicy;
use crate::model::{Class, Message, now_micros};
use crate::store::{Admission, EmbeddedStore, NewMessage, RedisSettings, RedisStore, Role, Store};
use crate::text::test_number;

/// Concurrent callers of the loaded phase.
const TASKS: u32 = 64;
/// Distinct recipients: each gets `per_hour` allowed sends, then refusals.
const RECIPIENTS: u32 = 100;

fn message(to: String, at: i64) -> Message {
    Message {
        body: "Herald limit benchmark".into(),
        owner: "bench".into(),
        ..Message::sample(to, at)
    }
}

/// Runs `calls` limited admissions over [`RECIPIENTS`] recipients (numbered
/// from `first`) from `tasks` tasks; returns the latencies of allowed and
/// refused calls.
async fn run(
    store: Arc<dyn Store>,
    calls: u32,
    tasks: u32,
    first: u32,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let policy = LimitPolicy::default_for(Class::Transactional);
    let next = Arc::new(AtomicU32::new(0));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            let (mut allowed, mut refused) = (Vec::new(), Vec::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return Ok::<_, anyhow::Error>((allowed, refused));
                }
                let to = test_number(first + i % RECIPIENTS).to_string();
                let item = NewMessage {
                    limit: Some(policy),
                    limit_scope: None,
                    ..NewMessage::plain(message(to, now_micros()))
                };
                let t = Instant::now();
                let outcome = store.admit(vec![item]).await?;
                let micros = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
                match outcome.first() {
                    Some(Admission::Created(_)) => allowed.push(micros),
                    Some(Admission::RateLimited { .. }) => refused.push(micros),
                    other => bail!("unexpected admission {other:?}"),
                }
            }
        }));
    }
    let (mut allowed, mut refused) = (Vec::new(), Vec::new());
    for t in handles {
        let (a, r) = t.await.context("limit task")??;
        allowed.extend(a);
        refused.extend(r);
    }
    Ok((allowed, refused))
}

/// The `limits` scenario on `--store`.
pub async fn limit_calls(args: &BenchArgs) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("temp dir")?;
    let mut redis = None;
    let store: Arc<dyn Store> = match StoreChoice::parse(&args.store)? {
        StoreChoice::Embedded => Arc::new(EmbeddedStore::open(
            &dir.path().join("limits.db"),
            64 << 20,
        )?),
        StoreChoice::Redis => {
            let url = match &args.redis_url {
                Some(url) => url.clone(),
                None => {
                    let persistence = match args.redis_fsync.as_str() {
                        "always" => Persistence::AofAlways,
                        "everysec" => Persistence::AofEverySec,
                        _ => Persistence::None,
                    };
                    let server = RedisServer::start(persistence)?;
                    let url = server.url();
                    redis = Some(server);
                    url
                }
            };
            let settings = RedisSettings {
                url: crate::config::Secret::new(url),
                prefix: format!("benchlimits{}", std::process::id()),
                node_id: "bench-limits".into(),
                lease: Duration::from_secs(10),
                durability: bench_durability(redis.is_some(), &args.redis_fsync),
            };
            Arc::new(RedisStore::open(&settings, Role::Node).await?)
        }
    };
    let mut calls = BTreeMap::new();
    let sequential = (args.limit_calls / 4).max(RECIPIENTS * 40);
    for (phase, tasks, n, first) in [
        ("1 task", 1, sequential, 0),
        ("64 tasks", TASKS, args.limit_calls, RECIPIENTS),
    ] {
        let (mut allowed, mut refused) = run(store.clone(), n, tasks, first).await?;
        calls.insert(
            format!("{phase}: allowed (check + consume + store)"),
            Latency::of(&mut allowed),
        );
        calls.insert(
            format!("{phase}: refused (check only)"),
            Latency::of(&mut refused),
        );
    }
    store.close().await;
    let summary = Summary {
        scenario: "limits".into(),
        description: format!(
            "in-process limited admissions (transactional, 30/hour) over {RECIPIENTS} recipients per phase, from 1 task and from {TASKS}"
        ),
        connector: String::new(),
        messages: u64::from(args.limit_calls),
        accept_to_receipt_per_sec: None,
        accept_per_sec: None,
        admission_latency: None,
        head_of_line: None,
        script_calls: None,
        store_calls: Some(calls),
        otp: None,
        broadcast: None,
        backlog: None,
        store: Some(StoreInfo {
            kind: args.store.clone(),
            nodes: 1,
            redis_fsync: (args.store == "redis" && args.redis_url.is_none())
                .then(|| args.redis_fsync.clone()),
            redis_peak_rss_mib: 0.0,
        }),
        peak_rss_mib: 0.0,
        smsc_peak_rss_mib: 0.0,
        data_mib: 0.0,
        seconds: started.elapsed().as_secs_f64(),
    };
    // The private Redis (if any) lives until the store is closed.
    drop(redis);
    Ok(summary)
}

/// What a bench node requires of Redis: its own server is checked against
/// the fsync policy it was started with; an external one is measured as it
/// is (the bench stores nothing anyone relies on).
pub(crate) fn bench_durability(own: bool, fsync: &str) -> crate::config::RedisDurability {
    use crate::config::RedisDurability;
    match (own, fsync) {
        (true, "always") => RedisDurability::Always,
        (true, "everysec") => RedisDurability::Everysec,
        _ => RedisDurability::AcceptLoss,
    }
}
