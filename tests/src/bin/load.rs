//! The load test: the effects app on SQLite as its own process, then
//!
//! 1. N keep-alive connections sending signed unique deliveries for S seconds: every answer must
//!    be 2xx with no transport error, every 2xx delivery stored and, after the drain, handled;
//!    the app's RSS is sampled every second;
//! 2. a burst of B connections at once, one delivery each: none may hang;
//! 3. a storm of W slow clients dribbling their headers while 16 connections send deliveries:
//!    the legitimate traffic's latency is reported beside phase 1's.
//!
//! ```text
//! cargo run --release -p hooksmith-tests --bin load -- 64 30 1000 300     # the long form
//! ```
//!
//! Exits non-zero when anything was lost or refused. The CI short form runs it from
//! `tests/tests/load.rs` with a few seconds and a small burst.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hooksmith_tests::process::{client, free_port, push_body, send_push, wait_healthy};
use tokio::io::AsyncWriteExt;

const SECRET: &str = "load secret";

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default()
}

struct Phase {
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    latencies: Vec<Duration>,
}

/// `connections` senders with fresh ids until `stop`.
async fn drive(
    addr: String,
    connections: usize,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> Phase {
    let client = client();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (client, addr, stop) = (client.clone(), addr.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut statuses, mut errors, mut latencies) = (BTreeMap::new(), 0, Vec::new());
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{prefix}-{c}-{i}");
                    i += 1;
                    let started = Instant::now();
                    match send_push(&client, &addr, SECRET, &id, &push_body(&id)).await {
                        Some(status) => *statuses.entry(status).or_insert(0u64) += 1,
                        None => errors += 1,
                    }
                    latencies.push(started.elapsed());
                }
                (statuses, errors, latencies)
            })
        })
        .collect();
    let mut phase = Phase {
        statuses: BTreeMap::new(),
        transport_errors: 0,
        latencies: Vec::new(),
    };
    for task in tasks {
        if let Ok((statuses, errors, latencies)) = task.await {
            for (status, n) in statuses {
                *phase.statuses.entry(status).or_insert(0) += n;
            }
            phase.transport_errors += errors;
            phase.latencies.extend(latencies);
        }
    }
    phase.latencies.sort_unstable();
    phase
}

async fn count(db: &std::path::Path, sql: &'static str) -> i64 {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", db.display()))
        .await
        .expect("the database opens");
    let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap_or(-1);
    pool.close().await;
    n
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>());
    let connections = usize::try_from(args.next().unwrap_or(Ok(64))?)?;
    let seconds = args.next().unwrap_or(Ok(30))?;
    let burst = usize::try_from(args.next().unwrap_or(Ok(1000))?)?;
    let slow = usize::try_from(args.next().unwrap_or(Ok(300))?)?;

    let dir = std::env::temp_dir().join(format!("hooksmith-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let addr = format!("127.0.0.1:{}", free_port());
    let exe = std::env::current_exe()?.with_file_name("effects_app");
    let mut app = Command::new(exe)
        .env_clear()
        .env("HOOKSMITH_ADDR", &addr)
        .env(
            "HOOKSMITH_STORE",
            format!("sqlite:{}", dir.join("store.db").display()),
        )
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env(
            "EFFECTS_URL",
            format!("sqlite:{}?mode=rwc", dir.join("effects.db").display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_healthy(&client(), &addr).await;

    // Phase 1: sustained load, RSS sampled every second.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(drive(addr.clone(), connections, "load", stop.clone()));
    let mut rss = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(rss_kib(app.id()));
    }
    stop.store(true, Ordering::Relaxed);
    let phase1 = load.await?;
    let elapsed = started.elapsed().as_secs_f64();
    let answered: u64 = phase1
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let refused: u64 = phase1
        .statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();

    // Phase 2: a burst of connections at once, one delivery each.
    let burst_started = Instant::now();
    let statuses: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let hung = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..burst)
        .map(|i| {
            let (addr, statuses, hung) = (addr.clone(), statuses.clone(), hung.clone());
            tokio::spawn(async move {
                let client = client();
                let id = format!("burst-{i}");
                match send_push(&client, &addr, SECRET, &id, &push_body(&id)).await {
                    Some(status) => *statuses.lock().unwrap().entry(status).or_insert(0) += 1,
                    None => {
                        hung.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let burst_took = burst_started.elapsed();
    let burst_statuses = statuses.lock().unwrap().clone();

    // Phase 3: slow clients dribbling their headers while legitimate traffic continues.
    let storm_stop = Arc::new(AtomicBool::new(false));
    let storm: Vec<_> = (0..slow)
        .map(|_| {
            let (addr, storm_stop) = (addr.clone(), storm_stop.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
                    return;
                };
                for byte in
                    b"POST /hooks/github HTTP/1.1\r\nHost: slow\r\nX-Dribble: aaaaaaaaaaaaaaaaaaaa"
                        .iter()
                        .cycle()
                {
                    if storm_stop.load(Ordering::Relaxed)
                        || stream.write_all(&[*byte]).await.is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let legit_stop = Arc::new(AtomicBool::new(false));
    let legit = tokio::spawn(drive(addr.clone(), 16, "legit", legit_stop.clone()));
    tokio::time::sleep(Duration::from_secs(3.min(seconds.max(1)))).await;
    legit_stop.store(true, Ordering::Relaxed);
    let phase3 = legit.await?;
    storm_stop.store(true, Ordering::Relaxed);
    for task in storm {
        task.abort();
    }

    // Drain: everything answered 2xx is stored and, soon, handled.
    let legit_ok: u64 = phase3
        .statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let burst_ok: u64 = burst_statuses
        .iter()
        .filter(|(s, _)| (200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let expected = i64::try_from(answered + legit_ok + burst_ok)?;
    let drain_started = Instant::now();
    let mut handled = 0;
    while drain_started.elapsed() < Duration::from_secs(300) {
        handled = count(&dir.join("effects.db"), "SELECT count(*) FROM effects").await;
        if handled >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stored = count(
        &dir.join("store.db"),
        "SELECT count(*) FROM hooksmith_deliveries",
    )
    .await;
    app.kill()?;
    let _ = app.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let warm = rss.get(rss.len() / 3).copied().unwrap_or(0);
    let last = rss.last().copied().unwrap_or(0);
    println!(
        "sustained: {connections} connections {seconds}s: {answered} answered 2xx ({:.0}/s), {refused} refused, {} transport errors, p50 {:.1} ms, p99 {:.1} ms; RSS {warm} KiB after warm-up, {last} KiB at the end",
        answered as f64 / elapsed,
        phase1.transport_errors,
        percentile(&phase1.latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&phase1.latencies, 0.99).as_secs_f64() * 1e3,
    );
    println!(
        "burst: {burst} connections at once: {burst_statuses:?}, {} without an answer, all done in {:.2} s",
        hung.load(Ordering::Relaxed),
        burst_took.as_secs_f64()
    );
    println!(
        "slow-client storm: {slow} dribbling clients; legitimate traffic {legit_ok} answered, p50 {:.1} ms, p99 {:.1} ms, statuses {:?}",
        percentile(&phase3.latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&phase3.latencies, 0.99).as_secs_f64() * 1e3,
        phase3.statuses,
    );
    println!(
        "stored {stored} / answered 2xx {expected}; handled {handled} after a {:.1} s drain",
        drain_started.elapsed().as_secs_f64()
    );

    let lost = stored != expected || handled != expected;
    if refused > 0
        || phase1.transport_errors > 0
        || lost
        || hung.load(Ordering::Relaxed) > 0
        || legit_ok == 0
    {
        anyhow::bail!(
            "load test failed: refused {refused}, transport errors {}, lost {lost}",
            phase1.transport_errors
        );
    }
    Ok(())
}
