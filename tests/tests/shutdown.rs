//! SIGTERM with requests and handlers in flight: in-flight requests finish, running handlers get
//! the grace period, unfinished jobs are given back so the next start runs them at once, and a
//! second signal exits immediately. Nothing answered 204 is lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hooksmith_tests::process::{HttpClient, client, free_port, push_body, send_push, wait_healthy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "shutdown secret";

fn start(dir: &Path, addr: &str, sleep_ms: u64, grace_ms: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_effects_app"))
        .env_clear()
        .env("HOOKSMITH_ADDR", addr)
        .env(
            "HOOKSMITH_STORE",
            format!("sqlite:{}", dir.join("store.db").display()),
        )
        .env("HOOKSMITH_SHUTDOWN_GRACE_MS", grace_ms.to_string())
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env(
            "EFFECTS_URL",
            format!("sqlite:{}?mode=rwc", dir.join("effects.db").display()),
        )
        .env("HANDLER_SLEEP_MS", sleep_ms.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test app starts")
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(mut child: Child, within: Duration) -> (Option<i32>, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), started.elapsed());
        }
        if started.elapsed() > within {
            child.kill().unwrap();
            panic!("the app did not exit within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hooksmith-shutdown-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn send_all(client: &HttpClient, addr: &str, ids: &[String]) {
    for id in ids {
        assert_eq!(
            send_push(client, addr, SECRET, id, &push_body(id)).await,
            Some(204),
            "{id}"
        );
    }
}

async fn effects(dir: &Path) -> (Vec<String>, usize) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", dir.join("effects.db").display()))
        .await
        .unwrap();
    let effects: Vec<String> =
        sqlx::query_scalar("SELECT delivery_id FROM effects ORDER BY delivery_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    (effects, usize::try_from(runs).unwrap())
}

/// Starts the app again until every id has its effect (at most `within`).
async fn all_handled(dir: &Path, ids: &BTreeSet<String>, within: Duration) -> Duration {
    let addr = format!("127.0.0.1:{}", free_port());
    let app = start(dir, &addr, 0, 5_000);
    wait_healthy(&client(), &addr).await;
    let started = Instant::now();
    loop {
        let (effects, _) = effects(dir).await;
        if effects.iter().cloned().collect::<BTreeSet<_>>() == *ids {
            break;
        }
        assert!(
            started.elapsed() < within,
            "only {} of {} handled",
            effects.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    signal(&app, "TERM");
    wait_exit(app, Duration::from_secs(10)).await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_requests_and_handlers() {
    let dir = temp_dir("graceful");
    let addr = format!("127.0.0.1:{}", free_port());
    let app = start(&dir, &addr, 400, 5_000);
    let client = client();
    wait_healthy(&client, &addr).await;
    let mut ids: Vec<String> = (0..20).map(|i| format!("g-{i:02}")).collect();
    send_all(&client, &addr, &ids).await;

    // A request still arriving when the signal comes.
    let slow_id = "g-slow".to_owned();
    let body = push_body(&slow_id);
    let input = hooksmith::testing::SignInput {
        body: &body,
        timestamp: 0,
        id: &slow_id,
        url: "",
        content_type: None,
    };
    let signature = hooksmith::testing::sign(
        "github",
        &hooksmith::testing::Params::default(),
        SECRET,
        &input,
    )
    .unwrap();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /hooks/github HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nX-GitHub-Delivery: {slow_id}\r\n{}: {}\r\nContent-Length: {}\r\n\r\n",
        signature[0].0,
        signature[0].1.to_str().unwrap(),
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    signal(&app, "TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    slow.write_all(&body[5..]).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 204"),
        "the in-flight request finished"
    );
    ids.push(slow_id);
    let (code, _) = wait_exit(app, Duration::from_secs(15)).await;
    assert_eq!(code, Some(0), "a clean exit");

    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    all_handled(&dir, &expected, Duration::from_secs(20)).await;
    let (effects, runs) = effects(&dir).await;
    assert_eq!(effects.len(), expected.len(), "each effect once");
    assert_eq!(
        runs,
        expected.len(),
        "handlers running at the signal finished within the grace period"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_grace_period_unfinished_jobs_are_given_back_not_left_to_their_leases() {
    let dir = temp_dir("released");
    let addr = format!("127.0.0.1:{}", free_port());
    let app = start(&dir, &addr, 5_000, 300);
    let client = client();
    wait_healthy(&client, &addr).await;
    let ids: Vec<String> = (0..5).map(|i| format!("r-{i}")).collect();
    send_all(&client, &addr, &ids).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&app, "TERM");
    let (code, took) = wait_exit(app, Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(3),
        "the grace period bounds the wait: {took:?}"
    );
    // The default lease is five minutes: finishing within seconds proves the jobs were released.
    let took = all_handled(
        &dir,
        &ids.iter().cloned().collect(),
        Duration::from_secs(20),
    )
    .await;
    assert!(took < Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_signal_exits_at_once() {
    let dir = temp_dir("twice");
    let addr = format!("127.0.0.1:{}", free_port());
    let app = start(&dir, &addr, 20_000, 30_000);
    let client = client();
    wait_healthy(&client, &addr).await;
    send_all(&client, &addr, &["t-1".to_owned()]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&app, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&app, "TERM");
    let (code, took) = wait_exit(app, Duration::from_secs(5)).await;
    assert_eq!(code, Some(130));
    assert!(took < Duration::from_secs(2), "{took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
