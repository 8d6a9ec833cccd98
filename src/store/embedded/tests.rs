//! The embedded store's own behaviour (the shared contract is in the
//! store conformance tests): how many fsyncs a message costs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::EmbeddedStore;
use super::flush::LAZY_MAX;
use crate::model::{Receipt, ReceiptState, now_micros};
use crate::store::{MessageStore, NewMessage, Outcome};
use crate::test_support::message;

/// A store whose lazy answers wait up to `window` for a durable commit.
fn open(window: Duration) -> (tempfile::TempDir, Arc<EmbeddedStore>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open_with_lazy_window(&dir.path().join("store.db"), 8 << 20, window)
        .expect("open store");
    (dir, Arc::new(store))
}

async fn admit_and_claim(store: &EmbeddedStore, to: &str) -> crate::model::Message {
    store
        .admit(vec![NewMessage::plain(message(to))])
        .await
        .expect("admit");
    store.claim("sim", 1).await.expect("claim").remove(0)
}

fn submitted(m: &crate::model::Message, smsc_id: &str) -> Outcome {
    Outcome::Submitted {
        id: m.id,
        connector: "sim".into(),
        smsc_ids: vec![smsc_id.into()],
        at: now_micros(),
    }
}

#[tokio::test]
async fn outcomes_and_receipts_are_answered_with_the_next_admissions_fsync() {
    // A window far longer than the test: only the admission can flush.
    let (_dir, store) = open(Duration::from_secs(30));
    let first = admit_and_claim(&store, "+447700900001").await;
    let before = store.durable_commits();
    let recorder = {
        let store = store.clone();
        let outcome = submitted(&first, "c1");
        tokio::spawn(async move { store.record(vec![outcome]).await })
    };
    let receipts = {
        let store = store.clone();
        let receipt = Receipt {
            connector: "sim".into(),
            smsc_id: "c1".into(),
            state: ReceiptState::Delivered,
            error_code: None,
            at: now_micros(),
        };
        tokio::spawn(async move { store.apply_receipts(vec![receipt]).await })
    };
    // Both are written (visible to reads) but not answered: not durable yet.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = store.message(first.id).await.expect("read").expect("kept");
        if m.status == crate::model::Status::Delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "outcome and receipt never written"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !recorder.is_finished(),
        "an outcome was answered before any fsync"
    );
    assert!(
        !receipts.is_finished(),
        "a receipt was answered before any fsync"
    );
    assert_eq!(store.durable_commits(), before);
    store
        .admit(vec![NewMessage::plain(message("+447700900002"))])
        .await
        .expect("admit");
    recorder.await.expect("join").expect("record");
    receipts.await.expect("join").expect("receipts");
    assert_eq!(
        store.durable_commits() - before,
        1,
        "one fsync for an outcome, a receipt and an admission"
    );
}

#[tokio::test]
async fn an_outcome_alone_is_made_durable_after_the_window() {
    let (dir, store) = open(LAZY_MAX);
    let m = admit_and_claim(&store, "+447700900003").await;
    let before = store.durable_commits();
    let started = Instant::now();
    store
        .record(vec![submitted(&m, "c2")])
        .await
        .expect("record");
    let waited = started.elapsed();
    assert_eq!(
        store.durable_commits() - before,
        1,
        "answered after one fsync"
    );
    assert!(
        waited < Duration::from_secs(5),
        "an outcome with no traffic behind it waited {waited:?}"
    );
    // Durable: there after a restart.
    crate::store::Store::close(&*store).await;
    drop(store);
    let reopened = EmbeddedStore::open(&dir.path().join("store.db"), 8 << 20).expect("reopen");
    let found = reopened.message(m.id).await.expect("read").expect("kept");
    assert_eq!(found.status, crate::model::Status::Submitted);
}

#[tokio::test]
async fn without_admissions_flowing_an_outcome_is_not_held() {
    let window = Duration::from_secs(2);
    let (_dir, store) = open(window);
    let m = admit_and_claim(&store, "+447700900004").await;
    // No durable commit for longer than the window: nothing to share with.
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    let started = Instant::now();
    store
        .record(vec![submitted(&m, "c3")])
        .await
        .expect("record");
    let waited = started.elapsed();
    assert!(
        waited < window / 2,
        "an outcome waited {waited:?} for an fsync it could not share"
    );
}
