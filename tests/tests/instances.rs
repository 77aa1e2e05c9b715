//! Three app processes on one PostgreSQL database: 4,000 unique deliveries spread over them — sent
//! again after a 503 or no answer, as a provider does — are each handled once; the same delivery
//! sent to two instances at once is stored and handled once; an instance killed while holding
//! leases has its jobs finished by the others.
//! Needs `HOOKSMITH_TEST_POSTGRES_URL`; skipped (and says so) without it.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hooksmith_tests::process::{KillOnDrop, client, free_port, push_body, send_push, wait_healthy};

const SECRET: &str = "instances secret";

fn start(url: &str, name: &str, addr: &str, sleep_ms: u64) -> KillOnDrop {
    let child = Command::new(env!("CARGO_BIN_EXE_effects_app"))
        .env_clear()
        .env("HOOKSMITH_ADDR", addr)
        .env("HOOKSMITH_STORE", url)
        .env("HOOKSMITH_LEASE_MS", "2000")
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("EFFECTS_URL", url)
        .env("HANDLER_SLEEP_MS", sleep_ms.to_string())
        .env("INSTANCE", name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test app starts");
    KillOnDrop(child)
}

/// Sends a delivery as a provider does: again, after a pause, while the answer is 503 (the
/// database busier than the store's wait for a connection, on a loaded machine) or none came;
/// at most five times. The status it ended with.
async fn deliver(
    client: &hooksmith_tests::process::HttpClient,
    addr: &str,
    id: &str,
    body: &[u8],
) -> u16 {
    let mut status = 0;
    for _ in 0..5 {
        status = send_push(client, addr, SECRET, id, body).await.unwrap_or(0);
        if status != 503 && status != 0 {
            break;
        }
        RETRIED.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    status
}

/// Deliveries sent again by [`deliver`], for the summary line.
static RETRIED: AtomicUsize = AtomicUsize::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_one_database() {
    let Ok(base) = std::env::var("HOOKSMITH_TEST_POSTGRES_URL") else {
        eprintln!(
            "skipped three_instances_share_one_database: HOOKSMITH_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let schema = format!("hs_instances_{}", std::process::id());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");

    // Three instances starting together apply the schema once. C handles slowly, so that it
    // holds leases when it is killed.
    let addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut children = [
        start(&url, "A", &addrs[0], 2),
        start(&url, "B", &addrs[1], 2),
        start(&url, "C", &addrs[2], 3_000),
    ];
    let client = client();
    for addr in &addrs {
        wait_healthy(&client, addr).await;
    }

    // 4,000 unique deliveries, round-robin, 64 in flight.
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..64 {
        let (client, next, addrs) = (client.clone(), next.clone(), addrs.clone());
        senders.push(tokio::spawn(async move {
            let mut statuses = BTreeMap::<u16, usize>::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 4_000 {
                    return statuses;
                }
                let id = format!("u-{i:05}");
                let status = deliver(&client, &addrs[i % 3], &id, &push_body(&id)).await;
                *statuses.entry(status).or_default() += 1;
            }
        }));
    }
    let mut statuses = BTreeMap::<u16, usize>::new();
    for sender in senders {
        for (status, n) in sender.await.unwrap() {
            *statuses.entry(status).or_default() += n;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(
        statuses,
        BTreeMap::from([(204, 4_000)]),
        "every delivery was acknowledged"
    );

    // The same delivery to two instances at once, twenty times.
    let mut pairs = Vec::new();
    for i in 0..20 {
        let id = format!("twice-{i}");
        let (c1, c2, a, b, id1, id2) = (
            client.clone(),
            client.clone(),
            addrs[0].clone(),
            addrs[1].clone(),
            id.clone(),
            id.clone(),
        );
        pairs.push(tokio::spawn(async move {
            let body = push_body(&id1);
            tokio::join!(deliver(&c1, &a, &id1, &body), deliver(&c2, &b, &id2, &body))
        }));
    }
    for pair in pairs {
        assert_eq!(pair.await.unwrap(), (204, 204));
    }

    // C is killed while it holds leases; A and B finish its jobs once the leases run out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.hooksmith_jobs WHERE status = 'running'"
    )))
    .fetch_one(&admin)
    .await
    .unwrap();
    children[2].kill().unwrap();
    children[2].wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pending: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.hooksmith_deliveries WHERE status <> 'acknowledged'"
        )))
        .fetch_one(&admin)
        .await
        .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} deliveries are still not acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for child in &mut children[..2] {
        child.kill().unwrap();
        child.wait().unwrap();
    }

    let count = |sql: String| {
        let admin = admin.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&admin)
                .await
                .unwrap()
        }
    };
    let deliveries = count(format!(
        "SELECT count(*) FROM {schema}.hooksmith_deliveries"
    ))
    .await;
    let effects = count(format!("SELECT count(*) FROM {schema}.effects")).await;
    let runs = count(format!("SELECT count(*) FROM {schema}.runs")).await;
    let distinct_runs = count(format!(
        "SELECT count(DISTINCT delivery_id) FROM {schema}.runs"
    ))
    .await;
    let by_c = count(format!(
        "SELECT count(*) FROM {schema}.runs WHERE instance = 'C'"
    ))
    .await;
    eprintln!(
        "instances: 4000 unique deliveries acknowledged in {:.2} s ({:.0}/s over 3 instances, 64 connections; \
         {} sent again after a 503 or no answer); \
         {deliveries} stored, {effects} effects, {runs} runs ({by_c} by C before it was killed holding {held} leases)",
        elapsed.as_secs_f64(),
        4_000.0 / elapsed.as_secs_f64(),
        RETRIED.load(Ordering::Relaxed)
    );
    assert_eq!(
        deliveries, 4_020,
        "each delivery stored once, the doubly-sent ones included"
    );
    assert_eq!(effects, 4_020, "each delivery has its effect");
    assert_eq!(distinct_runs, 4_020);
    assert!(held > 0, "C held leases when it was killed");
    // At most the runs C finished but could not record as finished are repeated.
    assert!(runs - effects <= held, "{runs} runs for {effects} effects");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .unwrap();
}
