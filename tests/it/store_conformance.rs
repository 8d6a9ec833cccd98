//! The store contract, written once against `dyn Store` and run against
//! every implementation. A new store passes by adding one `StoreFactory`.

mod audit;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::limits::LimitPolicy;
use herald::model::Micros;
use herald::model::{Class, Message, MessageId, PartialSubmit, Status, now_micros};
use herald::model::{InboundRecord, Receipt, ReceiptState};
use herald::store::broadcast::{
    BroadcastRecord, BroadcastStatus, CapOrigin, CreateRefused, Decided, Decision, FanOut, Mode,
    StatusCounts,
};
use herald::store::otp::{BUDGET_WINDOW, OTP_KEEP, budget_window};
use herald::store::{
    Admission, ApiKeyRecord, Budget, EmbeddedStore, NewMessage, OtpRecord, OtpStatus, OtpStore,
    Outcome, RedisSettings, RedisStore, Retention, Role, Store, WebhookEvent, WebhookResult,
};

/// Opens a store; `reopen` gives the same data after `close` (restart).
#[async_trait]
pub trait StoreFactory: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;

    /// Opens the OTP role (once per test, like `open`).
    async fn open_otp(&self) -> Arc<dyn OtpStore>;

    /// Another node on the same data, where a store has several (Redis).
    async fn another_otp_node(&self) -> Option<Arc<dyn OtpStore>> {
        None
    }

    /// Another handle on the same audit log, where a store has several.
    async fn another_audit_node(&self) -> Option<Arc<dyn herald::store::AuditStore>> {
        None
    }

    /// The time to live of a key (named after the prefix), where the store
    /// forgets records by key TTLs instead of `purge_otps`; `None` where it
    /// does not.
    async fn key_ttl(&self, _key: &str) -> Option<Duration> {
        None
    }
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

    async fn open_otp(&self) -> Arc<dyn OtpStore> {
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

struct Redis {
    redis: crate::helpers::TestRedis,
    /// OTP nodes opened so far (each gets its own node id).
    otp_nodes: std::sync::atomic::AtomicUsize,
}

impl Redis {
    async fn otp_node(&self) -> Arc<dyn OtpStore> {
        let n = self
            .otp_nodes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let settings = RedisSettings {
            url: herald::config::Secret::new(self.redis.url.clone()),
            durability: self.redis.durability(),
            prefix: self.redis.prefix.clone(),
            node_id: format!("conformance-otp-{n}"),
            lease: Duration::from_secs(10),
        };
        Arc::new(
            RedisStore::open(&settings, Role::Client)
                .await
                .expect("open redis store"),
        )
    }
}

#[async_trait]
impl StoreFactory for Redis {
    async fn open(&self) -> Arc<dyn Store> {
        let settings = RedisSettings {
            url: herald::config::Secret::new(self.redis.url.clone()),
            durability: self.redis.durability(),
            prefix: self.redis.prefix.clone(),
            node_id: "conformance".into(),
            lease: Duration::from_secs(10),
        };
        Arc::new(
            RedisStore::open(&settings, Role::Node)
                .await
                .expect("open redis store"),
        )
    }

    async fn open_otp(&self) -> Arc<dyn OtpStore> {
        self.otp_node().await
    }

    async fn another_otp_node(&self) -> Option<Arc<dyn OtpStore>> {
        Some(self.otp_node().await)
    }

    async fn another_audit_node(&self) -> Option<Arc<dyn herald::store::AuditStore>> {
        Some(audit::redis_node(self).await)
    }

    async fn key_ttl(&self, key: &str) -> Option<Duration> {
        let client = ::redis::Client::open(self.redis.url.as_str()).expect("redis url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis");
        let ms: i64 = ::redis::cmd("PTTL")
            .arg(format!("{{{}}}:{key}", self.redis.prefix))
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        assert!(ms >= 0, "{key} has no TTL ({ms})");
        Some(Duration::from_millis(ms.unsigned_abs()))
    }
}

fn redis() -> Redis {
    Redis {
        redis: crate::helpers::TestRedis::start(),
        otp_nodes: std::sync::atomic::AtomicUsize::new(0),
    }
}

pub fn message(connector: &str, class: Class, n: u32) -> Message {
    Message {
        body: format!("body {n}"),
        class,
        route: vec![connector.to_string(), "backup".to_string()],
        owner: "owner".into(),
        ..Message::sample(format!("+4479111{n:05}"), now_micros())
    }
}

fn new(m: Message) -> NewMessage {
    NewMessage::plain(m)
}

async fn admit(store: &dyn Store, msgs: Vec<Message>) -> Vec<Message> {
    store
        .admit(msgs.into_iter().map(new).collect())
        .await
        .expect("admit")
        .into_iter()
        .map(|a| a.message().expect("admitted").clone())
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
            #[tokio::test] async fn a_long_message_partly_taken_keeps_its_parts_and_their_receipts() { super::a_long_message_partly_taken_keeps_its_parts_and_their_receipts(&super::$factory()).await }
            #[tokio::test] async fn a_failover_forgets_the_parts_the_first_carrier_took() { super::a_failover_forgets_the_parts_the_first_carrier_took(&super::$factory()).await }
            #[tokio::test] async fn throttled_retries_do_not_count_as_attempts() { super::throttled_retries_do_not_count_as_attempts(&super::$factory()).await }
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
            #[tokio::test] async fn limits_give_the_reference_answers() { super::limits_give_the_reference_answers(&super::$factory()).await }
            #[tokio::test] async fn limits_are_per_class_and_recipient() { super::limits_are_per_class_and_recipient(&super::$factory()).await }
            #[tokio::test] async fn concurrent_admissions_never_exceed_a_limit() { super::concurrent_admissions_never_exceed_a_limit(&super::$factory()).await }
            #[tokio::test] async fn idempotent_replays_do_not_consume_limits() { super::idempotent_replays_do_not_consume_limits(&super::$factory()).await }
            #[tokio::test] async fn opted_out_recipients_are_refused_when_asked() { super::opted_out_recipients_are_refused_when_asked(&super::$factory()).await }
            #[tokio::test] async fn deferred_messages_wait_until_their_time() { super::deferred_messages_wait_until_their_time(&super::$factory()).await }
            #[tokio::test] async fn inbound_messages_page_in_order_and_apply_keywords() { super::inbound_messages_page_in_order_and_apply_keywords(&super::$factory()).await }
            #[tokio::test] async fn final_messages_with_a_callback_queue_a_webhook() { super::final_messages_with_a_callback_queue_a_webhook(&super::$factory()).await }
            #[tokio::test] async fn webhook_claims_lapse_and_retries_wait() { super::webhook_claims_lapse_and_retries_wait(&super::$factory()).await }
            #[tokio::test] async fn groups_are_replaced_whole_and_page_in_order() { super::groups_are_replaced_whole_and_page_in_order(&super::$factory()).await }
            #[tokio::test] async fn operators_are_unique_by_name_and_updatable() { super::operators_are_unique_by_name_and_updatable(&super::$factory()).await }
            #[tokio::test] async fn sessions_are_found_by_hash_touched_and_ended() { super::sessions_are_found_by_hash_touched_and_ended(&super::$factory()).await }
            #[tokio::test] async fn audit_entries_read_back_newest_first_and_page_before() { super::audit::audit_entries_read_back_newest_first_and_page_before(&super::$factory()).await }
            #[tokio::test] async fn audit_entries_outlive_maintenance_and_restarts() { super::audit::audit_entries_outlive_maintenance_and_restarts(&super::$factory()).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn audit_appends_from_two_handles_form_one_log() { super::audit::audit_appends_from_two_handles_form_one_log(&super::$factory()).await }
            #[tokio::test] async fn a_sealed_text_is_dropped_once_submitted() { super::a_sealed_text_is_dropped_once_submitted(&super::$factory()).await }
            #[tokio::test] async fn otps_are_put_read_back_and_indexed_as_pending() { super::otps_are_put_read_back_and_indexed_as_pending(&super::$factory()).await }
            #[tokio::test] async fn a_new_otp_cancels_the_pending_one() { super::a_new_otp_cancels_the_pending_one(&super::$factory()).await }
            #[tokio::test] async fn wrong_codes_run_down_to_max_attempts_then_nothing_approves() { super::wrong_codes_run_down_to_max_attempts_then_nothing_approves(&super::$factory()).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn concurrent_right_codes_approve_exactly_once() { super::concurrent_right_codes_approve_exactly_once(&super::$factory()).await }
            #[tokio::test] async fn an_otp_past_its_expiry_expires_instead_of_approving() { super::an_otp_past_its_expiry_expires_instead_of_approving(&super::$factory()).await }
            #[tokio::test] async fn canceling_ends_a_pending_otp_only() { super::canceling_ends_a_pending_otp_only(&super::$factory()).await }
            #[tokio::test] async fn budgets_are_taken_all_or_nothing() { super::budgets_are_taken_all_or_nothing(&super::$factory()).await }
            #[tokio::test] async fn budget_windows_start_fresh_and_counts_span_two() { super::budget_windows_start_fresh_and_counts_span_two(&super::$factory()).await }
            #[tokio::test] async fn blocked_prefixes_lapse_and_can_be_lifted() { super::blocked_prefixes_lapse_and_can_be_lifted(&super::$factory()).await }
            #[tokio::test] async fn ended_otps_go_after_otp_keep() { super::ended_otps_go_after_otp_keep(&super::$factory()).await }
            #[tokio::test] async fn retention_purges_finished_records_and_never_pending_work() { super::retention_purges_finished_records_and_never_pending_work(&super::$factory()).await }
            #[tokio::test] async fn broadcast_audiences_merge_once_and_stay_fixed() { super::broadcast_audiences_merge_once_and_stay_fixed(&super::$factory()).await }
            #[tokio::test] async fn fan_out_moves_the_cursor_once_and_counts_every_status() { super::fan_out_moves_the_cursor_once_and_counts_every_status(&super::$factory()).await }
            #[tokio::test] async fn broadcast_decisions_follow_the_rules_and_cancel_stops_the_queued() { super::broadcast_decisions_follow_the_rules_and_cancel_stops_the_queued(&super::$factory()).await }
            #[tokio::test] async fn postponed_webhooks_wait_without_counting_an_attempt() { super::postponed_webhooks_wait_without_counting_an_attempt(&super::$factory()).await }
        }
        )+
    };
}

conformance!(embedded, redis);

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

fn retry(m: &Message, partial: Option<PartialSubmit>) -> Outcome {
    Outcome::Retry {
        id: m.id,
        not_before: now_micros(),
        error: "throttled".into(),
        counts_attempt: true,
        partial,
    }
}

fn partial(connector: &str, ids: &[Option<&str>]) -> PartialSubmit {
    PartialSubmit {
        connector: connector.into(),
        reference: 7,
        smsc_ids: ids.iter().map(|id| id.map(str::to_string)).collect(),
    }
}

/// Promotes due retries and claims the message again.
async fn reclaim(store: &dyn Store, connector: &str) -> Message {
    store
        .maintain(
            now_micros() + 1,
            Retention::with_idempotency_ttl(Duration::from_secs(86_400)),
        )
        .await
        .expect("maintain");
    let mut again = store.claim(connector, 1).await.expect("claim");
    assert_eq!(again.len(), 1, "claimable again on {connector}");
    again.remove(0)
}

async fn a_long_message_partly_taken_keeps_its_parts_and_their_receipts(f: &dyn StoreFactory) {
    let store = f.open().await;
    let mut m = message("a", Class::Transactional, 1);
    m.segments = 3;
    let ms = admit(&*store, vec![m]).await;
    store.claim("a", 1).await.expect("claim");
    // Parts 1 and 3 were taken, part 2 was throttled.
    let first = partial("a", &[Some("p1"), None, Some("p3")]);
    store
        .record(vec![retry(&ms[0], Some(first.clone()))])
        .await
        .expect("record");
    // Part 1's receipt comes while the message waits for its retry.
    let finals = store
        .apply_receipts(vec![receipt("p1", ReceiptState::Delivered)])
        .await
        .expect("receipt");
    assert!(finals.is_empty());
    let again = reclaim(&*store, "a").await;
    assert_eq!(
        again.partial.as_ref(),
        Some(&first),
        "the retry knows what was taken"
    );
    assert_eq!(again.status, Status::Queued);
    // Part 2's receipt races ahead of the submit being recorded.
    store
        .apply_receipts(vec![receipt("p2", ReceiptState::Delivered)])
        .await
        .expect("receipt");
    let finals = store
        .record(vec![Outcome::Submitted {
            id: ms[0].id,
            connector: "a".into(),
            smsc_ids: vec!["p1".into(), "p2".into(), "p3".into()],
            at: now_micros(),
        }])
        .await
        .expect("record");
    assert!(finals.is_empty(), "part 3 has no receipt yet");
    let m = store.message(ms[0].id).await.expect("read").expect("found");
    assert_eq!(m.status, Status::Submitted);
    assert_eq!(m.partial, None);
    assert_eq!(m.parts_delivered, 2, "each receipt counted once");
    let finals = store
        .apply_receipts(vec![receipt("p3", ReceiptState::Delivered)])
        .await
        .expect("receipt");
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].status, Status::Delivered);
    // A carrier resending part 1's receipt changes nothing.
    let finals = store
        .apply_receipts(vec![receipt("p1", ReceiptState::Delivered)])
        .await
        .expect("receipt");
    assert!(finals.is_empty());
    store.close().await;
}

async fn a_failover_forgets_the_parts_the_first_carrier_took(f: &dyn StoreFactory) {
    let store = f.open().await;
    let mut m = message("a", Class::Transactional, 1);
    m.segments = 2;
    let ms = admit(&*store, vec![m]).await;
    store.claim("a", 1).await.expect("claim");
    store
        .record(vec![retry(&ms[0], Some(partial("a", &[Some("x1"), None])))])
        .await
        .expect("record");
    store
        .apply_receipts(vec![receipt("x1", ReceiptState::Delivered)])
        .await
        .expect("receipt");
    reclaim(&*store, "a").await;
    store
        .record(vec![Outcome::Failover {
            id: ms[0].id,
            error: "rejected".into(),
        }])
        .await
        .expect("record");
    let moved = store.claim("backup", 1).await.expect("claim");
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].partial, None);
    assert_eq!(moved[0].parts_delivered, 0);
    store
        .record(vec![Outcome::Submitted {
            id: ms[0].id,
            connector: "backup".into(),
            smsc_ids: vec!["b1".into(), "b2".into()],
            at: now_micros(),
        }])
        .await
        .expect("record");
    let on_backup = |smsc: &str| Receipt {
        connector: "backup".into(),
        ..receipt(smsc, ReceiptState::Delivered)
    };
    // A late receipt from the first carrier does not count for the second.
    let finals = store
        .apply_receipts(vec![
            receipt("x1", ReceiptState::Delivered),
            on_backup("b1"),
        ])
        .await
        .expect("receipts");
    assert!(finals.is_empty());
    let finals = store
        .apply_receipts(vec![on_backup("b2")])
        .await
        .expect("receipts");
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].status, Status::Delivered);
    store.close().await;
}

async fn throttled_retries_do_not_count_as_attempts(f: &dyn StoreFactory) {
    let store = f.open().await;
    let ms = admit(&*store, vec![message("a", Class::Otp, 1)]).await;
    store.claim("a", 1).await.expect("claim");
    for _ in 0..3 {
        store
            .record(vec![Outcome::Retry {
                id: ms[0].id,
                not_before: now_micros(),
                error: "throttled".into(),
                counts_attempt: false,
                partial: None,
            }])
            .await
            .expect("record");
        let again = reclaim(&*store, "a").await;
        assert_eq!(again.attempts, 0);
    }
    store
        .record(vec![retry(&ms[0], None)])
        .await
        .expect("record");
    assert_eq!(reclaim(&*store, "a").await.attempts, 1);
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
            counts_attempt: true,
            partial: None,
        }])
        .await
        .expect("record");
    assert_eq!(store.retry_depth(), 1);
    let early = store
        .maintain(
            now_micros(),
            Retention::with_idempotency_ttl(Duration::from_secs(86_400)),
        )
        .await
        .expect("maintain");
    assert_eq!(early.promoted, 0);
    assert!(store.claim("a", 1).await.expect("claim").is_empty());
    let later = store
        .maintain(
            due + 1,
            Retention::with_idempotency_ttl(Duration::from_secs(86_400)),
        )
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
        .maintain(
            now_micros() + 100_000,
            Retention::with_idempotency_ttl(Duration::from_secs(86_400)),
        )
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
        idempotency: Some((owner.to_string(), "k1".to_string())),
        ..NewMessage::plain(m)
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
        idempotency: Some(("o".to_string(), "k".to_string())),
        ..NewMessage::plain(m)
    };
    let first = message("a", Class::Otp, 1);
    store
        .admit(vec![keyed(first.clone())])
        .await
        .expect("admit");
    store
        .maintain(
            now_micros() + 2_000_000,
            Retention::with_idempotency_ttl(Duration::from_secs(1)),
        )
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
        webhook_secret: Some("whsec_x".into()),
        senders: Vec::new(),
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

const SEC: Micros = 1_000_000;

fn limited(mut m: Message, at: Micros, policy: LimitPolicy) -> NewMessage {
    m.created_at = at;
    NewMessage {
        limit: Some(policy),
        limit_scope: None,
        ..NewMessage::plain(m)
    }
}

/// Admits one limited message at `at`; `None` if allowed, else the wait.
async fn try_send(store: &dyn Store, to: &str, class: Class, at: Micros) -> Option<Micros> {
    let mut m = message("a", class, 0);
    m.to = to.to_string();
    let policy = LimitPolicy::default_for(class);
    match store
        .admit(vec![limited(m, at, policy)])
        .await
        .expect("admit")
        .remove(0)
    {
        Admission::Created(_) => None,
        Admission::RateLimited { retry_after } => Some(retry_after),
        other => panic!("unexpected {other:?}"),
    }
}

async fn limits_give_the_reference_answers(f: &dyn StoreFactory) {
    let store = f.open().await;
    let t0 = now_micros();
    // otp: one per 30 s, five per hour.
    let to = "+12025550100";
    assert_eq!(try_send(&*store, to, Class::Otp, t0).await, None);
    assert_eq!(
        try_send(&*store, to, Class::Otp, t0 + 10 * SEC).await,
        Some(20 * SEC)
    );
    for i in 1..5 {
        assert_eq!(
            try_send(&*store, to, Class::Otp, t0 + i * 60 * SEC).await,
            None
        );
    }
    assert_eq!(
        try_send(&*store, to, Class::Otp, t0 + 5 * 60 * SEC).await,
        Some(3600 * SEC - 5 * 60 * SEC)
    );
    // marketing: two a day.
    let to = "+12025550101";
    assert_eq!(try_send(&*store, to, Class::Marketing, t0).await, None);
    assert_eq!(
        try_send(&*store, to, Class::Marketing, t0 + SEC).await,
        None
    );
    assert_eq!(
        try_send(&*store, to, Class::Marketing, t0 + 2 * SEC).await,
        Some(86_400 * SEC - 2 * SEC)
    );
    assert_eq!(
        try_send(&*store, to, Class::Marketing, t0 + 86_400 * SEC + 1).await,
        None
    );
    store.close().await;
}

async fn limits_are_per_class_and_recipient(f: &dyn StoreFactory) {
    let store = f.open().await;
    let t0 = now_micros();
    assert_eq!(
        try_send(&*store, "+12025550102", Class::Otp, t0).await,
        None
    );
    assert_eq!(
        try_send(&*store, "+12025550103", Class::Otp, t0).await,
        None
    );
    assert_eq!(
        try_send(&*store, "+12025550102", Class::Transactional, t0).await,
        None
    );
    assert!(
        try_send(&*store, "+12025550102", Class::Otp, t0 + 1)
            .await
            .is_some()
    );
    store.close().await;
}

async fn concurrent_admissions_never_exceed_a_limit(f: &dyn StoreFactory) {
    let store = f.open().await;
    let now = now_micros();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut m = message("a", Class::Transactional, i);
            m.to = "+12025550104".into();
            let policy = LimitPolicy::default_for(Class::Transactional);
            store
                .admit(vec![limited(m, now, policy)])
                .await
                .expect("admit")
                .remove(0)
        }));
    }
    let mut created = 0;
    for t in tasks {
        if matches!(t.await.expect("join"), Admission::Created(_)) {
            created += 1;
        }
    }
    assert_eq!(created, 30, "transactional allows 30 per hour");
    store.close().await;
}

async fn idempotent_replays_do_not_consume_limits(f: &dyn StoreFactory) {
    let store = f.open().await;
    let now = now_micros();
    let keyed = |n: u32| {
        let mut m = message("a", Class::Marketing, n);
        m.to = "+12025550105".into();
        NewMessage {
            idempotency: Some(("o".into(), "same".into())),
            ..limited(m, now, LimitPolicy::default_for(Class::Marketing))
        }
    };
    for n in 0..5 {
        let a = store.admit(vec![keyed(n)]).await.expect("admit").remove(0);
        assert!(a.message().is_some(), "{a:?}");
    }
    // Only the first consumed the limit: one more is allowed today.
    assert_eq!(
        try_send(&*store, "+12025550105", Class::Marketing, now + 1).await,
        None
    );
    assert!(
        try_send(&*store, "+12025550105", Class::Marketing, now + 2)
            .await
            .is_some()
    );
    store.close().await;
}

async fn opted_out_recipients_are_refused_when_asked(f: &dyn StoreFactory) {
    let store = f.open().await;
    store
        .opt_out("+12025550106", now_micros())
        .await
        .expect("opt out");
    assert!(store.is_opted_out("+12025550106").await.expect("read"));
    let mut m = message("a", Class::Marketing, 1);
    m.to = "+12025550106".into();
    let refused = store
        .admit(vec![NewMessage {
            refuse_if_opted_out: true,
            ..NewMessage::plain(m.clone())
        }])
        .await
        .expect("admit");
    assert_eq!(refused[0], Admission::OptedOut);
    // Not asked to check (e.g. an emergency): it goes.
    let mut other = m.clone();
    other.id = MessageId::generate();
    assert!(matches!(
        store
            .admit(vec![NewMessage::plain(other)])
            .await
            .expect("admit")[0],
        Admission::Created(_)
    ));
    assert!(store.opt_in("+12025550106").await.expect("opt in"));
    assert!(!store.opt_in("+12025550106").await.expect("opt in"));
    assert!(!store.is_opted_out("+12025550106").await.expect("read"));
    store.close().await;
}

async fn deferred_messages_wait_until_their_time(f: &dyn StoreFactory) {
    let store = f.open().await;
    let m = message("a", Class::Marketing, 1);
    let at = m.created_at + 300_000;
    store
        .admit(vec![NewMessage {
            not_before: Some(at),
            ..NewMessage::plain(m.clone())
        }])
        .await
        .expect("admit");
    assert!(store.claim("a", 10).await.expect("claim").is_empty());
    assert_eq!(store.retry_depth(), 1);
    store
        .maintain(
            at + 1,
            Retention::with_idempotency_ttl(Duration::from_secs(3600)),
        )
        .await
        .expect("maintain");
    let claimed = store.claim("a", 10).await.expect("claim");
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![m.id]);
    store.close().await;
}

fn inbound(n: u32, body: &str, action: Option<&str>) -> InboundRecord {
    InboundRecord {
        id: MessageId::generate(),
        connector: "a".into(),
        from: format!("+1202555{n:04}"),
        to: "12345".into(),
        body: body.into(),
        received_at: now_micros(),
        action: action.map(str::to_string),
    }
}

async fn inbound_messages_page_in_order_and_apply_keywords(f: &dyn StoreFactory) {
    let store = f.open().await;
    let records: Vec<InboundRecord> = (0..5).map(|i| inbound(200 + i, "hello", None)).collect();
    store
        .record_inbound(records.clone(), None)
        .await
        .expect("record");
    store
        .record_inbound(vec![inbound(300, "STOP", Some("opt_out"))], None)
        .await
        .expect("record");
    assert!(store.is_opted_out("+12025550300").await.expect("read"));
    store
        .record_inbound(vec![inbound(300, "START", Some("opt_in"))], None)
        .await
        .expect("record");
    assert!(!store.is_opted_out("+12025550300").await.expect("read"));
    let page1 = store.inbound(None, 3).await.expect("page");
    assert_eq!(
        page1.iter().map(|r| r.id).collect::<Vec<_>>(),
        records[..3].iter().map(|r| r.id).collect::<Vec<_>>()
    );
    let page2 = store.inbound(Some(page1[2].id), 10).await.expect("page");
    assert_eq!(page2.len(), 4);
    assert_eq!(page2[0].id, records[3].id);
    assert_eq!(store.webhook_depth(), 0);
    store
        .record_inbound(
            vec![inbound(400, "hi", None)],
            Some("http://127.0.0.1:9/in".into()),
        )
        .await
        .expect("record");
    assert_eq!(store.webhook_depth(), 1);
    let jobs = store
        .claim_webhooks(now_micros() + 1, 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert!(matches!(&jobs[0].event, WebhookEvent::Inbound { record } if record.body == "hi"));
    store.close().await;
}

async fn final_messages_with_a_callback_queue_a_webhook(f: &dyn StoreFactory) {
    let store = f.open().await;
    let mut m = message("a", Class::Otp, 1);
    m.callback_url = Some("http://127.0.0.1:9/cb".into());
    let plain = message("a", Class::Otp, 2);
    admit(&*store, vec![m.clone(), plain.clone()]).await;
    store.claim("a", 2).await.expect("claim");
    store
        .record(vec![submitted(&m, "cb1"), submitted(&plain, "cb2")])
        .await
        .expect("record");
    assert_eq!(store.webhook_depth(), 0, "submitted is not final");
    store
        .apply_receipts(vec![
            receipt("cb1", ReceiptState::Delivered),
            receipt("cb2", ReceiptState::Delivered),
        ])
        .await
        .expect("receipts");
    assert_eq!(store.webhook_depth(), 1);
    let jobs = store
        .claim_webhooks(now_micros() + 1, 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].url, "http://127.0.0.1:9/cb");
    assert!(
        matches!(&jobs[0].event, WebhookEvent::MessageStatus { message_id, owner } if *message_id == m.id && owner == "owner")
    );
    store.close().await;
}

async fn webhook_claims_lapse_and_retries_wait(f: &dyn StoreFactory) {
    let store = f.open().await;
    store
        .record_inbound(
            vec![inbound(500, "x", None)],
            Some("http://127.0.0.1:9/in".into()),
        )
        .await
        .expect("record");
    let t = now_micros() + 1;
    let lease = Duration::from_secs(10);
    let jobs = store.claim_webhooks(t, 10, lease).await.expect("claim");
    assert_eq!(jobs.len(), 1);
    // Claimed: nobody else gets it until the lease lapses.
    assert!(
        store
            .claim_webhooks(t + SEC, 10, lease)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store
        .claim_webhooks(t + 11 * SEC, 10, lease)
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, jobs[0].id);
    // Finishing the stale claim changes nothing; the current one counts.
    store
        .finish_webhooks(vec![(jobs[0].clone(), WebhookResult::Done)])
        .await
        .expect("finish");
    assert_eq!(store.webhook_depth(), 1);
    let retry_at = t + 60 * SEC;
    store
        .finish_webhooks(vec![(
            again[0].clone(),
            WebhookResult::Retry {
                next_at: retry_at,
                error: "500".into(),
            },
        )])
        .await
        .expect("finish");
    assert!(
        store
            .claim_webhooks(retry_at - 1, 10, lease)
            .await
            .expect("claim")
            .is_empty()
    );
    let third = store
        .claim_webhooks(retry_at, 10, lease)
        .await
        .expect("claim");
    assert_eq!(third[0].attempts, 1);
    assert_eq!(third[0].last_error.as_deref(), Some("500"));
    store
        .finish_webhooks(vec![(third[0].clone(), WebhookResult::Done)])
        .await
        .expect("finish");
    assert_eq!(store.webhook_depth(), 0);
    store.close().await;
}

// The OTP role. Times are offsets from the wall clock: the Redis store
// expires keys on Redis's clock, so a record "created" long ago would be
// gone before the test reads it.

fn otp(id: &str, to: &str, at: Micros) -> OtpRecord {
    OtpRecord {
        id: id.into(),
        owner: "shop".into(),
        to: to.into(),
        prefix: "44770".into(),
        hash: "argon2-hash".into(),
        status: OtpStatus::Pending,
        attempts: 0,
        max_attempts: 3,
        created_at: at,
        expires_at: at + 300 * SEC,
        done_at: None,
        message_id: MessageId::generate(),
    }
}

async fn attempt(store: &dyn OtpStore, id: &str, matched: bool, now: Micros) -> (OtpRecord, bool) {
    let a = store
        .attempt_otp(id, matched, now)
        .await
        .expect("attempt")
        .expect("the OTP exists");
    (a.otp, a.approved)
}

async fn otps_are_put_read_back_and_indexed_as_pending(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    let t = now_micros();
    let o = otp("o1", "+447700900001", t);
    assert_eq!(store.put_otp(o.clone()).await.expect("put"), None);
    assert_eq!(store.otp("o1").await.expect("get"), Some(o.clone()));
    assert_eq!(
        store
            .pending_otp("shop", "+447700900001")
            .await
            .expect("pending"),
        Some(o)
    );
    assert_eq!(store.otp("nope").await.expect("get"), None);
    assert_eq!(
        store
            .pending_otp("shop", "+447700900002")
            .await
            .expect("pending"),
        None,
        "per recipient"
    );
    assert_eq!(
        store
            .pending_otp("other", "+447700900001")
            .await
            .expect("pending"),
        None,
        "per application"
    );
}

async fn a_new_otp_cancels_the_pending_one(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    let t = now_micros();
    let to = "+447700900001";
    store.put_otp(otp("o1", to, t)).await.expect("put");
    let second = otp("o2", to, t + SEC);
    assert_eq!(
        store.put_otp(second.clone()).await.expect("put"),
        Some("o1".to_string())
    );
    let old = store.otp("o1").await.expect("get").expect("kept");
    assert_eq!(old.status, OtpStatus::Canceled);
    assert_eq!(old.done_at, Some(second.created_at));
    assert_eq!(
        store.pending_otp("shop", to).await.expect("pending"),
        Some(second)
    );
    let (_, approved) = attempt(&*store, "o1", true, t + 2 * SEC).await;
    assert!(!approved, "a replaced code stops working");
    // Another application's OTP for the same number is not touched.
    let mut theirs = otp("o3", to, t + 2 * SEC);
    theirs.owner = "other".into();
    assert_eq!(store.put_otp(theirs).await.expect("put"), None);
    // An ended OTP is not replaced, only a pending one.
    let (_, approved) = attempt(&*store, "o2", true, t + 3 * SEC).await;
    assert!(approved);
    assert_eq!(store.pending_otp("shop", to).await.expect("pending"), None);
    assert_eq!(
        store
            .put_otp(otp("o4", to, t + 4 * SEC))
            .await
            .expect("put"),
        None
    );
    assert_eq!(
        store.otp("o2").await.expect("get").expect("kept").status,
        OtpStatus::Approved
    );
}

async fn wrong_codes_run_down_to_max_attempts_then_nothing_approves(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    let t = now_micros();
    store
        .put_otp(otp("o1", "+447700900001", t))
        .await
        .expect("put");
    for (n, remaining) in [(1, 2), (2, 1)] {
        let (o, approved) = attempt(&*store, "o1", false, t + n * SEC).await;
        assert!(!approved);
        assert_eq!(o.status, OtpStatus::Pending);
        assert_eq!(o.attempts_remaining(t + n * SEC), remaining);
    }
    let (o, approved) = attempt(&*store, "o1", false, t + 3 * SEC).await;
    assert!(!approved);
    assert_eq!(o.status, OtpStatus::MaxAttempts);
    assert_eq!(o.attempts, 3);
    assert_eq!(o.done_at, Some(t + 3 * SEC));
    assert_eq!(
        store
            .pending_otp("shop", "+447700900001")
            .await
            .expect("pending"),
        None,
        "an ended OTP leaves the pending index"
    );
    let (after, approved) = attempt(&*store, "o1", true, t + 4 * SEC).await;
    assert!(!approved, "exhausted never verifies");
    assert_eq!(after, o, "an ended OTP does not change");
    assert_eq!(store.otp("o1").await.expect("get"), Some(o));
    assert!(
        store
            .attempt_otp("nope", true, t)
            .await
            .expect("attempt")
            .is_none()
    );
}

async fn concurrent_right_codes_approve_exactly_once(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    // Where the store has nodes, half the attempts come through another.
    let other = f.another_otp_node().await.unwrap_or_else(|| store.clone());
    let t = now_micros();
    store
        .put_otp(otp("o1", "+447700900001", t))
        .await
        .expect("put");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let node = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            node.attempt_otp("o1", true, t + SEC)
                .await
                .expect("attempt")
                .expect("the OTP exists")
                .approved
        }));
    }
    let mut approvals = 0;
    for task in tasks {
        if task.await.expect("join") {
            approvals += 1;
        }
    }
    assert_eq!(approvals, 1);
    let o = store.otp("o1").await.expect("get").expect("kept");
    assert_eq!(o.status, OtpStatus::Approved);
    assert_eq!(o.attempts, 0);
    assert_eq!(o.done_at, Some(t + SEC));
}

async fn an_otp_past_its_expiry_expires_instead_of_approving(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    let t = now_micros();
    let o = otp("o1", "+447700900001", t);
    let expires_at = o.expires_at;
    store.put_otp(o).await.expect("put");
    let (o, approved) = attempt(&*store, "o1", true, expires_at).await;
    assert!(!approved);
    assert_eq!(o.status, OtpStatus::Expired);
    assert_eq!(o.attempts, 0, "an expired OTP counts no attempt");
    assert_eq!(o.done_at, Some(expires_at));
    assert_eq!(store.otp("o1").await.expect("get"), Some(o.clone()));
    assert_eq!(
        store
            .cancel_otp("o1", expires_at + SEC)
            .await
            .expect("cancel"),
        Some(o),
        "an ended OTP is returned unchanged"
    );
    // Canceling one past its expiry ends it as expired.
    store
        .put_otp(otp("o2", "+447700900002", t))
        .await
        .expect("put");
    let o2 = store
        .cancel_otp("o2", expires_at + SEC)
        .await
        .expect("cancel")
        .expect("the OTP exists");
    assert_eq!(o2.status, OtpStatus::Expired);
    assert_eq!(o2.done_at, Some(expires_at + SEC));
}

async fn canceling_ends_a_pending_otp_only(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    let t = now_micros();
    store
        .put_otp(otp("o1", "+447700900001", t))
        .await
        .expect("put");
    attempt(&*store, "o1", false, t + SEC).await;
    let o = store
        .cancel_otp("o1", t + 2 * SEC)
        .await
        .expect("cancel")
        .expect("the OTP exists");
    assert_eq!(o.status, OtpStatus::Canceled);
    assert_eq!(o.done_at, Some(t + 2 * SEC));
    assert_eq!(o.attempts, 1, "attempts are kept");
    assert_eq!(
        store
            .pending_otp("shop", "+447700900001")
            .await
            .expect("pending"),
        None
    );
    let (_, approved) = attempt(&*store, "o1", true, t + 3 * SEC).await;
    assert!(!approved, "a canceled code stops working");
    assert_eq!(
        store.cancel_otp("o1", t + 4 * SEC).await.expect("cancel"),
        Some(o),
        "canceling again changes nothing"
    );
    assert_eq!(store.cancel_otp("nope", t).await.expect("cancel"), None);
}

fn budget(key: &str, limit: u32) -> Budget {
    Budget {
        key: key.into(),
        limit,
    }
}

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|k| (*k).to_string()).collect()
}

async fn budgets_are_taken_all_or_nothing(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    let t = now_micros();
    let all = [budget("app", 2), budget("prefix", 1), budget("global", 0)];
    assert_eq!(store.take_budgets(&all, t).await.expect("take"), None);
    assert_eq!(
        store.take_budgets(&all, t).await.expect("take"),
        Some(1),
        "the first full budget"
    );
    let names = keys(&["app", "prefix", "global"]);
    assert_eq!(
        store.budget_counts(&names, t).await.expect("counts"),
        vec![1, 1, 1],
        "a refusal takes nothing from the others"
    );
    let some = [budget("global", 0), budget("app", 2)];
    assert_eq!(store.take_budgets(&some, t).await.expect("take"), None);
    assert_eq!(store.take_budgets(&some, t).await.expect("take"), Some(1));
    assert_eq!(
        store.budget_counts(&names, t).await.expect("counts"),
        vec![2, 1, 2]
    );
    // A limit of 0 only counts.
    for _ in 0..5 {
        assert_eq!(
            store
                .take_budgets(&[budget("global", 0)], t)
                .await
                .expect("take"),
            None
        );
    }
    assert_eq!(
        store
            .budget_counts(&keys(&["global", "unknown"]), t)
            .await
            .expect("counts"),
        vec![7, 0]
    );
    // A key listed twice takes two.
    let twice = [budget("twice", 0), budget("twice", 0)];
    assert_eq!(store.take_budgets(&twice, t).await.expect("take"), None);
    assert_eq!(
        store
            .budget_counts(&keys(&["twice"]), t)
            .await
            .expect("counts"),
        vec![2]
    );
}

/// A key TTL against the one expected (Redis and the test read their
/// clocks at different moments).
fn assert_about(ttl: Duration, expected: Duration) {
    assert!(
        ttl.abs_diff(expected) < Duration::from_secs(5),
        "ttl {ttl:?}, expected {expected:?}"
    );
}

async fn budget_windows_start_fresh_and_counts_span_two(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    let t = now_micros();
    let next = t + BUDGET_WINDOW;
    let later = t + 3 * BUDGET_WINDOW;
    let one = [budget("app", 1)];
    let names = keys(&["app"]);
    assert_eq!(store.take_budgets(&one, t).await.expect("take"), None);
    assert_eq!(store.take_budgets(&one, t).await.expect("take"), Some(0));
    assert_eq!(
        store.take_budgets(&one, next).await.expect("take"),
        None,
        "the next window starts fresh"
    );
    assert_eq!(
        store.budget_counts(&names, t).await.expect("counts"),
        vec![1]
    );
    assert_eq!(
        store.budget_counts(&names, next).await.expect("counts"),
        vec![2],
        "current and previous window"
    );
    assert_eq!(
        store.budget_counts(&names, later).await.expect("counts"),
        vec![0]
    );
    if let Some(ttl) = f
        .key_ttl(&format!("otp_budget:{}:app", budget_window(t)))
        .await
    {
        // Kept until two windows after its window starts.
        let until = (budget_window(t) + 2) * BUDGET_WINDOW;
        let expected = Duration::from_micros((until - now_micros()).unsigned_abs());
        assert_about(ttl, expected);
    }
}

async fn blocked_prefixes_lapse_and_can_be_lifted(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    let t = now_micros();
    store
        .block_prefix("44770", t + 10 * SEC)
        .await
        .expect("block");
    store
        .block_prefix("1202", t + 20 * SEC)
        .await
        .expect("block");
    let blocked = |now: Micros| {
        let store = store.clone();
        async move {
            let mut b = store.blocked_prefixes(now).await.expect("blocked");
            b.sort();
            b
        }
    };
    assert_eq!(
        blocked(t).await,
        vec![
            ("1202".to_string(), t + 20 * SEC),
            ("44770".to_string(), t + 10 * SEC)
        ]
    );
    assert_eq!(
        blocked(t + 10 * SEC).await,
        vec![("1202".to_string(), t + 20 * SEC)],
        "a block ends at its end"
    );
    assert_eq!(blocked(t + 20 * SEC).await, vec![]);
    assert!(store.unblock_prefix("1202").await.expect("unblock"));
    assert!(!store.unblock_prefix("1202").await.expect("unblock"));
    assert_eq!(blocked(t).await, vec![("44770".to_string(), t + 10 * SEC)]);
    // Blocking again moves the end; a purge drops lapsed blocks.
    store
        .block_prefix("44770", t + 30 * SEC)
        .await
        .expect("block");
    store
        .block_prefix("1202", t + 5 * SEC)
        .await
        .expect("block");
    store.purge_otps(t + 5 * SEC).await.expect("purge");
    assert_eq!(blocked(t).await, vec![("44770".to_string(), t + 30 * SEC)]);
    assert!(!store.unblock_prefix("1202").await.expect("unblock"));
}

async fn ended_otps_go_after_otp_keep(f: &dyn StoreFactory) {
    let store = f.open_otp().await;
    let t = now_micros();
    let o = otp("o1", "+447700900001", t);
    let expires_at = o.expires_at;
    store.put_otp(o).await.expect("put");
    store
        .put_otp(otp("o2", "+447700900002", t))
        .await
        .expect("put");
    // o1 ends early, o2 never ends (its expiry counts).
    let ended_at = t + SEC;
    attempt(&*store, "o1", true, ended_at).await;
    if let Some(ttl) = f.key_ttl("otp:o1").await {
        // Redis forgets records by key TTLs: an OTP lives until OTP_KEEP
        // after the later of its expiry and its end (so an early end keeps
        // it up to its lifetime longer than a purge would), a pending index
        // entry until the expiry; purge_otps removes none of them.
        let expected = Duration::from_micros((expires_at + OTP_KEEP - now_micros()).unsigned_abs());
        assert_about(ttl, expected);
        let ttl = f
            .key_ttl("otp_pending:shop\n+447700900002")
            .await
            .expect("ttl");
        let expected = Duration::from_micros((expires_at - now_micros()).unsigned_abs());
        assert_about(ttl, expected);
        assert_eq!(store.purge_otps(t).await.expect("purge"), 0);
        assert!(store.otp("o1").await.expect("get").is_some());
        return;
    }
    assert_eq!(
        store.purge_otps(ended_at + OTP_KEEP).await.expect("purge"),
        0
    );
    assert!(store.otp("o1").await.expect("get").is_some());
    assert_eq!(
        store
            .purge_otps(ended_at + OTP_KEEP + 1)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(store.otp("o1").await.expect("get"), None);
    assert!(
        store.otp("o2").await.expect("get").is_some(),
        "a pending OTP is kept until OTP_KEEP after its expiry"
    );
    assert_eq!(
        store
            .purge_otps(expires_at + OTP_KEEP + 1)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(store.otp("o2").await.expect("get"), None);
    assert_eq!(
        store
            .pending_otp("shop", "+447700900002")
            .await
            .expect("pending"),
        None,
        "a purged OTP leaves the pending index"
    );
}

async fn postponed_webhooks_wait_without_counting_an_attempt(f: &dyn StoreFactory) {
    let store = f.open().await;
    store
        .record_inbound(
            vec![inbound(501, "x", None)],
            Some("http://127.0.0.1:9/in".into()),
        )
        .await
        .expect("record");
    let t = now_micros() + 1;
    let lease = Duration::from_secs(10);
    let jobs = store.claim_webhooks(t, 10, lease).await.expect("claim");
    assert_eq!(jobs.len(), 1);
    let due = t + 2 * SEC;
    store
        .finish_webhooks(vec![(
            jobs[0].clone(),
            WebhookResult::Postpone { next_at: due },
        )])
        .await
        .expect("finish");
    assert!(
        store
            .claim_webhooks(due - 1, 10, lease)
            .await
            .expect("claim")
            .is_empty()
    );
    let again = store.claim_webhooks(due, 10, lease).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 0);
    assert_eq!(again[0].last_error, None);
    assert_eq!(store.webhook_depth(), 1);
    store.close().await;
}

async fn retention_purges_finished_records_and_never_pending_work(f: &dyn StoreFactory) {
    let store = f.open().await;
    let keep = Duration::from_millis(300);
    let retention = Retention {
        idempotency: Duration::from_millis(100),
        messages: keep,
        inbound: keep,
        receipts: keep,
    };
    // The first pass sets the retention (Redis: the TTL of what finishes).
    store
        .maintain(now_micros(), retention)
        .await
        .expect("maintain");
    let with_callback = |n| Message {
        callback_url: Some("http://127.0.0.1:9/cb".into()),
        ..message("a", Class::Otp, n)
    };
    let ms = admit(
        &*store,
        vec![
            message("a", Class::Otp, 1),      // delivered: purged
            message("a", Class::Otp, 2),      // submitted, no receipt yet: kept
            with_callback(3),                 // failed, webhook pending: kept
            with_callback(4),                 // failed, webhook delivered: purged
            message("queued", Class::Otp, 5), // queued: kept
        ],
    )
    .await;
    assert_eq!(store.claim("a", 10).await.expect("claim").len(), 4);
    store
        .record(vec![
            submitted(&ms[0], "s1"),
            submitted(&ms[1], "s2"),
            Outcome::Failed {
                id: ms[2].id,
                error: "no".into(),
            },
            Outcome::Failed {
                id: ms[3].id,
                error: "no".into(),
            },
        ])
        .await
        .expect("record");
    store
        .apply_receipts(vec![receipt("s1", ReceiptState::Delivered)])
        .await
        .expect("receipt");
    let jobs = store
        .claim_webhooks(now_micros(), 10, Duration::from_secs(60))
        .await
        .expect("claim webhooks");
    let done: Vec<_> = jobs
        .into_iter()
        .filter(|j| matches!(&j.event, WebhookEvent::MessageStatus { message_id, .. } if *message_id == ms[3].id))
        .map(|j| (j, WebhookResult::Done))
        .collect();
    assert_eq!(done.len(), 1);
    store.finish_webhooks(done).await.expect("finish webhooks");
    store
        .record_inbound(vec![inbound(1, "old", None)], None)
        .await
        .expect("inbound");

    let (a, d) = (ms[0].id, ms[3].id);
    herald::testing::eventually_async(
        Duration::from_secs(10),
        "finished records purged",
        async || {
            store
                .maintain(now_micros(), retention)
                .await
                .expect("maintain");
            store.message(a).await.expect("read").is_none()
                && store.message(d).await.expect("read").is_none()
                && store.inbound(None, 10).await.expect("inbound").is_empty()
        },
    )
    .await;
    for m in &ms[1..3] {
        assert!(
            store.message(m.id).await.expect("read").is_some(),
            "{} has work pending",
            m.id
        );
    }
    let queued = store
        .message(ms[4].id)
        .await
        .expect("read")
        .expect("queued kept");
    assert_eq!(queued.status, Status::Queued);
    // The kept submit's carrier-id link still leads to it.
    let finals = store
        .apply_receipts(vec![receipt("s2", ReceiptState::Delivered)])
        .await
        .expect("receipt");
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].id, ms[1].id);
    store.close().await;
}

async fn groups_are_replaced_whole_and_page_in_order(f: &dyn StoreFactory) {
    let store = f.open().await;
    let members: Vec<String> = (0..2500).map(|n| format!("+4474001{n:05}")).collect();
    let g = store
        .replace_group("north", members.clone(), 1_000)
        .await
        .expect("replace");
    assert_eq!((g.count, g.updated_at), (2500, 1_000));
    store
        .replace_group("south", vec!["+447800123456".into()], 2_000)
        .await
        .expect("replace");
    let all = store.groups().await.expect("groups");
    let names: Vec<&str> = all.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["north", "south"]);
    // Pages in order, exclusive of `after`, covering every member once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .group_members("north", after.as_deref(), 1000)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        seen.extend(page);
    }
    assert_eq!(seen, members);
    // A replace leaves only the new list; an empty one empties the group.
    let g = store
        .replace_group("north", vec!["+447400100001".into()], 3_000)
        .await
        .expect("replace");
    assert_eq!(g.count, 1);
    assert_eq!(
        store.group_members("north", None, 10).await.expect("page"),
        ["+447400100001"]
    );
    store
        .replace_group("north", Vec::new(), 4_000)
        .await
        .expect("replace");
    assert_eq!(
        store.group("north").await.expect("group").map(|g| g.count),
        Some(0)
    );
    assert!(
        store
            .group_members("north", None, 10)
            .await
            .expect("page")
            .is_empty()
    );
    assert!(store.delete_group("north").await.expect("delete"));
    assert!(!store.delete_group("north").await.expect("delete"));
    assert!(store.group("north").await.expect("group").is_none());
    assert_eq!(store.groups().await.expect("groups").len(), 1);
    store.close().await;
}

async fn a_sealed_text_is_dropped_once_submitted(f: &dyn StoreFactory) {
    let store = f.open().await;
    let mut m = message("a", Class::Otp, 1);
    m.body = "Your code is ******".into();
    m.sealed_body = Some("00ff".into());
    let m = admit(&*store, vec![m]).await.remove(0);
    let queued = store.message(m.id).await.expect("read").expect("found");
    assert_eq!(
        queued.sealed_body.as_deref(),
        Some("00ff"),
        "kept while queued"
    );
    let claimed = store.claim("a", 10).await.expect("claim");
    assert_eq!(
        claimed[0].sealed_body.as_deref(),
        Some("00ff"),
        "the claim carries it"
    );
    store
        .record(vec![submitted(&m, "s1")])
        .await
        .expect("record");
    let sent = store.message(m.id).await.expect("read").expect("found");
    assert_eq!(sent.status, Status::Submitted);
    assert_eq!(sent.sealed_body, None, "dropped at submit");
    assert_eq!(sent.body, "Your code is ******");
    store.close().await;
}

fn operator_record(name: &str, role: herald::store::OperatorRole) -> herald::store::OperatorRecord {
    herald::store::OperatorRecord {
        name: name.into(),
        role,
        hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        created_at: now_micros(),
        disabled_at: None,
        failed_logins: 0,
        locked_until: None,
    }
}

fn session_record(hash: &str, operator: &str, at: Micros) -> herald::store::SessionRecord {
    herald::store::SessionRecord {
        token_hash: hash.into(),
        operator: operator.into(),
        csrf: format!("csrf-{hash}"),
        created_at: at,
        last_seen: at,
        expires_at: at + 3_600_000_000,
    }
}

async fn operators_are_unique_by_name_and_updatable(f: &dyn StoreFactory) {
    use herald::store::OperatorRole;
    let store = f.open().await;
    assert!(store.operators().await.expect("list").is_empty());
    let alice = operator_record("alice", OperatorRole::Operator);
    assert!(store.create_operator(alice.clone()).await.expect("create"));
    assert!(
        !store
            .create_operator(operator_record("alice", OperatorRole::Admin))
            .await
            .expect("create twice"),
        "a taken name is refused"
    );
    assert_eq!(
        store.operator("alice").await.expect("read"),
        Some(alice.clone())
    );
    assert_eq!(store.operator("bob").await.expect("read"), None);
    let mut locked = alice.clone();
    locked.failed_logins = 3;
    locked.locked_until = Some(now_micros() + 1_000_000);
    assert!(store.update_operator(locked.clone()).await.expect("update"));
    assert_eq!(store.operator("alice").await.expect("read"), Some(locked));
    assert!(
        !store
            .update_operator(operator_record("carol", OperatorRole::Approver))
            .await
            .expect("update missing"),
        "an update never creates an account"
    );
    assert_eq!(store.operator("carol").await.expect("read"), None);
    assert!(
        store
            .create_operator(operator_record("bob", OperatorRole::Approver))
            .await
            .expect("create")
    );
    let names: Vec<String> = store
        .operators()
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let at = now_micros();
    assert!(store.disable_operator("bob", at).await.expect("disable"));
    assert_eq!(
        store
            .operator("bob")
            .await
            .expect("read")
            .and_then(|o| o.disabled_at),
        Some(at)
    );
    assert!(!store.disable_operator("nobody", at).await.expect("disable"));
    store.close().await;
}

async fn sessions_are_found_by_hash_touched_and_ended(f: &dyn StoreFactory) {
    use herald::store::OperatorRole;
    let store = f.open().await;
    for name in ["alice", "bob"] {
        assert!(
            store
                .create_operator(operator_record(name, OperatorRole::Operator))
                .await
                .expect("create")
        );
    }
    let at = now_micros();
    for (hash, who) in [("h1", "alice"), ("h2", "alice"), ("h3", "bob")] {
        store
            .create_session(session_record(hash, who, at))
            .await
            .expect("create session");
    }
    assert_eq!(
        store.session("h1").await.expect("read"),
        Some(session_record("h1", "alice", at))
    );
    assert_eq!(store.session("nope").await.expect("read"), None);
    store
        .touch_session("h1", at + 5_000_000)
        .await
        .expect("touch");
    let touched = store.session("h1").await.expect("read").expect("there");
    assert_eq!(touched.last_seen, at + 5_000_000);
    assert_eq!(
        touched.expires_at,
        at + 3_600_000_000,
        "touching never extends the absolute end"
    );
    // Touching a session that is gone does not bring it back.
    store.touch_session("gone", at).await.expect("touch");
    assert_eq!(store.session("gone").await.expect("read"), None);

    assert!(store.delete_session("h2").await.expect("logout"));
    assert!(!store.delete_session("h2").await.expect("logout twice"));
    assert_eq!(store.session("h2").await.expect("read"), None);

    // Disabling an account ends every session of it, and only those.
    store
        .create_session(session_record("h4", "alice", at))
        .await
        .expect("create session");
    assert!(store.disable_operator("alice", at).await.expect("disable"));
    assert_eq!(store.session("h1").await.expect("read"), None);
    assert_eq!(store.session("h4").await.expect("read"), None);
    assert!(store.session("h3").await.expect("read").is_some());
    store.close().await;
}

fn broadcast(groups: &[&str], recipients: &[&str], status: BroadcastStatus) -> BroadcastRecord {
    BroadcastRecord {
        id: MessageId::generate(),
        title: "t".into(),
        text: "Alert".into(),
        encoding: herald::model::Encoding::Gsm7,
        segments: 1,
        class: Class::Emergency,
        mode: Mode::Live,
        status,
        owner: "owner".into(),
        created_by: "key:creator".into(),
        created_at: now_micros(),
        decided_by: None,
        decided_at: None,
        comment: None,
        canceled_by: None,
        done_at: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        route: vec!["a".into()],
        from: None,
        validity_micros: 3_600_000_000,
        cap: Some(CapOrigin {
            sender: "agency".into(),
            identifier: format!("alert-{}", MessageId::generate()),
            sent: "2026-12-05T10:00:00-00:00".into(),
        }),
        total: 0,
        cursor: None,
        fanned: 0,
        refused: 0,
        lists: Vec::new(),
    }
}

async fn created(store: &dyn Store, r: BroadcastRecord) -> BroadcastRecord {
    store
        .create_broadcast(r)
        .await
        .expect("create")
        .expect("groups exist")
        .record
}

/// Messages of `b` to `numbers`, queued for connector "a".
fn broadcast_messages(b: &BroadcastRecord, numbers: &[String]) -> Vec<NewMessage> {
    numbers
        .iter()
        .map(|to| {
            let mut m = message("a", Class::Emergency, 1);
            m.to = to.clone();
            m.broadcast = Some(b.id);
            NewMessage::plain(m)
        })
        .collect()
}

async fn broadcast_audiences_merge_once_and_stay_fixed(f: &dyn StoreFactory) {
    let store = f.open().await;
    let n = |i: u32| herald::text::test_number(i).to_string();
    store
        .replace_group("g1", vec![n(1), n(2), n(3)], 1)
        .await
        .expect("g1");
    store
        .replace_group("g2", vec![n(2), n(3), n(4)], 1)
        .await
        .expect("g2");
    let b = created(
        &*store,
        broadcast(&["g1", "g2"], &[&n(1), &n(5)], BroadcastStatus::Sending),
    )
    .await;
    assert_eq!(b.total, 5, "each number once");
    // Groups change; the broadcast's audience does not.
    store
        .replace_group("g1", vec![n(9)], 2)
        .await
        .expect("replace");
    assert!(store.delete_group("g2").await.expect("delete"));
    let first = store.audience(b.id, None, 3).await.expect("page");
    assert_eq!(first, vec![n(1), n(2), n(3)]);
    let rest = store.audience(b.id, Some(&n(3)), 10).await.expect("page");
    assert_eq!(rest, vec![n(4), n(5)]);
    // A single group counts without a merge.
    let one = created(
        &*store,
        broadcast(&["g1"], &[], BroadcastStatus::PendingApproval),
    )
    .await;
    assert_eq!(one.total, 1);
    assert_eq!(
        store
            .create_broadcast(broadcast(&["missing"], &[], BroadcastStatus::Sending))
            .await
            .expect("create"),
        Err(CreateRefused::UnknownGroup("missing".into()))
    );
    let cap = b.cap.clone().expect("cap");
    assert_eq!(
        store
            .broadcast_by_cap(&cap.sender, &cap.identifier)
            .await
            .expect("cap"),
        Some(b.id)
    );
    let listed = store.broadcasts(None, 10).await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.record.id).collect::<Vec<_>>(),
        vec![one.id, b.id],
        "newest first"
    );
    let sending = store.sending_broadcasts().await.expect("sending");
    assert_eq!(sending.iter().map(|r| r.id).collect::<Vec<_>>(), vec![b.id]);
    store.close().await;
}

async fn fan_out_moves_the_cursor_once_and_counts_every_status(f: &dyn StoreFactory) {
    let store = f.open().await;
    let n = |i: u32| herald::text::test_number(i).to_string();
    let numbers: Vec<String> = (1..=4).map(n).collect();
    let b = created(
        &*store,
        broadcast(
            &[],
            &numbers.iter().map(String::as_str).collect::<Vec<_>>(),
            BroadcastStatus::Sending,
        ),
    )
    .await;
    let chunk = store.audience(b.id, None, 3).await.expect("audience");
    let applied = store
        .fan_out(
            b.id,
            None,
            chunk[2].clone(),
            broadcast_messages(&b, &chunk),
            0,
        )
        .await
        .expect("fan out");
    assert_eq!(
        applied,
        FanOut::Applied {
            created: 3,
            refused: 0
        }
    );
    // A second writer that read the same cursor writes nothing.
    let stale = store
        .fan_out(
            b.id,
            None,
            chunk[2].clone(),
            broadcast_messages(&b, &chunk),
            0,
        )
        .await
        .expect("fan out");
    assert_eq!(stale, FanOut::Stale);
    assert_eq!(
        store
            .ready_depth("a", Class::Emergency)
            .await
            .expect("depth"),
        3
    );
    let state = store.broadcast(b.id).await.expect("read").expect("found");
    assert_eq!((state.record.fanned, state.counts.queued), (3, 3));
    assert_eq!(state.record.cursor.as_deref(), Some(chunk[2].as_str()));
    // Not complete while a recipient is left.
    assert_eq!(
        store
            .decide_broadcast(b.id, Decision::Complete { at: 1 })
            .await
            .expect("decide"),
        Decided::NotYet
    );
    let last = store
        .audience(b.id, Some(&chunk[2]), 10)
        .await
        .expect("audience");
    assert_eq!(last, vec![n(4)]);
    store
        .fan_out(b.id, Some(chunk[2].clone()), n(4), Vec::new(), 1)
        .await
        .expect("refused one");
    let claimed = store.claim("a", 10).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    store
        .record(vec![
            submitted(&claimed[0], "b1"),
            submitted(&claimed[1], "b2"),
            Outcome::Failed {
                id: claimed[2].id,
                error: "no".into(),
            },
        ])
        .await
        .expect("record");
    store
        .apply_receipts(vec![receipt("b1", ReceiptState::Delivered)])
        .await
        .expect("receipts");
    let state = store.broadcast(b.id).await.expect("read").expect("found");
    assert_eq!(
        state.counts,
        StatusCounts {
            queued: 0,
            submitted: 1,
            delivered: 1,
            failed: 1,
            expired: 0,
            canceled: 0
        }
    );
    assert_eq!(state.record.refused, 1);
    let Decided::Done(done) = store
        .decide_broadcast(b.id, Decision::Complete { at: 5 })
        .await
        .expect("decide")
    else {
        panic!("completes once nothing is queued")
    };
    assert_eq!(done.record.status, BroadcastStatus::Completed);
    assert!(
        store
            .sending_broadcasts()
            .await
            .expect("sending")
            .is_empty()
    );
    store.close().await;
}

async fn broadcast_decisions_follow_the_rules_and_cancel_stops_the_queued(f: &dyn StoreFactory) {
    let store = f.open().await;
    let n = |i: u32| herald::text::test_number(i).to_string();
    let numbers: Vec<String> = (1..=10).map(n).collect();
    let b = created(
        &*store,
        broadcast(
            &[],
            &numbers.iter().map(String::as_str).collect::<Vec<_>>(),
            BroadcastStatus::PendingApproval,
        ),
    )
    .await;
    // Nothing fans out before approval.
    assert_eq!(
        store
            .fan_out(b.id, None, n(1), broadcast_messages(&b, &[n(1)]), 0)
            .await
            .expect("fan out"),
        FanOut::Stale
    );
    let approve = |by: &str| Decision::Approve {
        by: by.into(),
        at: 2,
        comment: Some("ok".into()),
    };
    assert_eq!(
        store
            .decide_broadcast(b.id, approve("key:creator"))
            .await
            .expect("decide"),
        Decided::SelfApproval
    );
    let Decided::Done(s) = store
        .decide_broadcast(b.id, approve("key:other"))
        .await
        .expect("decide")
    else {
        panic!("approved")
    };
    assert_eq!(s.record.status, BroadcastStatus::Sending);
    assert_eq!(s.record.decided_by.as_deref(), Some("key:other"));
    assert_eq!(
        store
            .decide_broadcast(b.id, approve("key:third"))
            .await
            .expect("decide"),
        Decided::WrongState(BroadcastStatus::Sending)
    );
    let five = store.audience(b.id, None, 5).await.expect("audience");
    store
        .fan_out(
            b.id,
            None,
            five[4].clone(),
            broadcast_messages(&b, &five),
            0,
        )
        .await
        .expect("fan out");
    // Two are claimed (on their way); three wait in the queue.
    let claimed = store.claim("a", 2).await.expect("claim");
    let Decided::Done(canceled) = store
        .decide_broadcast(
            b.id,
            Decision::Cancel {
                by: "key:other".into(),
                at: 3,
            },
        )
        .await
        .expect("cancel")
    else {
        panic!("canceled")
    };
    assert_eq!(canceled.record.status, BroadcastStatus::Canceled);
    assert_eq!(canceled.counts.canceled, 3, "{:?}", canceled.counts);
    assert_eq!(canceled.counts.queued, 2, "claimed ones are in flight");
    assert_eq!(canceled.record.unfanned(), 5);
    assert!(
        store.claim("a", 10).await.expect("claim").is_empty(),
        "nothing left to send"
    );
    // One reached the carrier; the other was throttled: it is not tried
    // again, it is canceled too.
    store
        .record(vec![
            submitted(&claimed[0], "c1"),
            Outcome::Retry {
                id: claimed[1].id,
                not_before: 0,
                error: "throttled".into(),
                counts_attempt: false,
                partial: None,
            },
        ])
        .await
        .expect("record");
    let after = store.broadcast(b.id).await.expect("read").expect("found");
    assert_eq!(
        (
            after.counts.submitted,
            after.counts.queued,
            after.counts.canceled
        ),
        (1, 0, 4)
    );
    store
        .maintain(
            now_micros(),
            Retention::with_idempotency_ttl(Duration::from_secs(60)),
        )
        .await
        .expect("maintain");
    assert!(
        store.claim("a", 10).await.expect("claim").is_empty(),
        "never retried"
    );
    assert_eq!(
        store
            .decide_broadcast(
                b.id,
                Decision::Cancel {
                    by: "x".into(),
                    at: 4
                }
            )
            .await
            .expect("decide"),
        Decided::WrongState(BroadcastStatus::Canceled)
    );
    assert_eq!(
        store
            .decide_broadcast(
                MessageId::generate(),
                Decision::Cancel {
                    by: "x".into(),
                    at: 4
                }
            )
            .await
            .expect("decide"),
        Decided::NotFound
    );
    store.close().await;
}
