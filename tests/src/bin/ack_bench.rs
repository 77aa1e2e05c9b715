//! Durable acknowledgement throughput: signed GitHub deliveries with unique ids, from N
//! keep-alive connections over loopback, against an in-process app on the store given.
//!
//! ```text
//! cargo run --release -p hooksmith-tests --bin ack_bench -- [STORE_URL] [CONNECTIONS] [SECONDS]
//! cargo run --release -p hooksmith-tests --bin ack_bench -- sqlite:/tmp/bench.db 64 10
//! ```
//!
//! Prints acknowledgements per second, latency percentiles, errors, and how many handler runs
//! completed in the same time (a growing gap is a backlog).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hooksmith::{State, webhook};
use hooksmith_tests::process::{client, send_push};

const SECRET: &str = "bench secret";
const BODY: &[u8] = include_bytes!("../../fixtures/pull_request.opened.1k.json");

#[derive(Clone, Default)]
struct Done(Arc<AtomicU64>);

#[webhook(path = "/hooks/github", sig = "github", event = "push")]
async fn bench_handler(done: State<Done>) {
    done.0.0.fetch_add(1, Ordering::Relaxed);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let store = args.next().unwrap_or_else(|| "memory".into());
    let connections: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(10), |a| a.parse())?;

    let done = Done::default();
    let app = hooksmith::App::builder()
        .ignore_env()
        .var("GITHUB_WEBHOOK_SECRET", SECRET)
        .var("HOOKSMITH_STORE", &store)
        .from_env()?
        .state(done.clone())
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve_on(listener, async {
        let _ = stopped.await;
    }));

    let client = client();
    // Warm up: the schema is created and connections opened before the clock starts.
    send_push(&client, &addr, SECRET, "warm-up", BODY).await;
    let run = std::process::id();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handled_at_start = done.0.load(Ordering::Relaxed);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (client, addr, stop) = (client.clone(), addr.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("{run}-{c}-{i}");
                i += 1;
                let sent = Instant::now();
                match send_push(&client, &addr, SECRET, &id, BODY).await {
                    Some(204) => ok += 1,
                    _ => errors += 1,
                }
                latencies.push(sent.elapsed());
            }
            (ok, errors, latencies)
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut errors, mut latencies) = (0, 0, Vec::new());
    for task in tasks {
        let (o, e, l) = task.await?;
        ok += o;
        errors += e;
        latencies.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let handled = done.0.load(Ordering::Relaxed) - handled_at_start;
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "store={store} connections={connections} seconds={seconds} body={}B acknowledged={ok} errors={errors} \
         ack/s={:.0} p50={:.2}ms p99={:.2}ms handled={handled} handled/s={:.0}",
        BODY.len(),
        ok as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        handled as f64 / elapsed,
    );
    let _ = stop_server.send(());
    server.await??;
    Ok(())
}
