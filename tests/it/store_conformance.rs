//! The store contract, written once against `dyn Store` and run against
//! every implementation. A new store passes by adding one `StoreFactory`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::model::{Class, Encoding, Message, MessageId, Status, now_micros};
use herald::store::{
    Admission, ApiKeyRecord, EmbeddedStore, NewMessage, Outcome, Receipt, ReceiptState, Store,
};

/// Opens a store; `reopen` gives the same data after `close` (restart).
#[async_trait]
pub trait StoreFactory: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;
}

struct Embedded {
    dir: tempfile::TempDir,
}

#[async_trait]
impl StoreFactory for Embedded {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(
            EmbeddedStore::open(&self.dir.path().join("store.db"), 8 << 20).expect("open store"),
        )
    }
}

fn embedded() -> Embedded {
    Embedded {
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

pub fn message(connector: &str, class: Class, n: u32) -> Message {
    let now = now_micros();
    Message {
        id: MessageId::generate(),
        to: format!("+4479111{n:05}"),
        from: None,
        body: format!("body {n}"),
        class,
        encoding: Encoding::Gsm7,
        segments: 1,
        status: Status::Queued,
        route: vec![connector.to_string(), "backup".to_string()],
        route_index: 0,
        connector: None,
        smsc_message_ids: Vec::new(),
        parts_delivered: 0,
        parts_failed: 0,
        error: None,
        created_at: now,
        submitted_at: None,
        done_at: None,
        expires_at: now + 3_600_000_000,
        attempts: 0,
        seq: 0,
        callback_url: None,
        owner: "owner".into(),
        idempotency_key: None,
        tags: Vec::new(),
    }
}

fn new(m: Message) -> NewMessage {
    NewMessage {
        message: m,
        idempotency: None,
    }
}

async fn admit(store: &dyn Store, msgs: Vec<Message>) -> Vec<Message> {
    store
        .admit(msgs.into_iter().map(new).collect())
        .await
        .expect("admit")
        .into_iter()
        .map(|a| a.message().clone())
        .collect()
}

fn submitted(m: &Message, smsc: &str) -> Outcome {
    Outcome::Submitted {
        id: m.id,
        connector: "a".into(),
        smsc_ids: vec![smsc.to_string()],
        at: now_micros(),
    }
}

fn receipt(smsc: &str, state: ReceiptState) -> Receipt {
    Receipt {
        connector: "a".into(),
        smsc_id: smsc.into(),
        state,
        error_code: None,
        at: now_micros(),
    }
}

macro_rules! conformance {
    ($($factory:ident),+) => {
        $(
        mod $factory {

            #[tokio::test] async fn admitted_messages_can_be_read_back() { super::admitted_messages_can_be_read_back(&super::$factory()).await }
            #[tokio::test] async fn claims_follow_strict_priority_then_fifo() { super::claims_follow_strict_priority_then_fifo(&super::$factory()).await }
            #[tokio::test] async fn a_claimed_message_is_not_claimed_twice() { super::a_claimed_message_is_not_claimed_twice(&super::$factory()).await }
            #[tokio::test] async fn connectors_have_separate_queues() { super::connectors_have_separate_queues(&super::$factory()).await }
            #[tokio::test] async fn receipts_finish_submitted_messages() { super::receipts_finish_submitted_messages(&super::$factory()).await }
            #[tokio::test] async fn a_receipt_before_the_submit_is_recorded_is_kept() { super::a_receipt_before_the_submit_is_recorded_is_kept(&super::$factory()).await }
            #[tokio::test] async fn multipart_messages_finish_when_every_part_has_a_receipt() { super::multipart_messages_finish_when_every_part_has_a_receipt(&super::$factory()).await }
            #[tokio::test] async fn retries_wait_for_their_time_then_return_to_the_queue() { super::retries_wait_for_their_time_then_return_to_the_queue(&super::$factory()).await }
            #[tokio::test] async fn failover_moves_to_the_next_connector_then_fails() { super::failover_moves_to_the_next_connector_then_fails(&super::$factory()).await }
            #[tokio::test] async fn overdue_messages_expire_and_are_never_claimed() { super::overdue_messages_expire_and_are_never_claimed(&super::$factory()).await }
            #[tokio::test] async fn released_messages_are_claimable_again() { super::released_messages_are_claimable_again(&super::$factory()).await }
            #[tokio::test] async fn idempotency_keys_return_the_first_message_per_owner() { super::idempotency_keys_return_the_first_message_per_owner(&super::$factory()).await }
            #[tokio::test] async fn idempotency_keys_age_out() { super::idempotency_keys_age_out(&super::$factory()).await }
            #[tokio::test] async fn queued_and_claimed_messages_survive_a_restart() { super::queued_and_claimed_messages_survive_a_restart(&super::$factory()).await }
            #[tokio::test] async fn submits_awaiting_receipts_are_listed() { super::submits_awaiting_receipts_are_listed(&super::$factory()).await }
            #[tokio::test] async fn api_keys_are_unique_by_name_and_revocable() { super::api_keys_are_unique_by_name_and_revocable(&super::$factory()).await }
            #[tokio::test] async fn wait_for_work_wakes_on_admission() { super::wait_for_work_wakes_on_admission(&super::$factory()).await }
        }
        )+
    };
}

conformance!(embedded);

async fn admitted_messages_can_be_read_back(f: &dyn StoreFactory) {
    let store = f.open().await;
    let m = message("a", Class::Otp, 1);
    let out = store.admit(vec![new(m.clone())]).await.expect("admit");
    let Admission::Created(stored) = &out[0] else {
        panic!("expected Created");
    };
    assert!(stored.seq > 0, "store assigns a sequence");
    let read = store.message(m.id).await.expect("read").expect("found");
    assert_eq!(read.body, m.body);
    assert_eq!(read.status, Status::Queued);
    assert_eq!(store.queue_depths(), [0, 1, 0, 0]);
    assert!(
        store
            .message(MessageId::generate())
            .await
            .expect("read")
            .is_none()
    );
    store.ping().await.expect("ping");
    store.close().await;
}

async fn claims_follow_strict_priority_then_fifo(f: &dyn StoreFactory) {
    let store = f.open().await;
    let mut ms = Vec::new();
    for (i, class) in [
        Class::Marketing,
        Class::Transactional,
        Class::Marketing,
        Class::Emergency,
        Class::Otp,
        Class::Emergency,
    ]
    .into_iter()
    .enumerate()
    {
        ms.push(message("a", class, i as u32));
    }
    // Admitted one by one so sequence follows arrival.
    for m in &ms {
        admit(&*store, vec![m.clone()]).await;
    }
    let claimed = store.claim("a", 10).await.expect("claim");
    let order: Vec<MessageId> = claimed.iter().map(|m| m.id).collect();
    let expected: Vec<MessageId> = [3, 5, 4, 1, 0, 2].iter().map(|&i| ms[i].id).collect();
    assert_eq!(order, expected);
    store.close().await;
}

async fn a_claimed_message_is_not_claimed_twice(f: &dyn StoreFactory) {
    let store = f.open().await;
    admit(
        &*store,
        (0..10)
            .map(|i| message("a", Class::Transactional, i))
            .collect(),
    )
    .await;
    let first = store.claim("a", 4).await.expect("claim");
    let second = store.claim("a", 100).await.expect("claim");
    assert_eq!(first.len(), 4);
    assert_eq!(second.len(), 6);
    assert!(first.iter().all(|m| second.iter().all(|n| n.id != m.id)));
    assert!(store.claim("a", 100).await.expect("claim").is_empty());
    store.close().await;
}

async fn connectors_have_separate_queues(f: &dyn StoreFactory) {
    let store = f.open().await;
    admit(
        &*store,
        vec![message("a", Class::Otp, 1), message("b", Class::Otp, 2)],
    )
    .await;
    assert_eq!(store.claim("a", 10).await.expect("claim").len(), 1);
    assert_eq!(store.claim("b", 10).await.expect("claim").len(), 1);
    assert!(store.claim("c", 10).await.expect("claim").is_empty());
    store.close().await;
}

async fn receipts_finish_submitted_messages(f: &dyn StoreFactory) {
    let store = f.open().await;
    let ms = admit(
        &*store,
        vec![message("a", Class::Otp, 1), message("a", Class::Otp, 2)],
    )
    .await;
    let claimed = store.claim("a", 2).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    let finals = store
        .record(vec![submitted(&ms[0], "s1"), submitted(&ms[1], "s2")])
        .await
        .expect("record");
    assert!(finals.is_empty());
    let m = store.message(ms[0].id).await.expect("read").expect("found");
    assert_eq!(m.status, Status::Submitted);
    assert_eq!(m.smsc_message_ids, vec!["s1".to_string()]);
    assert_eq!(m.attempts, 1);
    let finals = store
        .apply_receipts(vec![
            receipt("s1", ReceiptState::Delivered),
            receipt("s2", ReceiptState::Undeliverable),
        ])
        .await
        .expect("receipts");
    assert_eq!(finals.len(), 2);
    let m1 = store.message(ms[0].id).await.expect("read").expect("found");
    let m2 = store.message(ms[1].id).await.expect("read").expect("found");
    assert_eq!(m1.status, Status::Delivered);
    assert!(m1.done_at.is_some());
    assert_eq!(m2.status, Status::Failed);
    assert!(m2.error.is_some());
    // A duplicate receipt changes nothing.
    let again = store
        .apply_receipts(vec![receipt("s1", ReceiptState::Undeliverable)])
        .await
        .expect("receipts");
    assert!(again.is_empty());
    assert_eq!(
        store
            .message(ms[0].id)
            .await
            .expect("read")
            .expect("found")
            .status,
        Status::Delivered
    );
    store.close().await;
}

async fn a_receipt_before_the_submit_is_recorded_is_kept(f: &dyn StoreFactory) {
    let store = f.open().await;
    let ms = admit(&*store, vec![message("a", Class::Otp, 1)]).await;
    store.claim("a", 1).await.expect("claim");
    let early = store
        .apply_receipts(vec![receipt("fast", ReceiptState::Delivered)])
        .await
        .expect("receipts");
    assert!(early.is_empty());
    let finals = store
        .record(vec![submitted(&ms[0], "fast")])
        .await
        .expect("record");
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].status, Status::Delivered);
    store.close().await;
}

async fn multipart_messages_finish_when_every_part_has_a_receipt(f: &dyn StoreFactory) {
    let store = f.open().await;
    let ms = admit(&*store, vec![message("a", Class::Transactional, 1)]).await;
    store.claim("a", 1).await.expect("claim");
    store
        .record(vec![Outcome::Submitted {
            id: ms[0].id,
            connector: "a".into(),
            smsc_ids: vec!["p1".into(), "p2".into(), "p3".into()],
            at: now_micros(),
        }])
        .await
        .expect("record");
    for (smsc, expect_final) in [("p1", false), ("p3", false), ("p2", true)] {
        let finals = store
            .apply_receipts(vec![receipt(smsc, ReceiptState::Delivered)])
            .await
            .expect("receipt");
        assert_eq!(!finals.is_empty(), expect_final, "after {smsc}");
    }
    let m = store.message(ms[0].id).await.expect("read").expect("found");
    assert_eq!(m.status, Status::Delivered);
    store.close().await;
}

async fn retries_wait_for_their_time_then_return_to_the_queue(f: &dyn StoreFactory) {
    let store = f.open().await;
    let ms = admit(&*store, vec![message("a", Class::Otp, 1)]).await;
    store.claim("a", 1).await.expect("claim");
    let due = now_micros() + 200_000;
    store
        .record(vec![Outcome::Retry {
            id: ms[0].id,
            not_before: due,
            error: "link down".into(),
        }])
        .await
        .expect("record");
    assert_eq!(store.retry_depth(), 1);
    let early = store
        .maintain(now_micros(), Duration::from_secs(86_400))
        .await
        .expect("maintain");
    assert_eq!(early.promoted, 0);
    assert!(store.claim("a", 1).await.expect("claim").is_empty());
    let later = store
        .maintain(due + 1, Duration::from_secs(86_400))
        .await
        .expect("maintain");
    assert_eq!(later.promoted, 1);
    assert_eq!(store.retry_depth(), 0);
    let again = store.claim("a", 1).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].error.as_deref(), Some("link down"));
    store.close().await;
}

async fn failover_moves_to_the_next_connector_then_fails(f: &dyn StoreFactory) {
    let store = f.open().await;
    let ms = admit(&*store, vec![message("a", Class::Otp, 1)]).await;
    store.claim("a", 1).await.expect("claim");
    let finals = store
        .record(vec![Outcome::Failover {
            id: ms[0].id,
            error: "rejected".into(),
        }])
        .await
        .expect("record");
    assert!(finals.is_empty());
    let on_backup = store.claim("backup", 1).await.expect("claim");
    assert_eq!(on_backup.len(), 1);
    assert_eq!(on_backup[0].current_connector(), Some("backup"));
    let finals = store
        .record(vec![Outcome::Failover {
            id: ms[0].id,
            error: "rejected again".into(),
        }])
        .await
        .expect("record");
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].status, Status::Failed);
    store.close().await;
}

async fn overdue_messages_expire_and_are_never_claimed(f: &dyn StoreFactory) {
    let store = f.open().await;
    let mut m = message("a", Class::Marketing, 1);
    m.expires_at = now_micros() + 50_000;
    let keep = message("a", Class::Marketing, 2);
    admit(&*store, vec![m.clone(), keep.clone()]).await;
    let report = store
        .maintain(now_micros() + 100_000, Duration::from_secs(86_400))
        .await
        .expect("maintain");
    assert_eq!(report.expired.len(), 1);
    assert_eq!(report.expired[0].id, m.id);
    let read = store.message(m.id).await.expect("read").expect("found");
    assert_eq!(read.status, Status::Expired);
    let claimed = store.claim("a", 10).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![keep.id]
    );
    // An outcome after expiry does not resurrect it.
    store
        .record(vec![submitted(&m, "late")])
        .await
        .expect("record");
    assert_eq!(
        store
            .message(m.id)
            .await
            .expect("read")
            .expect("found")
            .status,
        Status::Expired
    );
    store.close().await;
}

async fn released_messages_are_claimable_again(f: &dyn StoreFactory) {
    let store = f.open().await;
    let ms = admit(&*store, vec![message("a", Class::Otp, 1)]).await;
    assert_eq!(store.claim("a", 1).await.expect("claim").len(), 1);
    store
        .record(vec![Outcome::Released { id: ms[0].id }])
        .await
        .expect("record");
    assert_eq!(store.claim("a", 1).await.expect("claim").len(), 1);
    store.close().await;
}

async fn idempotency_keys_return_the_first_message_per_owner(f: &dyn StoreFactory) {
    let store = f.open().await;
    let keyed = |m: Message, owner: &str| NewMessage {
        message: m,
        idempotency: Some((owner.to_string(), "k1".to_string())),
    };
    let first = message("a", Class::Otp, 1);
    // Two with the same key in one batch: the second is the first.
    let out = store
        .admit(vec![
            keyed(first.clone(), "o"),
            keyed(message("a", Class::Otp, 2), "o"),
        ])
        .await
        .expect("admit");
    assert!(matches!(out[0], Admission::Created(_)));
    let Admission::Existing(again) = &out[1] else {
        panic!("expected Existing");
    };
    assert_eq!(again.id, first.id);
    let out = store
        .admit(vec![keyed(message("a", Class::Otp, 3), "o")])
        .await
        .expect("admit");
    assert!(matches!(&out[0], Admission::Existing(m) if m.id == first.id));
    let out = store
        .admit(vec![keyed(message("a", Class::Otp, 4), "other-owner")])
        .await
        .expect("admit");
    assert!(matches!(out[0], Admission::Created(_)));
    assert_eq!(store.claim("a", 10).await.expect("claim").len(), 2);
    store.close().await;
}

async fn idempotency_keys_age_out(f: &dyn StoreFactory) {
    let store = f.open().await;
    let keyed = |m: Message| NewMessage {
        message: m,
        idempotency: Some(("o".to_string(), "k".to_string())),
    };
    let first = message("a", Class::Otp, 1);
    store
        .admit(vec![keyed(first.clone())])
        .await
        .expect("admit");
    store
        .maintain(now_micros() + 2_000_000, Duration::from_secs(1))
        .await
        .expect("maintain");
    let out = store
        .admit(vec![keyed(message("a", Class::Otp, 2))])
        .await
        .expect("admit");
    assert!(
        matches!(out[0], Admission::Created(_)),
        "key should have aged out"
    );
    store.close().await;
}

async fn queued_and_claimed_messages_survive_a_restart(f: &dyn StoreFactory) {
    let ids: Vec<MessageId>;
    {
        let store = f.open().await;
        let ms = admit(
            &*store,
            vec![
                message("a", Class::Otp, 1),
                message("a", Class::Marketing, 2),
                message("a", Class::Emergency, 3),
            ],
        )
        .await;
        ids = ms.iter().map(|m| m.id).collect();
        // Claimed but never recorded: the process "dies" here.
        assert_eq!(store.claim("a", 2).await.expect("claim").len(), 2);
        store.close().await;
    }
    let store = f.open().await;
    let claimed = store.claim("a", 10).await.expect("claim");
    assert_eq!(
        claimed.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[2], ids[0], ids[1]]
    );
    // New admissions keep increasing sequence numbers after a restart.
    let later = admit(&*store, vec![message("a", Class::Otp, 4)]).await;
    assert!(claimed.iter().all(|m| m.seq < later[0].seq));
    store.close().await;
}

async fn submits_awaiting_receipts_are_listed(f: &dyn StoreFactory) {
    let store = f.open().await;
    let ms = admit(
        &*store,
        vec![message("a", Class::Otp, 1), message("a", Class::Otp, 2)],
    )
    .await;
    store.claim("a", 2).await.expect("claim");
    store
        .record(vec![submitted(&ms[0], "w1"), submitted(&ms[1], "w2")])
        .await
        .expect("record");
    store
        .apply_receipts(vec![receipt("w1", ReceiptState::Delivered)])
        .await
        .expect("receipt");
    assert_eq!(
        store.awaiting_receipts("a").await.expect("list"),
        vec!["w2".to_string()]
    );
    assert!(store.awaiting_receipts("b").await.expect("list").is_empty());
    store.close().await;
}

async fn api_keys_are_unique_by_name_and_revocable(f: &dyn StoreFactory) {
    let store = f.open().await;
    let key = |id: &str, name: &str| ApiKeyRecord {
        id: id.into(),
        name: name.into(),
        scopes: vec!["send".into()],
        hash: "$argon2id$dummy".into(),
        created_at: now_micros(),
        revoked_at: None,
    };
    assert!(
        store
            .create_api_key(key("id1", "app"))
            .await
            .expect("create")
    );
    assert!(
        !store
            .create_api_key(key("id2", "app"))
            .await
            .expect("create")
    );
    assert!(
        store
            .create_api_key(key("id3", "other"))
            .await
            .expect("create")
    );
    assert_eq!(
        store.api_key("id1").await.expect("get").map(|k| k.name),
        Some("app".into())
    );
    assert!(store.api_key("id2").await.expect("get").is_none());
    assert!(
        store
            .revoke_api_key("app", now_micros())
            .await
            .expect("revoke")
    );
    assert!(
        !store
            .revoke_api_key("nope", now_micros())
            .await
            .expect("revoke")
    );
    assert!(
        store
            .api_key("id1")
            .await
            .expect("get")
            .expect("kept")
            .revoked_at
            .is_some()
    );
    assert_eq!(store.api_keys().await.expect("list").len(), 2);
    store.close().await;
}

async fn wait_for_work_wakes_on_admission(f: &dyn StoreFactory) {
    let store = f.open().await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            store.wait_for_work("a", Duration::from_secs(5)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    admit(&*store, vec![message("a", Class::Otp, 1)]).await;
    let waited = waiter.await.expect("join");
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    store.close().await;
}
