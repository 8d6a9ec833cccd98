//! What only the Redis store promises: several nodes on one Redis share one
//! workload (no message claimed twice, strict priority across nodes, limits
//! across nodes), a dead node's claims are taken over after its lease, and
//! Redis outages and restarts lose nothing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::bench::redis_server::Persistence;
use herald::limits::LimitPolicy;
use herald::model::{Class, MessageId, Status, now_micros};
use herald::store::{
    Admission, MessageStore, NewMessage, RedisSettings, RedisStore, Retention, Role, Store,
};

use crate::helpers::TestRedis;
use crate::store_conformance::message;

async fn node(redis: &TestRedis, id: &str, lease: Duration) -> Arc<RedisStore> {
    let settings = RedisSettings {
        url: herald::config::Secret::new(redis.url.clone()),
        durability: redis.durability(),
        prefix: redis.prefix.clone(),
        node_id: id.into(),
        lease,
    };
    Arc::new(
        RedisStore::open(&settings, Role::Node)
            .await
            .expect("open redis store"),
    )
}

async fn admit_plain(store: &dyn Store, class: Class, n: u32) -> Vec<MessageId> {
    let items: Vec<NewMessage> = (0..n)
        .map(|i| NewMessage::plain(message("a", class, i)))
        .collect();
    store
        .admit(items)
        .await
        .expect("admit")
        .into_iter()
        .map(|a| a.message().expect("created").id)
        .collect()
}

#[tokio::test]
async fn two_nodes_never_claim_the_same_message() {
    let redis = TestRedis::start();
    let a = node(&redis, "a", Duration::from_secs(10)).await;
    let b = node(&redis, "b", Duration::from_secs(10)).await;
    let ids: HashSet<MessageId> = admit_plain(&*a, Class::Transactional, 2000)
        .await
        .into_iter()
        .collect();
    let drain = |store: Arc<RedisStore>| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = store.claim("a", 37).await.expect("claim");
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|m| m.id));
            }
        })
    };
    let (from_a, from_b) = (drain(a.clone()), drain(b.clone()));
    let (from_a, from_b) = (from_a.await.expect("join"), from_b.await.expect("join"));
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "both nodes worked"
    );
    let mut seen = HashSet::new();
    for id in from_a.iter().chain(&from_b) {
        assert!(seen.insert(*id), "{id} claimed twice");
    }
    assert_eq!(seen, ids, "every message claimed exactly once");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn strict_priority_holds_across_nodes() {
    let redis = TestRedis::start();
    let a = node(&redis, "a", Duration::from_secs(10)).await;
    let b = node(&redis, "b", Duration::from_secs(10)).await;
    admit_plain(&*a, Class::Marketing, 500).await;
    assert_eq!(a.claim("a", 10).await.expect("claim").len(), 10);
    // Emergencies accepted on node b behind the marketing backlog...
    let urgent: HashSet<MessageId> = admit_plain(&*b, Class::Emergency, 20)
        .await
        .into_iter()
        .collect();
    // ...go first on every node.
    let first = a.claim("a", 15).await.expect("claim");
    assert!(first.iter().all(|m| m.class == Class::Emergency));
    let second = b.claim("a", 10).await.expect("claim");
    let classes: Vec<Class> = second.iter().map(|m| m.class).collect();
    assert_eq!(&classes[..5], &[Class::Emergency; 5]);
    assert!(classes[5..].iter().all(|c| *c == Class::Marketing));
    let got: HashSet<MessageId> = first.iter().chain(&second[..5]).map(|m| m.id).collect();
    assert_eq!(got, urgent);
    // Gauges come back with each call, so the node that called last knows.
    assert_eq!(b.queue_depths(), [0, 0, 0, 485]);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn limits_hold_across_nodes() {
    let redis = TestRedis::start();
    let nodes = [
        node(&redis, "a", Duration::from_secs(10)).await,
        node(&redis, "b", Duration::from_secs(10)).await,
    ];
    let now = now_micros();
    let mut tasks = Vec::new();
    for i in 0..60u32 {
        let store = nodes[(i % 2) as usize].clone();
        tasks.push(tokio::spawn(async move {
            let mut m = message("a", Class::Transactional, i);
            m.to = "+12025550199".into();
            m.created_at = now;
            let item = NewMessage {
                limit: Some(LimitPolicy::default_for(Class::Transactional)),
                limit_scope: None,
                ..NewMessage::plain(m)
            };
            store.admit(vec![item]).await.expect("admit").remove(0)
        }));
    }
    let mut created = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.expect("join") {
            Admission::Created(_) => created += 1,
            Admission::RateLimited { retry_after } => {
                assert!(retry_after > 0);
                limited += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((created, limited), (30, 30), "30 per hour, whichever node");
    for n in nodes {
        n.close().await;
    }
}

#[tokio::test]
async fn a_dead_nodes_claims_are_taken_over_after_its_lease() {
    let redis = TestRedis::start();
    let lease = Duration::from_secs(1);
    let a = node(&redis, "a", lease).await;
    let b = node(&redis, "b", lease).await;
    let ids = admit_plain(&*a, Class::Otp, 8).await;
    assert_eq!(a.claim("a", 5).await.expect("claim").len(), 5);
    // Node a dies: no close, no more heartbeats.
    drop(a);
    let report = b
        .maintain(
            now_micros(),
            Retention::with_idempotency_ttl(Duration::from_secs(3600)),
        )
        .await
        .expect("maintain");
    assert_eq!(report.reclaimed, 0, "the lease has not lapsed yet");
    let started = Instant::now();
    let mut reclaimed = 0;
    while reclaimed == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never taken over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        reclaimed = b
            .maintain(
                now_micros(),
                Retention::with_idempotency_ttl(Duration::from_secs(3600)),
            )
            .await
            .expect("maintain")
            .reclaimed;
    }
    assert_eq!(reclaimed, 5);
    assert!(started.elapsed() >= Duration::from_millis(500));
    let claimed = b.claim("a", 10).await.expect("claim");
    let got: HashSet<MessageId> = claimed.iter().map(|m| m.id).collect();
    assert_eq!(got, ids.into_iter().collect(), "every message, once");
    b.close().await;
}

#[tokio::test]
async fn a_live_node_keeps_its_claims() {
    let redis = TestRedis::start();
    let lease = Duration::from_secs(1);
    let a = node(&redis, "a", lease).await;
    let b = node(&redis, "b", lease).await;
    admit_plain(&*a, Class::Otp, 3).await;
    assert_eq!(a.claim("a", 3).await.expect("claim").len(), 3);
    tokio::time::sleep(lease * 3).await;
    let report = b
        .maintain(
            now_micros(),
            Retention::with_idempotency_ttl(Duration::from_secs(3600)),
        )
        .await
        .expect("maintain");
    assert_eq!(report.reclaimed, 0, "heartbeats keep the claims");
    assert!(b.claim("a", 10).await.expect("claim").is_empty());
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn operations_fail_while_redis_is_down_and_resume_when_it_returns() {
    let mut redis = TestRedis::own(Persistence::AofAlways);
    let store = node(&redis, "a", Duration::from_secs(10)).await;
    let before = admit_plain(&*store, Class::Otp, 10).await;
    redis.server().stop();
    let started = Instant::now();
    assert!(store.ping().await.is_err());
    assert!(
        store
            .admit(vec![NewMessage::plain(message("a", Class::Otp, 99))])
            .await
            .is_err(),
        "nothing is accepted while Redis is down"
    );
    assert!(store.claim("a", 10).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failures are prompt: {:?}",
        started.elapsed()
    );
    redis.server().restart().expect("restart redis");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "store never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = admit_plain(&*store, Class::Otp, 1).await;
    let claimed: HashSet<MessageId> = store
        .claim("a", 100)
        .await
        .expect("claim")
        .into_iter()
        .map(|m| m.id)
        .collect();
    let expected: HashSet<MessageId> = before.into_iter().chain(after).collect();
    assert_eq!(claimed, expected, "nothing accepted was lost");
    store.close().await;
}

#[tokio::test]
async fn a_killed_redis_with_fsync_always_loses_nothing_accepted() {
    let mut redis = TestRedis::own(Persistence::AofAlways);
    let store = node(&redis, "a", Duration::from_secs(10)).await;
    let ids = admit_plain(&*store, Class::Marketing, 200).await;
    let claimed = store.claim("a", 50).await.expect("claim");
    let submitted: Vec<herald::store::Outcome> = claimed
        .iter()
        .map(|m| herald::store::Outcome::Submitted {
            id: m.id,
            connector: "a".into(),
            smsc_ids: vec![format!("s-{}", m.id)],
            at: now_micros(),
        })
        .collect();
    store.record(submitted).await.expect("record");
    redis.server().kill();
    redis.server().restart().expect("restart redis");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "store never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut statuses = std::collections::HashMap::new();
    for id in &ids {
        let m = store.message(*id).await.expect("read").expect("kept");
        *statuses.entry(m.status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&Status::Submitted), Some(&50));
    assert_eq!(statuses.get(&Status::Queued), Some(&150));
    assert_eq!(store.claim("a", 1000).await.expect("claim").len(), 150);
    assert_eq!(store.awaiting_receipts("a").await.expect("list").len(), 50);
    store.close().await;
}

async fn open_with(
    redis: &TestRedis,
    durability: herald::config::RedisDurability,
) -> Result<(), String> {
    let settings = RedisSettings {
        url: herald::config::Secret::new(redis.url.clone()),
        durability,
        prefix: redis.prefix.clone(),
        node_id: "durability".into(),
        lease: Duration::from_secs(10),
    };
    match RedisStore::open(&settings, Role::Node).await {
        Ok(store) => {
            store.close().await;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn a_redis_that_could_lose_acknowledged_messages_is_refused_unless_accepted() {
    use herald::config::RedisDurability::{AcceptLoss, Always, Everysec};
    let volatile = TestRedis::own(Persistence::None);
    let err = open_with(&volatile, Always)
        .await
        .expect_err("no AOF is refused");
    assert!(
        err.contains("appendonly no") && err.contains("accept_loss"),
        "{err}"
    );
    assert!(open_with(&volatile, Everysec).await.is_err());
    open_with(&volatile, AcceptLoss)
        .await
        .expect("loss accepted");

    let everysec = TestRedis::own(Persistence::AofEverySec);
    let err = open_with(&everysec, Always)
        .await
        .expect_err("everysec is not always");
    assert!(err.contains("appendfsync everysec"), "{err}");
    open_with(&everysec, Everysec)
        .await
        .expect("everysec accepted");

    let always = TestRedis::own(Persistence::AofAlways);
    open_with(&always, Always)
        .await
        .expect("fsync always is durable");
}

#[tokio::test]
async fn a_gateway_on_a_redis_without_aof_does_not_start_by_default() {
    let redis = TestRedis::own(Persistence::None);
    let toml = format!(
        "[store]\nkind = \"redis\"\nurl = \"{}\"\nnode_id = \"n\"\n",
        redis.url
    );
    let config = herald::config::Config::from_toml(&toml).expect("config");
    assert_eq!(
        config.store.redis_durability,
        herald::config::RedisDurability::Always
    );
    let err = match herald::server::open_store(&config, Role::Node).await {
        Ok(_) => panic!("a volatile redis was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("could be lost"), "{err}");
}
