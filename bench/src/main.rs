//! hooksmith against the receiver a careful engineer writes by hand.
//!
//! ```text
//! cargo run --release -p hooksmith-bench                 # 3 interleaved runs, 5 s per cell
//! cargo run --release -p hooksmith-bench -- --runs 1 --seconds 2 --sizes 1k   # a quick look
//! ```
//!
//! Each measurement starts a fresh server process on a loopback port — the quickstart's router on
//! the `memory` store, the same on a `sqlite` file (durable: `synchronous=FULL`), the hand-written
//! axum receiver in `baseline.rs`, or the same committing each delivery to SQLite — pinned to CPU
//! 0 while this process, the load generator, runs on CPU 1. Cells are interleaved (run 1 of every
//! cell, then run 2, ...) so drift of the machine affects every target alike, and the table
//! reports medians.
//!
//! Per cell: requests per second answered 204, p50 and p99 latency, the server's peak RSS
//! (`VmHWM`), its CPU time per delivery (user and system, from `/proc/PID/stat`), how often the
//! load generator went to sleep per delivery (its thread's voluntary context switches: each is a
//! wake-up the server's next answer pays for), and for hooksmith the handler runs that completed
//! in the window (from its `/metrics`) and the backlog left at its end, then hooksmith ÷
//! hand-written.

mod baseline;
mod load;
mod report;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::load::Payload;
use crate::report::{Cell, Measurement};

const SECRET: &str = "hooksmith bench secret";
const SMALL: &[u8] = include_bytes!("../../tests/fixtures/pull_request.opened.1k.json");
const LARGE: &[u8] = include_bytes!("../../tests/fixtures/pull_request.opened.20k.json");

#[derive(Parser)]
#[command(about = "hooksmith against a careful hand-written receiver, interleaved")]
struct Args {
    /// Interleaved runs of every cell; the table shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds measured per cell.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of load before measuring (connections warm, caches filled).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Connection counts.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    connections: Vec<usize>,
    /// Payload sizes: `1k` (999 B), `20k` (23,633 B).
    #[arg(long, value_delimiter = ',', default_values = ["1k", "20k"])]
    sizes: Vec<Size>,
    /// What to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_values = [
            "hand-written",
            "hand-written-history",
            "memory",
            "hand-written-sqlite",
            "sqlite",
        ]
    )]
    targets: Vec<Target>,
    /// The PostgreSQL database for the `postgres` and `hand-written-postgres` targets (each run
    /// in a schema of its own, dropped after it), e.g. `postgres://postgres@127.0.0.1:5432/test`.
    #[arg(long, env = "HOOKSMITH_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Do not pin the server and the load generator to separate CPUs.
    #[arg(long)]
    no_pin: bool,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand)]
enum Sub {
    /// (internal) Serve one target on a loopback port until stdin closes.
    #[command(hide = true)]
    Serve { target: Target },
    /// Drive a server that is already running (for profiling it): prints req/s and latency.
    Drive {
        /// The server's address, e.g. `127.0.0.1:3000`.
        addr: std::net::SocketAddr,
        /// Connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Payload size.
        #[arg(long, default_value = "1k")]
        size: Size,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Size {
    #[value(name = "1k")]
    Small,
    #[value(name = "20k")]
    Large,
}

impl Size {
    fn body(self) -> &'static [u8] {
        match self {
            Size::Small => SMALL,
            Size::Large => LARGE,
        }
    }
}

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Target {
    /// The hand-written axum receiver.
    HandWritten,
    /// The hand-written receiver keeping the last deliveries, as the memory store's history does.
    HandWrittenHistory,
    /// The hand-written receiver committing each delivery to a SQLite file before answering.
    HandWrittenSqlite,
    /// The quickstart on the in-memory store.
    Memory,
    /// The quickstart on a SQLite file.
    Sqlite,
    /// The hand-written receiver inserting each delivery into PostgreSQL before answering.
    HandWrittenPostgres,
    /// The quickstart on PostgreSQL.
    Postgres,
}

impl Target {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::HandWritten => "hand-written",
            Target::HandWrittenHistory => "hand-written-history",
            Target::HandWrittenSqlite => "hand-written-sqlite",
            Target::Memory => "memory",
            Target::Sqlite => "sqlite",
            Target::HandWrittenPostgres => "hand-written-postgres",
            Target::Postgres => "postgres",
        }
    }

    fn postgres(self) -> bool {
        matches!(self, Target::HandWrittenPostgres | Target::Postgres)
    }
}

const PINNED: &str = "HOOKSMITH_BENCH_PINNED";
/// (internal) The schema a PostgreSQL target's server runs in.
const SCHEMA: &str = "HOOKSMITH_BENCH_SCHEMA";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Sub::Serve { target }) => return serve(target),
        Some(Sub::Drive {
            addr,
            connections,
            size,
            seconds,
        }) => return drive(addr, connections, size, seconds),
        None => {}
    }
    let pinned = std::env::var_os(PINNED).is_some();
    let pin = pinned || (!args.no_pin && cpus() >= 2 && has_taskset());
    if pin && !pinned {
        // The load generator runs on CPU 1; servers are started on CPU 0.
        let status = Command::new("taskset")
            .args(["-c", "1"])
            .arg(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env(PINNED, "1")
            .status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(compare(&args, pin))
}

async fn compare(args: &Args, pin: bool) -> anyhow::Result<()> {
    if args.postgres.is_none() && args.targets.iter().any(|t| t.postgres()) {
        anyhow::bail!(
            "the postgres targets need a database: --postgres URL or HOOKSMITH_BENCH_POSTGRES_URL"
        );
    }
    let cells: Vec<Cell> = args
        .sizes
        .iter()
        .flat_map(|size| {
            args.connections.iter().map(move |&connections| Cell {
                body_len: size.body().len(),
                connections,
            })
        })
        .collect();
    println!(
        "hooksmith-bench: {} run(s) × {} cell(s) × {} target(s), {:.1} s each after {:.1} s warm-up; {}",
        args.runs,
        cells.len(),
        args.targets.len(),
        args.seconds,
        args.warmup,
        if pin {
            "server on CPU 0, load generator on CPU 1"
        } else {
            "not pinned"
        }
    );
    let mut results: Vec<Measurement> = Vec::new();
    for run in 1..=args.runs {
        for cell in &cells {
            let body = if cell.body_len == SMALL.len() {
                SMALL
            } else {
                LARGE
            };
            let payload = Arc::new(Payload::new(body, SECRET));
            for &target in &args.targets {
                let m = measure(target, *cell, payload.clone(), args, pin, run).await?;
                println!("  run {run}: {}", m.line());
                results.push(m);
            }
        }
    }
    report::print(&results, &cells, &args.targets);
    Ok(())
}

/// One measurement: a fresh server, warm-up, the window, the server's figures, the server gone.
async fn measure(
    target: Target,
    cell: Cell,
    payload: Arc<Payload>,
    args: &Args,
    pin: bool,
    run: usize,
) -> anyhow::Result<Measurement> {
    let server = Server::start(target, pin, args.postgres.as_deref())?;
    let prefix = format!("{}-{run}-{}", std::process::id(), server.child.id());
    let load = load::Load::start(server.addr, cell.connections, payload, prefix).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let before = server.handled().await;
    let cpu_before = report::cpu_seconds();
    let sleeps_before = report::thread_sleeps();
    let server_before = report::process_cpu(server.child.id());
    load.count(true);
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    load.count(false);
    let server_after = report::process_cpu(server.child.id());
    let sleeps_after = report::thread_sleeps();
    let cpu_after = report::cpu_seconds();
    let after = server.handled().await;
    let window = load.finish().await?;
    let rss_kib = server.peak_rss_kib();
    server.stop().await;
    let deliveries = window.rate() * window.elapsed.as_secs_f64();
    Ok(Measurement {
        run,
        target,
        cell,
        rate: window.rate(),
        p50_ms: window.quantile_ms(0.50),
        p99_ms: window.quantile_ms(0.99),
        errors: window.errors,
        rss_kib,
        handled_rate: match (before, after) {
            (Some(b), Some(a)) => {
                Some((a.succeeded - b.succeeded) as f64 / window.elapsed.as_secs_f64())
            }
            _ => None,
        },
        backlog: after.map(|a| a.stored.saturating_sub(a.succeeded)),
        held: after.map(|a| a.stored),
        load_cpu: cpu_before
            .zip(cpu_after)
            .map(|(b, a)| (a - b) / window.elapsed.as_secs_f64()),
        server_us: report::per_delivery_us(server_before, server_after, deliveries),
        load_sleeps: report::sleeps_per_delivery(sleeps_before, sleeps_after, deliveries),
    })
}

/// A server process under test.
struct Server {
    child: Child,
    addr: std::net::SocketAddr,
    target: Target,
    db: Option<std::path::PathBuf>,
    /// The database and the schema of this run, for the PostgreSQL targets.
    schema: Option<(String, String)>,
}

/// Counters read from a hooksmith server's `/metrics`.
#[derive(Clone, Copy)]
pub(crate) struct Counters {
    /// Deliveries stored (acknowledged with 204 and handed to the workers).
    pub(crate) stored: u64,
    /// Handler runs that succeeded.
    pub(crate) succeeded: u64,
}

impl Server {
    fn start(target: Target, pin: bool, postgres: Option<&str>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut command = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let db = matches!(target, Target::Sqlite | Target::HandWrittenSqlite).then(|| {
            std::env::temp_dir().join(format!(
                "hooksmith-bench-{}-{}.db",
                std::process::id(),
                unique()
            ))
        });
        let schema = match postgres {
            Some(url) if target.postgres() => Some((
                url.to_owned(),
                format!("hooksmith_bench_{}_{}", std::process::id(), unique()),
            )),
            _ => None,
        };
        let store = match (&db, &schema) {
            (Some(path), _) => format!("sqlite:{}", path.display()),
            // The run's schema first on the search path of every connection.
            (None, Some((url, schema))) => format!(
                "{url}{}options=-c%20search_path%3D{schema}",
                if url.contains('?') { '&' } else { '?' }
            ),
            (None, None) => "memory".to_owned(),
        };
        let mut child = command
            .args(["serve", target.name()])
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .env("HOOKSMITH_STORE", store)
            .env(
                SCHEMA,
                schema.as_ref().map_or("", |(_, schema)| schema.as_str()),
            )
            .env_remove(PINNED)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{} did not start: {line:?}", target.name()))?;
        Ok(Self {
            child,
            addr,
            target,
            db,
            schema,
        })
    }

    async fn handled(&self) -> Option<Counters> {
        if matches!(
            self.target,
            Target::HandWritten
                | Target::HandWrittenHistory
                | Target::HandWrittenSqlite
                | Target::HandWrittenPostgres
        ) {
            return None;
        }
        let text = report::get(self.addr, "/metrics").await.ok()?;
        Some(report::counters(&text))
    }

    fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status.lines().find_map(|l| {
                    l.strip_prefix("VmHWM:")
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    async fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(db) = &self.db {
            remove_sqlite_files(db);
        }
        if let Some((url, schema)) = &self.schema {
            let dropped = async {
                let pool = sqlx::PgPool::connect(url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&pool)
                .await
            };
            if let Err(error) = dropped.await {
                eprintln!("  could not drop the run's schema {schema}: {error}");
            }
        }
    }
}

/// Deletes a SQLite database file with its WAL and shared-memory files, whichever exist.
pub(crate) fn remove_sqlite_files(db: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        let _ = std::fs::remove_file(path);
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The server side: binds a loopback port, prints it, serves until stdin closes.
fn serve(target: Target) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        let stdin_closed = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = String::new();
                while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
            })
            .await;
        };
        match target {
            Target::HandWritten => {
                axum::serve(listener, baseline::router(SECRET))
                    .with_graceful_shutdown(stdin_closed)
                    .await?;
            }
            Target::HandWrittenHistory => {
                axum::serve(listener, baseline::history_router(SECRET))
                    .with_graceful_shutdown(stdin_closed)
                    .await?;
            }
            Target::HandWrittenSqlite => {
                let store = std::env::var("HOOKSMITH_STORE").unwrap_or_default();
                let path = store
                    .strip_prefix("sqlite:")
                    .ok_or_else(|| anyhow::anyhow!("HOOKSMITH_STORE=sqlite:PATH is not set"))?;
                let router = baseline::durable_router(SECRET, std::path::Path::new(path)).await?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(stdin_closed)
                    .await?;
            }
            Target::HandWrittenPostgres => {
                let url = std::env::var("HOOKSMITH_STORE").unwrap_or_default();
                let schema = std::env::var(SCHEMA).unwrap_or_default();
                if !url.starts_with("postgres") || schema.is_empty() {
                    anyhow::bail!("HOOKSMITH_STORE=postgres://… and {SCHEMA} are not set");
                }
                let router = baseline::durable_router_postgres(SECRET, &url, &schema).await?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(stdin_closed)
                    .await?;
            }
            Target::Memory | Target::Sqlite | Target::Postgres => {
                let app = quickstart::builder()?.dev_secrets(true).build()?;
                app.serve_on(listener, stdin_closed).await?;
            }
        }
        anyhow::Ok(())
    })
}

/// Load on a running server, for profiling it; `GITHUB_WEBHOOK_SECRET` must be the bench's.
fn drive(
    addr: std::net::SocketAddr,
    connections: usize,
    size: Size,
    seconds: f64,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let payload = Arc::new(Payload::new(size.body(), SECRET));
        let load = load::Load::start(
            addr,
            connections,
            payload,
            format!("drive-{}-{}", std::process::id(), unique()),
        )
        .await?;
        let cpu_before = report::cpu_seconds();
        let sleeps_before = report::thread_sleeps();
        load.count(true);
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        load.count(false);
        let sleeps_after = report::thread_sleeps();
        let cpu_after = report::cpu_seconds();
        let window = load.finish().await?;
        let load_cpu = cpu_before
            .zip(cpu_after)
            .map_or(f64::NAN, |(b, a)| (a - b) / window.elapsed.as_secs_f64());
        let sleeps = report::sleeps_per_delivery(
            sleeps_before,
            sleeps_after,
            window.rate() * window.elapsed.as_secs_f64(),
        )
        .unwrap_or(f64::NAN);
        println!(
            "{:.0} req/s  p50 {:.2} ms  p99 {:.2} ms  errors {}  load generator {:.0}% CPU, {sleeps:.2} sleeps/req",
            window.rate(),
            window.quantile_ms(0.5),
            window.quantile_ms(0.99),
            window.errors,
            load_cpu * 100.0
        );
        println!(
            "latency ms: p90 {:.2}  p95 {:.2}  p99.9 {:.2}  max {:.2}",
            window.quantile_ms(0.9),
            window.quantile_ms(0.95),
            window.quantile_ms(0.999),
            window.quantile_ms(1.0),
        );
        anyhow::Ok(())
    })
}
