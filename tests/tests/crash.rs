//! `kill -9` loses nothing: an app on SQLite is killed once while it ingests and once while its
//! handlers run, then started again on the same file. Every delivery answered 204 is stored and
//! handled, each effect (recorded under its delivery id) exists exactly once, and the database
//! passes `PRAGMA integrity_check`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hooksmith_tests::process::{
    HttpClient, KillOnDrop, client, free_port, push_body, send_push, wait_healthy,
};
use http_body_util::{BodyExt, Full};

const SECRET: &str = "crash test secret";
const TOKEN: &str = "crash-admin";

struct Instance {
    child: KillOnDrop,
    addr: String,
}

fn start(dir: &Path, addr: &str, sleep_ms: u64) -> Instance {
    let child = Command::new(env!("CARGO_BIN_EXE_effects_app"))
        .env_clear()
        .env("HOOKSMITH_ADDR", addr)
        .env(
            "HOOKSMITH_STORE",
            format!("sqlite:{}", dir.join("store.db").display()),
        )
        .env("HOOKSMITH_ADMIN_TOKEN", TOKEN)
        .env("HOOKSMITH_LEASE_MS", "1000")
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env(
            "EFFECTS_URL",
            format!("sqlite:{}?mode=rwc", dir.join("effects.db").display()),
        )
        .env("HANDLER_SLEEP_MS", sleep_ms.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test app starts");
    Instance {
        child: KillOnDrop(child),
        addr: addr.to_owned(),
    }
}

async fn send(client: &HttpClient, addr: &str, id: &str) -> Option<u16> {
    send_push(client, addr, SECRET, id, &push_body(id)).await
}

/// Sends `ids` with 16 in flight; returns those answered 204. Kills the instance once `kill_after`
/// have been answered 204.
async fn send_all(
    client: &HttpClient,
    instance: &mut Instance,
    ids: &[String],
    kill_after: Option<usize>,
) -> BTreeSet<String> {
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let queue = Arc::new(Mutex::new(ids.to_vec()));
    let mut senders = Vec::new();
    for _ in 0..16 {
        let (client, queue, acknowledged, addr) = (
            client.clone(),
            queue.clone(),
            acknowledged.clone(),
            instance.addr.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let Some(id) = queue.lock().unwrap().pop() else {
                    return;
                };
                if send(&client, &addr, &id).await == Some(204) {
                    acknowledged.lock().unwrap().insert(id);
                }
            }
        }));
    }
    if let Some(after) = kill_after {
        while acknowledged.lock().unwrap().len() < after && senders.iter().any(|s| !s.is_finished())
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        instance.child.kill().unwrap();
        instance.child.wait().unwrap();
    }
    for sender in senders {
        sender.await.unwrap();
    }
    acknowledged.lock().unwrap().clone()
}

async fn admin_status(client: &HttpClient, addr: &str, id: &str) -> Option<String> {
    let request = http::Request::get(format!("http://{addr}/admin/deliveries?delivery_id={id}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let body = client
        .request(request)
        .await
        .ok()?
        .into_body()
        .collect()
        .await
        .ok()?
        .to_bytes();
    let list: serde_json::Value = serde_json::from_slice(&body).ok()?;
    list[0]["status"].as_str().map(str::to_owned)
}

async fn query_sqlite(path: &Path, sql: &'static str) -> Vec<String> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_ingestion_and_handling_loses_nothing() {
    let dir: PathBuf = std::env::temp_dir().join(format!("hooksmith-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let client = client();
    let addr = format!("127.0.0.1:{}", free_port());
    let ids: Vec<String> = (0..300).map(|i| format!("d-{i:04}")).collect();

    // 1. Killed while ingesting: after 100 deliveries were answered 204.
    let mut app = start(&dir, &addr, 20);
    wait_healthy(&client, &addr).await;
    let mut acknowledged = send_all(&client, &mut app, &ids, Some(100)).await;
    assert!(
        acknowledged.len() >= 100,
        "{} answered before the kill",
        acknowledged.len()
    );

    // 2. Started again; the sender retries what was not acknowledged, as providers do; killed
    //    again as soon as the last answer arrives, while handlers (50 ms each) are still running.
    let mut app = start(&dir, &addr, 50);
    wait_healthy(&client, &addr).await;
    let rest: Vec<String> = ids
        .iter()
        .filter(|id| !acknowledged.contains(*id))
        .cloned()
        .collect();
    acknowledged.extend(send_all(&client, &mut app, &rest, None).await);
    assert_eq!(
        acknowledged.len(),
        ids.len(),
        "every delivery was acknowledged once the app was up"
    );
    app.child.kill().unwrap();
    app.child.wait().unwrap();

    // 3. Started once more: leases of the killed runs expire and the jobs finish.
    let mut app = start(&dir, &addr, 0);
    wait_healthy(&client, &addr).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &acknowledged {
        loop {
            match admin_status(&client, &addr, id).await.as_deref() {
                Some("acknowledged") => break,
                other => assert!(Instant::now() < deadline, "{id} is {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    app.child.kill().unwrap();
    app.child.wait().unwrap();

    // Every acknowledged delivery has its effect, exactly once.
    let effects: Vec<String> = query_sqlite(
        &dir.join("effects.db"),
        "SELECT delivery_id FROM effects ORDER BY delivery_id",
    )
    .await;
    let unique: BTreeSet<String> = effects.iter().cloned().collect();
    assert_eq!(unique.len(), effects.len(), "an effect was recorded twice");
    assert_eq!(
        unique, acknowledged,
        "an acknowledged delivery has no effect"
    );
    let runs = query_sqlite(&dir.join("effects.db"), "SELECT delivery_id FROM runs").await;
    eprintln!(
        "crash test: {} deliveries acknowledged, {} handler runs (at least once: {} re-runs after kills)",
        acknowledged.len(),
        runs.len(),
        runs.len() - effects.len()
    );
    let integrity = query_sqlite(&dir.join("store.db"), "PRAGMA integrity_check").await;
    assert_eq!(integrity, ["ok"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A deterministic pseudo-random sequence (no dependency needed for test timing).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// The crash loop: killed with SIGKILL at random moments, `CRASH_LOOP_KILLS` times (4 in the
/// short CI form; `CRASH_LOOP_KILLS=100 cargo test -p hooksmith-tests --test crash -- --nocapture`
/// is the long form), while deliveries keep arriving and handlers keep running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_loop_loses_nothing() {
    let kills: usize = std::env::var("CRASH_LOOP_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir: PathBuf =
        std::env::temp_dir().join(format!("hooksmith-crash-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let client = client();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut random = Lcg(u64::from(std::process::id()));
    let total = 150 * (kills + 1);
    let ids: Vec<String> = (0..total).map(|i| format!("loop-{i:05}")).collect();
    let mut acknowledged = BTreeSet::new();
    for _ in 0..kills {
        let mut app = start(&dir, &addr, random.next(40));
        wait_healthy(&client, &addr).await;
        let rest: Vec<String> = ids
            .iter()
            .filter(|id| !acknowledged.contains(*id))
            .cloned()
            .collect();
        let queue = Arc::new(Mutex::new(rest));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let senders: Vec<_> = (0..16)
            .map(|_| {
                let (client, queue, acked, addr) =
                    (client.clone(), queue.clone(), acked.clone(), addr.clone());
                tokio::spawn(async move {
                    loop {
                        let Some(id) = queue.lock().unwrap().pop() else {
                            return;
                        };
                        match send(&client, &addr, &id).await {
                            Some(204) => {
                                acked.lock().unwrap().insert(id);
                            }
                            Some(_) => {}
                            None => return,
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50 + random.next(400))).await;
        app.child.kill().unwrap();
        app.child.wait().unwrap();
        for sender in senders {
            let _ = sender.await;
        }
        acknowledged.extend(acked.lock().unwrap().iter().cloned());
    }
    // The last start: the rest arrives, and everything is handled.
    let mut app = start(&dir, &addr, 0);
    wait_healthy(&client, &addr).await;
    let rest: Vec<String> = ids
        .iter()
        .filter(|id| !acknowledged.contains(*id))
        .cloned()
        .collect();
    acknowledged.extend(send_all(&client, &mut app, &rest, None).await);
    assert_eq!(acknowledged.len(), total);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let effects = query_sqlite(
            &dir.join("effects.db"),
            "SELECT delivery_id FROM effects ORDER BY delivery_id",
        )
        .await;
        if effects.len() == total {
            let unique: BTreeSet<String> = effects.into_iter().collect();
            assert_eq!(
                unique, acknowledged,
                "each acknowledged delivery has its effect, once"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} effects",
            effects.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.child.kill().unwrap();
    app.child.wait().unwrap();
    let runs = query_sqlite(&dir.join("effects.db"), "SELECT delivery_id FROM runs").await;
    eprintln!(
        "crash loop: {kills} kills survived, {total} deliveries acknowledged and handled, {} runs",
        runs.len()
    );
    assert_eq!(
        query_sqlite(&dir.join("store.db"), "PRAGMA integrity_check").await,
        ["ok"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
