//! One suite of store behaviour, run against every backend: memory, a real SQLite file, and the
//! PostgreSQL named by `HOOKSMITH_TEST_POSTGRES_URL` (skipped, and said so, when it is unset).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hooksmith::store::{
    DeliveryQuery, DeliveryStatus, Ingest, JobResult, JobStatus, MemoryStore, NewDelivery, NewJob,
    PostgresStore, SqliteStore, Store,
};
use hooksmith::{Clock, SystemClock};

fn now() -> i64 {
    SystemClock.now_ms()
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn delivery(key: &str, handlers: &[&str]) -> NewDelivery {
    NewDelivery {
        key: key.to_owned(),
        endpoint: "/hooks/test".into(),
        connection: None,
        event: "push".into(),
        delivery_id: key.to_owned(),
        headers: [
            ("content-type", "application/json"),
            ("x-hub-signature-256", "[redacted]"),
        ]
        .into_iter()
        .collect(),
        body: Bytes::from_static(b"{\"a\":1,\"bin\":\"\xff\"}"),
        received_at_ms: now(),
        jobs: handlers
            .iter()
            .map(|h| NewJob {
                handler: (*h).to_owned(),
                max_attempts: 3,
                claimed_for_ms: None,
                order_key: None,
            })
            .collect(),
    }
}

async fn status_of(store: &dyn Store, id: i64) -> (DeliveryStatus, Vec<(String, JobStatus, u32)>) {
    let (summary, _) = store.get(id).await.unwrap().unwrap();
    (
        summary.status,
        summary
            .handlers
            .into_iter()
            .map(|h| (h.name, h.status, h.attempts))
            .collect(),
    )
}

/// Claims until `count` jobs are handed out or two seconds pass.
/// The ids the admin list gives for a provider delivery id, newest first.
async fn listed_for(store: &dyn Store, delivery_id: &str) -> Vec<i64> {
    store
        .list(&DeliveryQuery {
            delivery_id: Some(delivery_id.to_owned()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect()
}

async fn claim_n(
    store: &dyn Store,
    count: usize,
    lease_ms: i64,
) -> Vec<hooksmith::store::ClaimedJob> {
    let mut claimed = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while claimed.len() < count && std::time::Instant::now() < deadline {
        claimed.extend(
            store
                .claim(count - claimed.len(), lease_ms, now())
                .await
                .unwrap(),
        );
        if claimed.len() < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    claimed
}

async fn suite(store: Arc<dyn Store>) {
    let s = &*store;

    // Stored once; the same key again is a duplicate that writes nothing.
    let key = unique("key");
    let Ingest::Stored {
        id,
        jobs,
        record: returned,
    } = s.ingest(delivery(&key, &["a", "b"])).await.unwrap()
    else {
        panic!("first ingest must store")
    };
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        s.ingest(delivery(&key, &["a", "b"])).await.unwrap(),
        Ingest::Duplicate { id }
    );
    let (summary, record) = s.get(id).await.unwrap().unwrap();
    assert_eq!(
        returned, record,
        "ingest returns the record as stored: jobs created claimed run on it"
    );
    assert_eq!(
        record.body,
        Bytes::from_static(b"{\"a\":1,\"bin\":\"\xff\"}"),
        "the body is byte-exact"
    );
    assert_eq!(
        record.headers.iter().collect::<Vec<_>>(),
        [
            ("content-type", "application/json"),
            ("x-hub-signature-256", "[redacted]")
        ],
        "headers come back in order, as stored"
    );
    assert_eq!(summary.status, DeliveryStatus::Received);
    assert_eq!(
        summary
            .handlers
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );

    // Nothing matched: unhandled, and no job is ever claimed for it.
    let Ingest::Stored { id: unhandled, .. } =
        s.ingest(delivery(&unique("none"), &[])).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(status_of(s, unhandled).await.0, DeliveryStatus::Unhandled);

    // Claims hand each job out once, under a lease, counting an attempt.
    let claimed = claim_n(s, 2, 60_000).await;
    assert_eq!(claimed.len(), 2, "both jobs are due");
    assert!(
        claimed
            .iter()
            .all(|j| j.attempt == 1 && j.delivery.id == id)
    );
    assert!(
        s.claim(10, 60_000, now()).await.unwrap().is_empty(),
        "leased jobs are not handed out twice"
    );
    assert_eq!(status_of(s, id).await.0, DeliveryStatus::Dispatched);

    // One succeeds, one fails and is retried later.
    let (a, b) = if claimed[0].handler == "a" {
        (&claimed[0], &claimed[1])
    } else {
        (&claimed[1], &claimed[0])
    };
    s.finish(a.id, JobResult::Succeeded, now()).await.unwrap();
    let retry_at = now() + 150;
    s.finish(
        b.id,
        JobResult::Failed {
            error: "boom".into(),
            retry_at_ms: Some(retry_at),
        },
        now(),
    )
    .await
    .unwrap();
    let (status, jobs) = status_of(s, id).await;
    assert_eq!(status, DeliveryStatus::Dispatched);
    assert_eq!(
        jobs,
        [
            ("a".into(), JobStatus::Succeeded, 1),
            ("b".into(), JobStatus::Retrying, 1)
        ]
    );
    let (summary, _) = s.get(id).await.unwrap().unwrap();
    assert_eq!(summary.handlers[1].last_error.as_deref(), Some("boom"));
    assert!(summary.handlers[1].next_attempt_at_ms.is_some());
    assert!(
        s.claim(10, 60_000, now()).await.unwrap().is_empty(),
        "not before its time"
    );
    let next = s.next_due().await.unwrap().expect("a retry is due later");
    assert!(next > now() - 1_000, "next due is about now + 150 ms");

    // Due again: claimed as attempt 2; the succeeded sibling is never handed out again.
    let again = claim_n(s, 1, 60_000).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].handler.as_str(), again[0].attempt), ("b", 2));
    s.finish(
        again[0].id,
        JobResult::Failed {
            error: "still".into(),
            retry_at_ms: None,
        },
        now(),
    )
    .await
    .unwrap();
    let (status, jobs) = status_of(s, id).await;
    assert_eq!(status, DeliveryStatus::Dead);
    assert_eq!(jobs[1], ("b".into(), JobStatus::Dead, 2));

    // An expired lease (a crashed worker) makes the job claimable again.
    let Ingest::Stored { id: crashed, .. } =
        s.ingest(delivery(&unique("crash"), &["c"])).await.unwrap()
    else {
        panic!()
    };
    let first = claim_n(s, 1, 100).await;
    assert_eq!(first.len(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = claim_n(s, 1, 60_000).await;
    assert_eq!(second.len(), 1, "the lease ran out");
    assert_eq!((second[0].id, second[0].attempt), (first[0].id, 2));
    s.finish(second[0].id, JobResult::Succeeded, now())
        .await
        .unwrap();
    assert_eq!(status_of(s, crashed).await.0, DeliveryStatus::Acknowledged);

    // A released job (its instance shut down) is due again at once, its attempt counted.
    let Ingest::Stored { id: released, .. } = s
        .ingest(delivery(&unique("release"), &["r"]))
        .await
        .unwrap()
    else {
        panic!()
    };
    let held = claim_n(s, 1, 60_000).await;
    assert_eq!(held.len(), 1);
    s.release(&[held[0].id], now()).await.unwrap();
    let again = claim_n(s, 1, 60_000).await;
    assert_eq!(
        (again.len(), again[0].id, again[0].attempt),
        (1, held[0].id, 2),
        "claimable without waiting for the lease"
    );
    s.finish(again[0].id, JobResult::Succeeded, now())
        .await
        .unwrap();
    assert_eq!(status_of(s, released).await.0, DeliveryStatus::Acknowledged);

    // A job created already claimed (ack = "handled") is not handed to a worker during its lease.
    let mut inline = delivery(&unique("inline"), &["h"]);
    inline.jobs[0].claimed_for_ms = Some(60_000);
    let Ingest::Stored {
        id: inline_id,
        jobs,
        ..
    } = s.ingest(inline).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        status_of(s, inline_id).await,
        (
            DeliveryStatus::Dispatched,
            vec![("h".into(), JobStatus::Running, 1)]
        )
    );
    assert!(s.claim(10, 60_000, now()).await.unwrap().is_empty());
    s.finish(jobs[0], JobResult::Succeeded, now())
        .await
        .unwrap();
    assert_eq!(
        status_of(s, inline_id).await.0,
        DeliveryStatus::Acknowledged
    );

    // Listing: newest first, filters, paging.
    let all = s
        .list(&DeliveryQuery {
            limit: 100,
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<i64> = all.iter().map(|d| d.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    assert!(ids.contains(&id) && ids.contains(&unhandled));
    let dead = s
        .list(&DeliveryQuery {
            status: Some(DeliveryStatus::Dead),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), [id]);
    let page = s
        .list(&DeliveryQuery {
            limit: 1,
            before: Some(ids[0]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, ids[1]);
    assert_eq!(listed_for(s, &key).await, [id]);
    let none = s
        .list(&DeliveryQuery {
            endpoint: Some("/elsewhere".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(s.get(i64::MAX).await.unwrap().is_none());
    let window = |since, until| DeliveryQuery {
        received_since_ms: since,
        received_until_ms: until,
        limit: 100,
        ..Default::default()
    };
    assert!(
        s.list(&window(Some(now() + 3_600_000), None))
            .await
            .unwrap()
            .is_empty(),
        "nothing from the future"
    );
    assert_eq!(
        s.list(&window(Some(0), Some(now() + 1)))
            .await
            .unwrap()
            .len(),
        all.len()
    );
    assert!(s.list(&window(None, Some(0))).await.unwrap().is_empty());

    // One provider id on two endpoints is two deliveries (two keys); a longer id is another.
    let shared = unique("shared");
    let mut elsewhere = delivery(&format!("/hooks/other:push:{shared}"), &[]);
    elsewhere.endpoint = "/hooks/other".into();
    elsewhere.delivery_id.clone_from(&shared);
    let mut first = delivery(&shared, &[]);
    first.delivery_id.clone_from(&shared);
    let mut longer = delivery(&format!("{shared}0"), &[]);
    longer.delivery_id = format!("{shared}0");
    let mut shared_ids = Vec::new();
    for new in [first, elsewhere, longer] {
        let Ingest::Stored { id, .. } = s.ingest(new).await.unwrap() else {
            panic!("a new key is stored")
        };
        shared_ids.push(id);
    }
    let by_shared = |endpoint: Option<&str>| DeliveryQuery {
        delivery_id: Some(shared.clone()),
        endpoint: endpoint.map(str::to_owned),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        s.list(&by_shared(None))
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        [shared_ids[1], shared_ids[0]],
        "both endpoints' deliveries of the id, newest first, and not the longer id"
    );
    assert_eq!(
        s.list(&by_shared(Some("/hooks/other")))
            .await
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        [shared_ids[1]]
    );

    // Fifty identical deliveries at once: one stored, forty-nine duplicates.
    let same = unique("same");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (store, same) = (store.clone(), same.clone());
            tokio::spawn(async move { store.ingest(delivery(&same, &["x"])).await.unwrap() })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), Ingest::Stored { .. }) {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    assert!(
        s.queue_depth().await.unwrap() >= 1,
        "the new job waits in the queue"
    );
    let listed = s
        .list(&DeliveryQuery {
            delivery_id: Some(same),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handlers.len(), 1);
}

/// Retention: finished history goes, work never does, and keys outlive their deliveries.
async fn retention(store: Arc<dyn Store>) {
    let s = &*store;
    let day = 86_400_000;
    let old = |key: &str, handlers: &[&str]| {
        let mut d = delivery(key, handlers);
        d.received_at_ms = now() - 10 * day;
        d
    };
    let keys: Vec<String> = ["a", "b", "c", "d"].iter().map(|k| unique(k)).collect();
    let mut ids = Vec::new();
    for (key, handlers) in keys.iter().zip([&["z"][..], &["z"], &[], &["z"]]) {
        let Ingest::Stored { id, .. } = s.ingest(old(key, handlers)).await.unwrap() else {
            panic!()
        };
        ids.push(id);
    }
    let Ingest::Stored { id: fresh, .. } = s.ingest(delivery(&unique("e"), &[])).await.unwrap()
    else {
        panic!()
    };
    let claimed = claim_n(s, 3, 60_000).await;
    assert_eq!(claimed.len(), 3);
    for job in &claimed {
        let result = match job.delivery.id {
            id if id == ids[0] => JobResult::Succeeded,
            id if id == ids[1] => JobResult::Failed {
                error: "x".into(),
                retry_at_ms: None,
            },
            _ => JobResult::Failed {
                error: "x".into(),
                retry_at_ms: Some(now() + day),
            },
        };
        s.finish(job.id, result, now()).await.unwrap();
    }
    let policy = |keep_at_most| hooksmith::store::Retention {
        history_before_ms: now() - 3 * day,
        keep_at_most,
        keys_before_ms: now() - 7 * day,
    };
    assert_eq!(
        s.purge(policy(None)).await.unwrap(),
        (2, 2),
        "the old acknowledged and unhandled ones"
    );
    assert!(s.get(ids[0]).await.unwrap().is_none());
    assert!(s.get(ids[2]).await.unwrap().is_none());
    for kept in [ids[1], ids[3], fresh] {
        assert!(
            s.get(kept).await.unwrap().is_some(),
            "dead, retrying and recent deliveries stay"
        );
    }
    assert!(
        matches!(
            s.ingest(old(&keys[0], &[])).await.unwrap(),
            Ingest::Stored { .. }
        ),
        "its key went with it"
    );
    assert_eq!(
        s.ingest(old(&keys[1], &["z"])).await.unwrap(),
        Ingest::Duplicate { id: ids[1] }
    );
    // A count cap keeps the newest finished deliveries.
    for _ in 0..3 {
        s.ingest(delivery(&unique("f"), &[])).await.unwrap();
    }
    let finished_before = s
        .list(&DeliveryQuery {
            status: Some(DeliveryStatus::Unhandled),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(finished_before.len(), 5);
    let (removed, _) = s.purge(policy(Some(1))).await.unwrap();
    assert_eq!(removed, 4);
    let finished_after = s
        .list(&DeliveryQuery {
            status: Some(DeliveryStatus::Unhandled),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        finished_after.iter().map(|d| d.id).collect::<Vec<_>>(),
        [finished_before[0].id]
    );
    assert!(
        s.get(ids[1]).await.unwrap().is_some(),
        "dead work is never purged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store() {
    suite(Arc::new(MemoryStore::new())).await;
    retention(Arc::new(MemoryStore::new())).await;
}

/// The memory store's history is bounded: the oldest finished deliveries go as new ones finish,
/// unfinished and dead ones stay, and de-duplication still knows every key.
#[tokio::test]
async fn the_memory_store_keeps_a_bounded_history() {
    let store = MemoryStore::keeping(3);
    let dead = match store.ingest(delivery("dead", &["h"])).await.unwrap() {
        Ingest::Stored { id, jobs, .. } => {
            let claimed = claim_n(&store, 1, 60_000).await;
            assert_eq!(claimed[0].id, jobs[0]);
            let failed = JobResult::Failed {
                error: "no".into(),
                retry_at_ms: None,
            };
            store.finish(jobs[0], failed, now()).await.unwrap();
            id
        }
        Ingest::Duplicate { .. } => unreachable!(),
    };
    let pending = match store.ingest(delivery("pending", &["h"])).await.unwrap() {
        Ingest::Stored { id, .. } => id,
        Ingest::Duplicate { .. } => unreachable!(),
    };
    let mut finished = Vec::new();
    for i in 0..10 {
        // Unhandled deliveries are finished at once.
        match store.ingest(delivery(&format!("k{i}"), &[])).await.unwrap() {
            Ingest::Stored { id, .. } => finished.push(id),
            Ingest::Duplicate { .. } => unreachable!(),
        }
    }
    for id in &finished[..7] {
        assert!(store.get(*id).await.unwrap().is_none(), "{id} was evicted");
    }
    for id in finished[7..].iter().chain([&dead, &pending]) {
        assert!(store.get(*id).await.unwrap().is_some(), "{id} is kept");
    }
    assert!(matches!(
        store.ingest(delivery("k0", &[])).await.unwrap(),
        Ingest::Duplicate { .. }
    ));
}

/// The memory store's history is bounded in bytes too: large bodies cannot grow it past the
/// bound, work still to do is never dropped, and the newest finished delivery stays.
#[tokio::test]
async fn the_memory_store_bounds_its_history_in_bytes() {
    let store = MemoryStore::keeping(1_000).keeping_bytes(6_000);
    let sized = |key: &str, bytes: usize, handlers: &[&str]| NewDelivery {
        body: Bytes::from(vec![b'x'; bytes]),
        ..delivery(key, handlers)
    };
    let stored = |ingest: Ingest| match ingest {
        Ingest::Stored { id, .. } => id,
        Ingest::Duplicate { .. } => panic!("a new key is stored"),
    };
    let pending = stored(store.ingest(sized("work", 4_000, &["h"])).await.unwrap());
    let mut finished = Vec::new();
    for i in 0..10 {
        finished.push(stored(
            store
                .ingest(sized(&format!("b{i}"), 1_000, &[]))
                .await
                .unwrap(),
        ));
    }
    let kept = |ids: Vec<i64>| {
        let store = &store;
        async move {
            let mut kept = Vec::new();
            for id in ids {
                if store.get(id).await.unwrap().is_some() {
                    kept.push(id);
                }
            }
            kept
        }
    };
    assert_eq!(
        kept(finished.clone()).await,
        finished[8..],
        "4,000 bytes of work and the two newest 1,000-byte deliveries fit in 6,000"
    );
    let large = stored(store.ingest(sized("large", 10_000, &[])).await.unwrap());
    assert_eq!(
        kept(finished.iter().copied().chain([large, pending]).collect()).await,
        [large, pending],
        "a body larger than the bound is kept while it is the newest; work is never dropped"
    );
    assert!(matches!(
        store.ingest(sized("b0", 1_000, &[])).await.unwrap(),
        Ingest::Duplicate { .. }
    ));
}

/// Claims `count` jobs and records that each succeeded.
async fn succeed_all(store: &dyn Store, count: usize) -> Vec<hooksmith::store::ClaimedJob> {
    let claimed = claim_n(store, count, 60_000).await;
    assert_eq!(claimed.len(), count);
    for job in &claimed {
        store
            .finish(job.id, JobResult::Succeeded, now())
            .await
            .unwrap();
    }
    claimed
}

/// Handled deliveries go through the memory store's history as unhandled ones do: once every
/// handler succeeded they show as acknowledged with their handlers' runs, a replay runs them
/// again, and the oldest go — jobs and all — as newer ones finish; a late result for a job whose
/// delivery has gone changes nothing and is not an error.
#[tokio::test]
async fn the_memory_store_keeps_handled_deliveries_in_its_history() {
    let store = MemoryStore::keeping(2);
    let mut ids = Vec::new();
    for i in 0..2 {
        let Ingest::Stored { id, .. } = store
            .ingest(delivery(&format!("h{i}"), &["a", "b"]))
            .await
            .unwrap()
        else {
            panic!("a new key is stored");
        };
        ids.push(id);
    }
    let first_runs = succeed_all(&store, 4).await;
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    for id in &ids {
        assert_eq!(
            status_of(&store, *id).await,
            (
                DeliveryStatus::Acknowledged,
                vec![
                    ("a".into(), JobStatus::Succeeded, 1),
                    ("b".into(), JobStatus::Succeeded, 1)
                ]
            )
        );
    }

    // A replay of an acknowledged delivery runs the same jobs again, and it is acknowledged
    // again once they succeed.
    let replayed = store
        .replay(ids[0], delivery("", &["a", "b"]).jobs, 60_000, now())
        .await
        .unwrap();
    let (summary, _) = store.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(summary.status, DeliveryStatus::Dispatched);
    assert_eq!(
        summary.handlers.iter().map(|h| h.id).collect::<Vec<_>>(),
        replayed
    );
    assert_eq!(store.queue_depth().await.unwrap(), 2);
    for job in &replayed {
        store
            .finish(*job, JobResult::Succeeded, now())
            .await
            .unwrap();
    }
    // Finished again, it is the newest finished delivery: still held, though it was the oldest.
    let (summary, _) = store.get(ids[0]).await.unwrap().expect("kept");
    assert_eq!(summary.status, DeliveryStatus::Acknowledged);

    // Two more finished deliveries: the two oldest are dropped with their jobs.
    for i in 2..4 {
        store
            .ingest(delivery(&format!("h{i}"), &["a"]))
            .await
            .unwrap();
    }
    succeed_all(&store, 2).await;
    for id in &ids {
        assert!(store.get(*id).await.unwrap().is_none(), "{id} was evicted");
    }
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    store
        .finish(
            first_runs[0].id,
            JobResult::Failed {
                error: "late".into(),
                retry_at_ms: Some(now()),
            },
            now(),
        )
        .await
        .expect("a late result for a job gone from the history is dropped");
    assert!(store.claim(10, 60_000, now() + 1).await.unwrap().is_empty());
    assert!(
        store
            .finish(1 << 40, JobResult::Succeeded, now())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_suite")));
    let store = SqliteStore::open(&format!("sqlite:{}", path.display())).unwrap();
    suite(Arc::new(store)).await;
    let retained = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_retention")));
    retention(Arc::new(
        SqliteStore::open(&format!("sqlite:{}", retained.display())).unwrap(),
    ))
    .await;
    remove_database(&path);
    remove_database(&retained);
}

/// Removes a SQLite database a test made, with its WAL and shared-memory files.
fn remove_database(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// The names of the schema objects `condition` picks, in order.
async fn schema_names(raw: &mut sqlx::SqliteConnection, condition: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT name FROM sqlite_master WHERE {condition} ORDER BY name"
    )))
    .fetch_all(raw)
    .await
    .unwrap()
}

async fn job_indexes(raw: &mut sqlx::SqliteConnection) -> Vec<String> {
    schema_names(raw, "type = 'index' AND tbl_name = 'hooksmith_jobs'").await
}

/// A database written before the jobs' indexes became partial opens, drops the full indexes, and
/// its waiting jobs are still claimed and recorded.
#[tokio::test]
async fn a_sqlite_database_with_the_earlier_job_indexes_is_upgraded_on_open() {
    use sqlx::Connection as _;
    let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_upgrade")));
    let url = format!("sqlite:{}", path.display());
    let store = SqliteStore::open(&url).unwrap();
    let Ingest::Stored { jobs, .. } = store.ingest(delivery("waiting", &["w"])).await.unwrap()
    else {
        panic!("stored")
    };
    drop(store);
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for statement in [
        "DROP INDEX hooksmith_jobs_pending",
        "DROP INDEX hooksmith_jobs_retrying",
        "DROP INDEX hooksmith_jobs_running",
        "DROP INDEX hooksmith_jobs_dead",
        "DROP INDEX hooksmith_jobs_ordered",
        "CREATE INDEX hooksmith_jobs_due ON hooksmith_jobs (status, next_at_ms)",
        "CREATE INDEX hooksmith_jobs_lease ON hooksmith_jobs (status, lease_until_ms)",
        "CREATE INDEX hooksmith_jobs_order ON hooksmith_jobs (order_key, id)",
    ] {
        sqlx::query(statement).execute(&mut raw).await.unwrap();
    }
    assert_eq!(
        job_indexes(&mut raw).await,
        [
            "hooksmith_jobs_delivery",
            "hooksmith_jobs_due",
            "hooksmith_jobs_lease",
            "hooksmith_jobs_order"
        ]
    );
    raw.close().await.unwrap();

    let store = SqliteStore::open(&url).unwrap();
    let claimed = claim_n(&store, 1, 60_000).await;
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), jobs);
    store
        .finish(jobs[0], JobResult::Succeeded, now())
        .await
        .unwrap();
    assert_eq!(store.queue_depth().await.unwrap(), 0);
    drop(store);
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    assert_eq!(
        job_indexes(&mut raw).await,
        [
            "hooksmith_jobs_dead",
            "hooksmith_jobs_delivery",
            "hooksmith_jobs_ordered",
            "hooksmith_jobs_pending",
            "hooksmith_jobs_retrying",
            "hooksmith_jobs_running"
        ]
    );
}

async fn key_tables(raw: &mut sqlx::SqliteConnection) -> Vec<String> {
    schema_names(
        raw,
        "name IN ('hooksmith_keys', 'hooksmith_delivery_keys', 'hooksmith_deliveries_delivery_id')",
    )
    .await
}

/// A database from before `hooksmith_delivery_keys` (keys in `hooksmith_keys`, a delivery-id
/// index on deliveries) opens with every key still deduplicating: the keys of stored deliveries
/// move, those of purged deliveries stay in the old table until the retention purge takes them,
/// and the old table goes once empty.
#[tokio::test]
async fn a_sqlite_database_with_the_earlier_keys_table_is_upgraded_on_open() {
    use sqlx::Connection as _;
    let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_keys_upgrade")));
    let url = format!("sqlite:{}", path.display());
    let (kept, purged) = (unique("kept"), unique("purged"));
    let store = SqliteStore::open(&url).unwrap();
    let mut ids = Vec::new();
    for key in [&kept, &purged] {
        let Ingest::Stored { id, .. } = store.ingest(delivery(key, &[])).await.unwrap() else {
            panic!("stored")
        };
        ids.push(id);
    }
    drop(store);
    // Back to the earlier layout, with the second delivery purged and its key left behind.
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for statement in [
        "CREATE TABLE hooksmith_keys (idem_key TEXT PRIMARY KEY, delivery INTEGER NOT NULL,
           seen_at_ms INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO hooksmith_keys SELECT idem_key, delivery, seen_at_ms FROM hooksmith_delivery_keys",
        "DROP TABLE hooksmith_delivery_keys",
        "CREATE INDEX hooksmith_deliveries_delivery_id ON hooksmith_deliveries (delivery_id)",
    ] {
        sqlx::query(statement).execute(&mut raw).await.unwrap();
    }
    sqlx::query("DELETE FROM hooksmith_deliveries WHERE id = ?1")
        .bind(ids[1])
        .execute(&mut raw)
        .await
        .unwrap();
    raw.close().await.unwrap();

    let store = SqliteStore::open(&url).unwrap();
    assert_eq!(
        store.ingest(delivery(&kept, &[])).await.unwrap(),
        Ingest::Duplicate { id: ids[0] },
        "a moved key"
    );
    assert_eq!(
        store.ingest(delivery(&purged, &[])).await.unwrap(),
        Ingest::Duplicate { id: ids[1] },
        "a key of a purged delivery, still in the old table"
    );
    assert_eq!(listed_for(&store, &kept).await, [ids[0]]);
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    assert_eq!(
        key_tables(&mut raw).await,
        ["hooksmith_delivery_keys", "hooksmith_keys"],
        "the delivery-id index is gone; the old table holds the purged delivery's key"
    );
    raw.close().await.unwrap();

    // The retention purge takes the old key as it would have; then the id is new again.
    let (_, keys) = store
        .purge(hooksmith::store::Retention {
            history_before_ms: 0,
            keep_at_most: None,
            keys_before_ms: now() + 1,
        })
        .await
        .unwrap();
    assert_eq!(
        keys, 1,
        "only the old key: the kept one's delivery is stored"
    );
    assert!(matches!(
        store.ingest(delivery(&purged, &[])).await.unwrap(),
        Ingest::Stored { .. }
    ));
    drop(store);
    let store = SqliteStore::open(&url).unwrap();
    assert_eq!(
        store.ingest(delivery(&kept, &[])).await.unwrap(),
        Ingest::Duplicate { id: ids[0] }
    );
    drop(store);
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    assert_eq!(key_tables(&mut raw).await, ["hooksmith_delivery_keys"]);
}

/// A group whose transaction fails is committed again one write at a time: only the write that
/// cannot be stored is answered with an error; every other delivery of its group is stored.
/// The store's writes are held back (by a lock in the database) until `release` runs, so that
/// they queue up and go in groups behind it; the database refuses the delivery whose id starts
/// with `poison-`.
async fn failed_group(store: Arc<dyn Store>, release: impl Future<Output = ()>) {
    let ingest = |key: String| {
        let store = store.clone();
        tokio::spawn(async move { (key.clone(), store.ingest(delivery(&key, &["a"])).await) })
    };
    let prefix = unique("fallback");
    let mut tasks = vec![ingest(format!("{prefix}-first"))];
    tokio::time::sleep(Duration::from_millis(100)).await;
    tasks.extend((0..40).map(|i| ingest(format!("{prefix}-{i}"))));
    tasks.push(ingest(format!("poison-{prefix}")));
    tasks.extend((40..80).map(|i| ingest(format!("{prefix}-{i}"))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.await;

    let mut stored = 0;
    for task in tasks {
        let (key, result) = task.await.unwrap();
        match result {
            Ok(Ingest::Stored { id, record, .. }) => {
                assert!(
                    !key.starts_with("poison-"),
                    "the refused delivery was stored"
                );
                assert_eq!(store.get(id).await.unwrap().unwrap().1, record);
                stored += 1;
            }
            Ok(other) => panic!("{key}: {other:?}"),
            Err(error) => {
                assert!(
                    key.starts_with("poison-"),
                    "{key} failed with its group: {error}"
                );
                assert!(error.to_string().contains("refused"), "{error}");
            }
        }
    }
    assert_eq!(stored, 81, "every delivery but the refused one is stored");
}

/// Commits the transaction `raw` holds open, and closes it.
async fn commit_and_close<C>(mut raw: C)
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    sqlx::raw_sql("COMMIT").execute(&mut raw).await.unwrap();
    raw.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_group_is_committed_again_write_by_write() {
    use sqlx::Connection as _;
    let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_fallback")));
    let url = format!("sqlite:{}", path.display());
    let store = Arc::new(SqliteStore::open(&url).unwrap());
    store.ingest(delivery(&unique("warm"), &[])).await.unwrap();
    // A trigger refuses one delivery, so any group holding it fails as a whole.
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON hooksmith_deliveries
         WHEN NEW.delivery_id LIKE 'poison-%' BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    // The write lock, held.
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut raw)
        .await
        .unwrap();
    failed_group(store, commit_and_close(raw)).await;
    remove_database(&path);

    let Some(url) = postgres_url("a_failed_group_is_committed_again_write_by_write") else {
        return;
    };
    let schema = unique("hs_fallback");
    let store = Arc::new(PostgresStore::open(&url, Some(&schema)).unwrap());
    store.ingest(delivery(&unique("warm"), &[])).await.unwrap();
    let mut raw = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION {schema}.poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
            IF NEW.delivery_id LIKE 'poison-%' THEN RAISE EXCEPTION 'refused'; END IF;
            RETURN NEW;
         END $$;
         CREATE TRIGGER poison BEFORE INSERT ON {schema}.hooksmith_deliveries
         FOR EACH ROW EXECUTE FUNCTION {schema}.poison();
         BEGIN;
         LOCK TABLE {schema}.hooksmith_keys IN EXCLUSIVE MODE;"
    )))
    .execute(&mut raw)
    .await
    .unwrap();
    failed_group(store, commit_and_close(raw)).await;
    drop_schema(&url, &schema).await;
}

/// The durable stores commit concurrent writes in groups: under 300 concurrent ingests (every key
/// twice) and concurrent results, each delivery is stored once, its twin is its duplicate, every
/// job gets its own id, and a result for a job that does not exist fails alone.
async fn group_writes(store: Arc<dyn Store>) {
    let prefix = unique("group");
    let ingests: Vec<_> = (0..300)
        .map(|i| {
            let (store, key) = (store.clone(), format!("{prefix}-{}", i % 150));
            tokio::spawn(async move {
                let result = store.ingest(delivery(&key, &["a", "b"])).await.unwrap();
                (key, result)
            })
        })
        .collect();
    let mut stored = std::collections::HashMap::new();
    let mut duplicates = Vec::new();
    let mut all_jobs = std::collections::HashSet::new();
    for task in ingests {
        match task.await.unwrap() {
            (key, Ingest::Stored { id, jobs, .. }) => {
                assert_eq!(jobs.len(), 2);
                for job in &jobs {
                    assert!(all_jobs.insert(*job), "job id {job} given twice");
                }
                assert!(stored.insert(key, id).is_none(), "a key stored twice");
            }
            (key, Ingest::Duplicate { id }) => duplicates.push((key, id)),
        }
    }
    assert_eq!((stored.len(), duplicates.len()), (150, 150));
    for (key, id) in &duplicates {
        assert_eq!(stored.get(key), Some(id), "a duplicate names its twin");
    }

    let claimed = claim_n(&*store, 300, 60_000).await;
    assert_eq!(claimed.len(), 300);
    let doomed = claimed[0].id;
    let finishes: Vec<_> = claimed
        .iter()
        .map(|job| job.id)
        .chain([i64::MAX])
        .map(|id| {
            let store = store.clone();
            tokio::spawn(async move {
                let result = if id == doomed {
                    JobResult::Failed {
                        error: "no".into(),
                        retry_at_ms: None,
                    }
                } else {
                    JobResult::Succeeded
                };
                (id, store.finish(id, result, now()).await)
            })
        })
        .collect();
    for task in finishes {
        let (id, result) = task.await.unwrap();
        assert_eq!(result.is_err(), id == i64::MAX, "job {id}: {result:?}");
    }
    let doomed_delivery = claimed[0].delivery.id;
    for id in stored.values() {
        let (status, handlers) = status_of(&*store, *id).await;
        let expected = if *id == doomed_delivery {
            DeliveryStatus::Dead
        } else {
            DeliveryStatus::Acknowledged
        };
        assert_eq!(status, expected, "{}: {handlers:?}", store.info().kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commits_keep_every_write_apart() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_group")));
    group_writes(Arc::new(
        SqliteStore::open(&format!("sqlite:{}", path.display())).unwrap(),
    ))
    .await;
    remove_database(&path);
    let Some(url) = postgres_url("group_commits_keep_every_write_apart") else {
        return;
    };
    let schema = unique("hs_group");
    group_writes(Arc::new(PostgresStore::open(&url, Some(&schema)).unwrap())).await;
    drop_schema(&url, &schema).await;
}

/// The PostgreSQL URL for tests, or `None` after saying the test is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("HOOKSMITH_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped {test}: HOOKSMITH_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store() {
    let Some(url) = postgres_url("postgres_store") else {
        return;
    };
    let schema = unique("hs_suite");
    let store = PostgresStore::open(&url, Some(&schema)).unwrap();
    suite(Arc::new(store)).await;
    drop_schema(&url, &schema).await;
    let schema = unique("hs_retention");
    retention(Arc::new(PostgresStore::open(&url, Some(&schema)).unwrap())).await;
    drop_schema(&url, &schema).await;
}

/// Removes a test's schema.
pub async fn drop_schema(url: &str, schema: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_a_store_error_not_a_hang() {
    let store = PostgresStore::open("postgres://postgres@127.0.0.1:1/none", None).unwrap();
    let started = std::time::Instant::now();
    assert!(store.ingest(delivery("k", &["a"])).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(10));
    let store = SqliteStore::open("sqlite:/nonexistent-dir/for/sure/hooksmith.db").unwrap();
    assert!(store.ingest(delivery("k", &["a"])).await.is_err());
}

mod through_the_app {
    use hooksmith::{Delivery, State, webhook};
    use hooksmith_tests::{ADMIN_TOKEN, Harness, handler};

    use super::*;

    #[derive(Clone, Default)]
    struct Runs(Arc<std::sync::Mutex<Vec<String>>>);

    #[webhook(
        path = "/durable",
        sig = "none",
        id_header = "x-id",
        retry(max = 1, backoff = "10ms")
    )]
    async fn durable(d: Delivery, runs: State<Runs>) -> hooksmith::Result {
        runs.0.0.lock().unwrap().push(d.id().to_owned());
        if d.id().starts_with("fail") {
            return Err(hooksmith::HandlerError::new("refused"));
        }
        Ok(())
    }

    #[webhook(path = "/tenants/{connection}/github", sig = "github", event = "push")]
    async fn tenant_push(d: Delivery, runs: State<Runs>) {
        runs.0
            .0
            .lock()
            .unwrap()
            .push(format!("{}:{}", d.connection().unwrap_or("-"), d.id()));
    }

    #[derive(Clone, Default)]
    struct Order(Arc<std::sync::Mutex<Vec<String>>>);

    #[webhook(
        path = "/ordered",
        sig = "none",
        id_header = "x-id",
        order_by = "account"
    )]
    async fn ordered(d: Delivery, body: serde_json::Value, log: State<Order>) {
        let account = body["account"].as_str().unwrap_or("?").to_owned();
        log.0
            .0
            .lock()
            .unwrap()
            .push(format!("start {account} {}", d.id()));
        tokio::time::sleep(Duration::from_millis(20)).await;
        log.0
            .0
            .lock()
            .unwrap()
            .push(format!("end {account} {}", d.id()));
    }

    async fn ordering(h: &Harness, order: &Order) {
        let sends = [
            ("a", "a-1"),
            ("a", "a-2"),
            ("b", "b-1"),
            ("a", "a-3"),
            ("b", "b-2"),
            ("a", "a-4"),
        ];
        for (account, id) in sends {
            let body = serde_json::json!({"account": account}).to_string();
            assert_eq!(
                h.request("POST", "/ordered", &[("x-id", id.to_owned())], body)
                    .await
                    .status,
                204
            );
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while order.0.lock().unwrap().len() < 2 * sends.len() {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                order.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let log = order.0.lock().unwrap().clone();
        for account in ["a", "b"] {
            let mine: Vec<&String> = log
                .iter()
                .filter(|l| l.split(' ').nth(1) == Some(account))
                .collect();
            let ids: Vec<&str> = sends
                .iter()
                .filter(|(a, _)| *a == account)
                .map(|(_, id)| *id)
                .collect();
            let expected: Vec<String> = ids
                .iter()
                .flat_map(|id| {
                    [
                        format!("start {account} {id}"),
                        format!("end {account} {id}"),
                    ]
                })
                .collect();
            assert_eq!(
                mine,
                expected.iter().collect::<Vec<_>>(),
                "one at a time, in arrival order: {log:?}"
            );
        }
    }

    fn app(store: impl Store) -> (Harness, Runs, Order) {
        let (runs, order) = (Runs::default(), Order::default());
        let app = hooksmith::App::builder()
            .ignore_env()
            .store(store)
            .state(runs.clone())
            .state(order.clone())
            .state(Resume(Arc::default(), hooksmith::ManualClock::default()))
            .admin_token(ADMIN_TOKEN)
            .build()
            .unwrap();
        (Harness::new(app), runs, order)
    }

    async fn post(h: &Harness, id: &str) -> hooksmith_tests::Reply {
        h.request("POST", "/durable", &[("x-id", id.to_owned())], "{}")
            .await
    }

    async fn deliver_and_run(h: &Harness, runs: &Runs, order: &Order) {
        for id in ["ok-1", "ok-2", "fail-1"] {
            assert_eq!(post(h, id).await.status, 204);
        }
        assert_eq!(
            post(h, "ok-1").await.status,
            204,
            "a duplicate is acknowledged"
        );
        let ok = h.wait_for_status("/durable", "ok-1", "acknowledged").await;
        assert_eq!(handler(&ok, "durable")["attempts"], 1);
        h.wait_for_status("/durable", "ok-2", "acknowledged").await;
        let failed = h.wait_for_status("/durable", "fail-1", "dead").await;
        assert_eq!(handler(&failed, "durable")["attempts"], 2);
        assert_eq!(handler(&failed, "durable")["last_error"], "refused");
        let count = |id: &str| runs.0.lock().unwrap().iter().filter(|r| *r == id).count();
        assert_eq!(count("ok-1"), 1);
        assert_eq!(count("fail-1"), 2);

        // Dead letters: listed, replayed one by one, or requeued in bulk.
        let auth = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
        let dead = h.admin("/admin/dead").await;
        assert_eq!(dead.as_array().unwrap().len(), 1);
        assert_eq!(dead[0]["delivery_id"], "fail-1");
        let replay = h
            .request(
                "POST",
                &format!("/admin/deliveries/{}/replay", failed["id"]),
                &auth,
                "",
            )
            .await;
        assert_eq!(replay.status, 200);
        let report: serde_json::Value = serde_json::from_slice(&replay.body).unwrap();
        assert_eq!(
            report,
            serde_json::json!({"success": false, "handlers": [{"name": "durable", "success": false, "error": "refused"}]})
        );
        assert!(count("fail-1") >= 3);

        // An acknowledged delivery is replayed only when forced.
        let path = format!("/admin/deliveries/{}/replay", ok["id"]);
        assert_eq!(h.request("POST", &path, &auth, "").await.status, 409);
        let forced = h
            .request("POST", &format!("{path}?force=true"), &auth, "")
            .await;
        let report: serde_json::Value = serde_json::from_slice(&forced.body).unwrap();
        assert_eq!(report["success"], true);
        assert_eq!(
            count("ok-1"),
            2,
            "a replay bypasses de-duplication on purpose"
        );
        assert_eq!(
            h.request("POST", "/admin/deliveries/99999999/replay", &auth, "")
                .await
                .status,
            404
        );
        assert_eq!(h.request("POST", &path, &[], "").await.status, 401);

        // Bulk: every dead job back in the queue, with a fresh retry budget. (The replayed run
        // failed and was retried from the queue; wait for it to be dead again.)
        h.wait_for_status("/durable", "fail-1", "dead").await;
        let dead_before = count("fail-1");
        let requeued = h.request("POST", "/admin/dead/replay", &auth, "").await;
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&requeued.body).unwrap(),
            serde_json::json!({"requeued": 1})
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count("fail-1") < dead_before + 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the requeued job never ran twice more"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        h.wait_for_status("/durable", "fail-1", "dead").await;
        tenants(h, runs).await;
        ordering(h, order).await;
    }

    async fn push(h: &Harness, connection: &str, secret: &str, id: &str) -> u16 {
        let body = br#"{"ref":"main"}"#;
        let input = hooksmith::testing::SignInput {
            body,
            timestamp: 0,
            id,
            url: "",
            content_type: None,
        };
        let signature = hooksmith::testing::sign(
            "github",
            &hooksmith::testing::Params::default(),
            secret,
            &input,
        )
        .unwrap();
        let headers = [
            ("x-github-event", "push".to_owned()),
            ("x-github-delivery", id.to_owned()),
            (
                signature[0].0.as_str(),
                signature[0].1.to_str().unwrap().to_owned(),
            ),
        ];
        h.request(
            "POST",
            &format!("/tenants/{connection}/github"),
            &headers,
            body.to_vec(),
        )
        .await
        .status
    }

    async fn tenants(h: &Harness, runs: &Runs) {
        let auth = ("authorization", format!("Bearer {ADMIN_TOKEN}"));
        let json = ("content-type", "application/json".to_owned());
        let create = |body: serde_json::Value| {
            let headers = [auth.clone(), json.clone()];
            async move {
                h.request("POST", "/admin/connections", &headers, body.to_string())
                    .await
            }
        };
        assert_eq!(
            push(h, "acme", "acme-secret-1", "t-1").await,
            404,
            "no such connection yet"
        );
        let created = create(serde_json::json!({"name": "acme", "type": "github", "secret": "acme-secret-1", "nonce_header": "X-GitHub-Delivery"})).await;
        assert_eq!(created.status, 201);
        let body = String::from_utf8_lossy(&created.body).into_owned();
        assert!(
            !body.contains("acme-secret-1"),
            "secrets are never shown: {body}"
        );
        assert_eq!(
            create(serde_json::json!({"name": "acme", "type": "github", "secret": "x"}))
                .await
                .status,
            409
        );
        assert_eq!(
            create(
                serde_json::json!({"name": "globex", "type": "github", "secret": "globex-secret"})
            )
            .await
            .status,
            201
        );
        assert_eq!(
            create(
                serde_json::json!({"name": "slacky", "type": "slack", "secret": "slack-secret"})
            )
            .await
            .status,
            201
        );
        for bad in [
            serde_json::json!({"name": "bad name", "type": "github", "secret": "s"}),
            serde_json::json!({"name": "nosecret", "type": "github"}),
            serde_json::json!({"name": "open", "type": "none", "secret": "s"}),
            serde_json::json!({"name": "std", "type": "standard", "secret": "whsec_%%%hidden%%%"}),
            serde_json::json!({"name": "typo", "type": "githb", "secret": "s"}),
        ] {
            let reply = create(bad.clone()).await;
            assert_eq!(reply.status, 400, "{bad}");
            assert!(
                !String::from_utf8_lossy(&reply.body).contains("hidden"),
                "{bad}"
            );
        }
        let list = h.admin("/admin/connections").await;
        assert_eq!(list.as_array().unwrap().len(), 3);
        assert_eq!(list[0]["name"], "acme");
        assert_eq!(list[0]["secrets"], 1);

        // Each connection verifies with its own secret; the same delivery id on two connections is
        // two deliveries.
        assert_eq!(push(h, "acme", "acme-secret-1", "t-1").await, 204);
        assert_eq!(push(h, "acme", "globex-secret", "t-2").await, 401);
        assert_eq!(push(h, "globex", "globex-secret", "t-1").await, 204);
        assert_eq!(
            push(h, "acme", "acme-secret-1", "t-1").await,
            204,
            "a duplicate"
        );
        assert_eq!(
            push(h, "slacky", "slack-secret", "t-3").await,
            404,
            "a connection of another scheme"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen: Vec<String> = runs
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.contains(":t-"))
                .cloned()
                .collect();
            if seen.len() >= 2 {
                let mut seen = seen;
                seen.sort();
                assert_eq!(seen, ["acme:t-1", "globex:t-1"]);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{seen:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Rotation: the new secret and the previous one both verify.
        let rotate = h
            .request(
                "POST",
                "/admin/connections/acme/rotate",
                &[auth.clone(), json.clone()],
                r#"{"secret":"acme-secret-2"}"#,
            )
            .await;
        assert_eq!(rotate.status, 200);
        assert_eq!(push(h, "acme", "acme-secret-2", "t-4").await, 204);
        assert_eq!(push(h, "acme", "acme-secret-1", "t-5").await, 204);
        let rotate = h
            .request(
                "POST",
                "/admin/connections/acme/rotate",
                &[auth.clone(), json.clone()],
                r#"{"secret":"acme-secret-3"}"#,
            )
            .await;
        assert_eq!(rotate.status, 200);
        assert_eq!(
            push(h, "acme", "acme-secret-1", "t-6").await,
            401,
            "two rotations retire a secret"
        );

        // Deleted: 404 again.
        assert_eq!(
            h.request(
                "DELETE",
                "/admin/connections/acme",
                std::slice::from_ref(&auth),
                ""
            )
            .await
            .status,
            204
        );
        assert_eq!(
            h.request(
                "DELETE",
                "/admin/connections/acme",
                std::slice::from_ref(&auth),
                ""
            )
            .await
            .status,
            404
        );
        assert_eq!(push(h, "acme", "acme-secret-3", "t-7").await, 404);
    }

    #[derive(Clone)]
    struct Resume(
        Arc<std::sync::Mutex<Vec<(u32, i64)>>>,
        hooksmith::ManualClock,
    );

    #[webhook(
        path = "/resume",
        sig = "none",
        id_header = "x-id",
        retry(max = 3, backoff = "60s", factor = 1)
    )]
    async fn resumed(d: Delivery, log: State<Resume>) -> hooksmith::Result {
        use hooksmith::Clock;
        log.0
            .0
            .lock()
            .unwrap()
            .push((d.attempt(), log.0.1.now_ms()));
        if d.attempt() == 1 {
            Err(hooksmith::HandlerError::new("first"))
        } else {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_restart_resumes_retries_at_their_persisted_time() {
        let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_resume")));
        let url = format!("sqlite:{}", path.display());
        let start = 1_700_000_000_000;
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let build = |clock: &hooksmith::ManualClock| {
            let app = hooksmith::App::builder()
                .ignore_env()
                .only_explicit_handlers()
                .handler::<resumed>()
                .store(SqliteStore::open(&url).unwrap())
                .clock(clock.clone())
                .state(Resume(log.clone(), clock.clone()))
                .admin_token(ADMIN_TOKEN)
                .build()
                .unwrap();
            Harness::new(app)
        };
        let clock = hooksmith::ManualClock::default();
        clock.set_secs(start / 1000);
        let first = build(&clock);
        assert_eq!(
            first
                .request("POST", "/resume", &[("x-id", "r-1".into())], "{}")
                .await
                .status,
            204
        );
        let retrying = first.wait_for_status("/resume", "r-1", "dispatched").await;
        let next = loop {
            let d = first
                .admin(&format!("/admin/deliveries/{}", retrying["id"]))
                .await;
            if let Some(at) = handler(&d, "resumed")["next_attempt_at_ms"].as_i64() {
                break at;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(next > start, "the retry is scheduled in the future");
        let Harness { app, router } = first;
        drop(router);
        app.shutdown().await;

        // A new process on the same file, its clock still before the retry time: nothing runs.
        let second = build(&clock);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(log.lock().unwrap().len(), 1);
        // At the persisted time, it does.
        clock.set_secs(next / 1000 + 1);
        second
            .wait_for_status("/resume", "r-1", "acknowledged")
            .await;
        let runs = log.lock().unwrap().clone();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1].0, 2);
        assert!(
            runs[1].1 >= next,
            "run at {} before its time {next}",
            runs[1].1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_app_runs_in_memory() {
        let (h, runs, order) = app(MemoryStore::new());
        deliver_and_run(&h, &runs, &order).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_app_runs_on_sqlite() {
        let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_app")));
        let (h, runs, order) =
            app(SqliteStore::open(&format!("sqlite:{}", path.display())).unwrap());
        deliver_and_run(&h, &runs, &order).await;
        // The body comes back byte-exact from the file.
        let list = h.deliveries("/durable").await;
        let detail = h
            .admin(&format!("/admin/deliveries/{}", list[0]["id"]))
            .await;
        assert_eq!(detail["body"], "{}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_app_runs_on_postgres() {
        let Some(url) = postgres_url("the_app_runs_on_postgres") else {
            return;
        };
        let schema = unique("hs_app");
        let (h, runs, order) = app(PostgresStore::open(&url, Some(&schema)).unwrap());
        deliver_and_run(&h, &runs, &order).await;
        drop(h);
        drop_schema(&url, &schema).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_unreachable_database_answers_503_with_retry_after_and_never_2xx() {
        let (h, runs, _order) =
            app(PostgresStore::open("postgres://postgres@127.0.0.1:1/none", None).unwrap());
        let reply = post(&h, "lost-1").await;
        assert_eq!(reply.status, 503);
        assert!(reply.headers.contains_key("retry-after"));
        assert!(runs.0.lock().unwrap().is_empty());
    }
}

/// A durable store shared by several runtimes one after another (a store in a `static` used by
/// several `#[tokio::test]`s, say) keeps working once the runtime that first used it is gone:
/// deliveries are stored, in groups, and their callers answered. On PostgreSQL a connection the
/// first runtime opened fails the statement it is given (and is dropped), so a caller answered
/// with an error sends again, as a provider does; a delivery whose first statement committed
/// before its connection broke is then answered as a duplicate of itself.
fn outlives_runtimes(open: impl FnOnce() -> Arc<dyn Store>) {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let store = {
        let first = runtime();
        let _inside = first.enter();
        open()
    };
    let kind = store.info().kind;
    // Each runtime stores many deliveries at once, so the writer commits them in groups. Each
    // answer: the delivery's id, and whether it was stored by that call (not sent again).
    let ingest = |keys: &[String]| {
        runtime().block_on(async {
            let tasks: Vec<_> = keys
                .iter()
                .map(|key| {
                    let (store, key) = (store.clone(), key.clone());
                    tokio::spawn(async move {
                        for attempt in 0..5 {
                            let answer = tokio::time::timeout(
                                Duration::from_secs(10),
                                store.ingest(delivery(&key, &["a"])),
                            )
                            .await
                            .expect("answered within 10 s");
                            match answer {
                                Ok(Ingest::Stored { id, .. }) => return (id, attempt == 0),
                                Ok(Ingest::Duplicate { id }) => return (id, false),
                                Err(error) if kind == "postgres" => {
                                    eprintln!("sent again after: {error}");
                                }
                                Err(error) => panic!("{kind}: {error}"),
                            }
                        }
                        panic!("{kind}: not stored in five attempts")
                    })
                })
                .collect();
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            results
        })
    };
    let first = ingest(&(0..20).map(|_| unique("runtimes")).collect::<Vec<_>>());
    let mut keys: Vec<String> = (0..20).map(|_| unique("runtimes")).collect();
    keys.push(keys[0].clone());
    let second = ingest(&keys);
    drop(store);
    let ids: std::collections::HashSet<i64> = first
        .iter()
        .chain(&second[..20])
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(ids.len(), 40, "{kind}: one delivery per key");
    if kind != "postgres" {
        assert!(
            first
                .iter()
                .chain(&second[1..20])
                .all(|(_, stored)| *stored),
            "{kind}: every new key stored by its first call"
        );
    }
    // The key sent twice: one delivery, stored by at most one of the two calls.
    assert_eq!(second[0].0, second[20].0, "{kind}");
    assert!(!(second[0].1 && second[20].1), "{kind}: stored twice");
}

#[test]
fn a_durable_store_outlives_the_runtime_that_started_it() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_runtimes")));
    outlives_runtimes(|| {
        Arc::new(SqliteStore::open(&format!("sqlite:{}", path.display())).unwrap())
    });
    remove_database(&path);
    let Some(url) = postgres_url("a_durable_store_outlives_the_runtime_that_started_it") else {
        return;
    };
    let schema = unique("hs_runtimes");
    outlives_runtimes(|| Arc::new(PostgresStore::open(&url, Some(&schema)).unwrap()));
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(drop_schema(&url, &schema));
}

/// The SQLite writer copies its WAL back into the database as it goes (after answering the group
/// that filled it): 20 MB of deliveries leave a WAL of a few megabytes, not one that grows with
/// everything ever written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_wal_is_checkpointed_as_deliveries_arrive() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_wal")));
    let store = Arc::new(SqliteStore::open(&format!("sqlite:{}", path.display())).unwrap());
    let body = Bytes::from(vec![b'x'; 20_000]);
    for _ in 0..20 {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (store, mut new) = (store.clone(), delivery(&unique("wal"), &["a"]));
                new.body = body.clone();
                tokio::spawn(async move { store.ingest(new).await })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await.unwrap(), Ok(Ingest::Stored { .. })));
        }
    }
    let wal = std::fs::metadata(format!("{}-wal", path.display()))
        .map(|m| m.len())
        .unwrap_or(0);
    let database = std::fs::metadata(&path).unwrap().len();
    drop(store);
    remove_database(&path);
    // What the last checkpoint left in the WAL (up to its 1,000 frames) is not in the database
    // yet.
    assert!(
        database > 10_000_000,
        "the database holds the deliveries: {database} bytes"
    );
    assert!(
        wal < 10_000_000,
        "the WAL is {wal} bytes after 20 MB of deliveries"
    );
}

/// Records every job of `jobs` as succeeded, all at once; each result must be recorded.
async fn succeed_together(store: &Arc<dyn Store>, jobs: &[i64]) {
    let results: Vec<_> = jobs
        .iter()
        .map(|&job| {
            let store = store.clone();
            tokio::spawn(async move { store.finish(job, JobResult::Succeeded, now()).await })
        })
        .collect();
    for result in results {
        result.await.unwrap().expect("recorded");
    }
}

/// A delivery with several handlers whose results arrive at the same moment ends `acknowledged`
/// once all of them succeeded: each result's status update sees the others. (A status left at
/// `dispatched` would also keep the delivery from ever being purged.)
async fn concurrent_results(store: Arc<dyn Store>) {
    for _ in 0..30 {
        let Ingest::Stored { id, jobs, .. } = store
            .ingest(delivery(&unique("together"), &["a", "b", "c", "d"]))
            .await
            .unwrap()
        else {
            panic!("a new key is stored")
        };
        let claimed = store.claim(1_000, 60_000, now()).await.unwrap();
        assert!(jobs.iter().all(|job| claimed.iter().any(|c| c.id == *job)));
        succeed_together(&store, &jobs).await;
        let (summary, _) = store.get(id).await.unwrap().expect("stored");
        assert_eq!(
            summary.status,
            DeliveryStatus::Acknowledged,
            "{}: {summary:?}",
            store.info().kind
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_arriving_together_leave_the_delivery_acknowledged() {
    concurrent_results(Arc::new(MemoryStore::new())).await;
    let path = std::env::temp_dir().join(format!("{}.db", unique("hooksmith_together")));
    concurrent_results(Arc::new(
        SqliteStore::open(&format!("sqlite:{}", path.display())).unwrap(),
    ))
    .await;
    remove_database(&path);
    let Some(url) = postgres_url("results_arriving_together_leave_the_delivery_acknowledged")
    else {
        return;
    };
    let schema = unique("hs_together");
    concurrent_results(Arc::new(PostgresStore::open(&url, Some(&schema)).unwrap())).await;
    drop_schema(&url, &schema).await;
}

/// A TCP proxy to the test's PostgreSQL, which a test can cut.
struct Proxy {
    /// The database's URL through the proxy.
    url: String,
    accepting: tokio::task::JoinHandle<()>,
    links: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(url: &str) -> Proxy {
        // `postgres://user@host:port/db…`: the proxy stands in for `host:port`.
        let start = url
            .find('@')
            .map_or_else(|| url.find("://").unwrap() + 3, |at| at + 1);
        let end = start + url[start..].find('/').unwrap();
        let database = url[start..end].to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxied = format!(
            "{}{}{}",
            &url[..start],
            listener.local_addr().unwrap(),
            &url[end..]
        );
        let links = Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepting = tokio::spawn({
            let links = links.clone();
            async move {
                loop {
                    let (mut inbound, _) = listener.accept().await.unwrap();
                    let database = database.clone();
                    links.lock().unwrap().push(tokio::spawn(async move {
                        let mut outbound = tokio::net::TcpStream::connect(&database).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }));
                }
            }
        });
        Proxy {
            url: proxied,
            accepting,
            links,
        }
    }

    /// Closes every connection made so far; new ones are still made.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Closes every connection and refuses new ones.
    fn stop(&self) {
        self.accepting.abort();
        self.cut();
    }
}

/// A PostgreSQL that goes away while deliveries are queued: every caller gets its error within
/// seconds. (Retried one at a time, each write of a group waited out the pool's connect timeout
/// in turn.) The database is reached through a proxy the test cuts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_gone_mid_run_fails_queued_writes_promptly() {
    let Some(url) = postgres_url("a_database_gone_mid_run_fails_queued_writes_promptly") else {
        return;
    };
    let proxy = Proxy::start(&url).await;
    let schema = unique("hs_gone");
    let store = Arc::new(PostgresStore::open(&proxy.url, Some(&schema)).unwrap());
    store
        .ingest(delivery(&unique("warm"), &["a"]))
        .await
        .unwrap();

    proxy.stop();
    let started = std::time::Instant::now();
    let ingests: Vec<_> = (0..40)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ingest(delivery(&unique("gone"), &["a"])).await })
        })
        .collect();
    for ingest in ingests {
        assert!(
            ingest.await.unwrap().is_err(),
            "stored with the database gone"
        );
    }
    let waited = started.elapsed();
    drop_schema(&url, &schema).await;
    assert!(
        waited < Duration::from_secs(20),
        "the callers waited {waited:?} for their errors"
    );
}

/// Connections that broke since the pool last used them (the database restarted, say): handler
/// results are recorded all the same, each on the next connection, and their delivery is
/// `acknowledged`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn results_survive_connections_that_broke() {
    let Some(url) = postgres_url("results_survive_connections_that_broke") else {
        return;
    };
    let proxy = Proxy::start(&url).await;
    let schema = unique("hs_broken");
    let store: Arc<dyn Store> = Arc::new(PostgresStore::open(&proxy.url, Some(&schema)).unwrap());
    let Ingest::Stored { id, jobs, .. } = store
        .ingest(delivery(&unique("broken"), &["a", "b", "c"]))
        .await
        .unwrap()
    else {
        panic!("stored")
    };
    claim_n(&*store, 3, 60_000).await;

    proxy.cut();
    succeed_together(&store, &jobs).await;
    let (status, handlers) = status_of(&*store, id).await;
    proxy.stop();
    drop_schema(&url, &schema).await;
    assert_eq!(status, DeliveryStatus::Acknowledged, "{handlers:?}");
}
