//! The audit role's contract: appends read back newest first, paging
//! before an id, the limit bound, entries that outlive maintenance and
//! restarts, and appends from several store handles in one order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use herald::audit::{AuditAction, AuditEntry, AuditOutcome};
use herald::model::MessageId;
use herald::store::{AuditStore, RedisSettings, RedisStore, Retention, Role};

use super::{Redis, StoreFactory};

/// Another Redis node on the same data, for appends from two handles.
pub(super) async fn redis_node(r: &Redis) -> Arc<dyn AuditStore> {
    let n = r
        .otp_nodes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let settings = RedisSettings {
        url: herald::config::Secret::new(r.redis.url.clone()),
        durability: r.redis.durability(),
        prefix: r.redis.prefix.clone(),
        node_id: format!("conformance-audit-{n}"),
        lease: Duration::from_secs(10),
    };
    Arc::new(
        RedisStore::open(&settings, Role::Client)
            .await
            .expect("open redis store"),
    )
}

fn entry(n: usize) -> AuditEntry {
    let outcome = if n % 3 == 0 {
        AuditOutcome::refused("invalid_members")
    } else {
        AuditOutcome::Ok
    };
    let e = AuditEntry::new(
        format!("key:k{n}"),
        AuditAction::GroupReplace,
        format!("group:g{n}"),
        outcome,
    );
    if n % 2 == 0 {
        e.with_detail(format!("{n} members"))
    } else {
        e
    }
}

fn ids(entries: &[AuditEntry]) -> Vec<MessageId> {
    entries.iter().map(|e| e.id).collect()
}

pub(super) async fn audit_entries_read_back_newest_first_and_page_before(f: &dyn StoreFactory) {
    let store = f.open().await;
    assert!(store.audit(None, 10).await.expect("read").is_empty());
    let first: Vec<AuditEntry> = (0..3).map(entry).collect();
    let second: Vec<AuditEntry> = (3..5).map(entry).collect();
    store.append_audit(first.clone()).await.expect("append");
    store.append_audit(second.clone()).await.expect("append");
    store.append_audit(Vec::new()).await.expect("empty append");
    let mut newest_first: Vec<AuditEntry> = first.into_iter().chain(second).collect();
    newest_first.reverse();

    // Everything, as appended, newest first.
    let all = store.audit(None, 10).await.expect("read");
    assert_eq!(all, newest_first);
    // The limit bounds a page.
    assert_eq!(
        ids(&store.audit(None, 2).await.expect("read")),
        ids(&newest_first[..2])
    );
    assert!(store.audit(None, 0).await.expect("read").is_empty());
    // `before` is exclusive and pages walk to the oldest.
    let older = store.audit(Some(all[1].id), 2).await.expect("read");
    assert_eq!(ids(&older), ids(&newest_first[2..4]));
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let page = store.audit(before, 2).await.expect("read");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        walked.extend(ids(&page));
    }
    assert_eq!(walked, ids(&newest_first));
    // Before the oldest, or before an id older than anything: nothing.
    let oldest = newest_first.last().expect("oldest").id;
    assert!(
        store
            .audit(Some(oldest), 10)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .audit(Some(MessageId(0)), 10)
            .await
            .expect("read")
            .is_empty()
    );
    // An id newer than everything pages from the newest.
    assert_eq!(
        ids(&store
            .audit(Some(MessageId(u128::MAX)), 10)
            .await
            .expect("read")),
        ids(&newest_first)
    );
    store.close().await;
}

pub(super) async fn audit_entries_outlive_maintenance_and_restarts(f: &dyn StoreFactory) {
    let store = f.open().await;
    let entries: Vec<AuditEntry> = (0..4).map(entry).collect();
    store.append_audit(entries.clone()).await.expect("append");
    // Retention that keeps nothing else, a year from now.
    let none = Retention {
        idempotency: Duration::ZERO,
        messages: Duration::ZERO,
        inbound: Duration::ZERO,
        receipts: Duration::ZERO,
    };
    let later = herald::model::now_micros() + 365 * 86_400 * 1_000_000;
    store.maintain(later, none).await.expect("maintain");
    assert_eq!(store.audit(None, 10).await.expect("read").len(), 4);
    store.close().await;
    drop(store);

    let store = f.open().await;
    let mut expected = entries;
    expected.reverse();
    assert_eq!(store.audit(None, 10).await.expect("read"), expected);
    store.close().await;
}

pub(super) async fn audit_appends_from_two_handles_form_one_log(f: &dyn StoreFactory) {
    let store = f.open().await;
    let one: Arc<dyn AuditStore> = store.clone();
    let two = f.another_audit_node().await.unwrap_or_else(|| one.clone());
    let mut tasks = Vec::new();
    for (h, handle) in [one, two].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for batch in 0..20 {
                let entries = (0..15).map(|i| entry(h * 1000 + batch * 15 + i)).collect();
                handle.append_audit(entries).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("appender");
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.audit(before, 64).await.expect("read");
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        seen.extend(ids(&page));
    }
    assert_eq!(seen.len(), 600);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first"
    );
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 600);
    store.close().await;
}
