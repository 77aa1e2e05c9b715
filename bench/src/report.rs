//! Medians, ratios, budgets, and the table.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::{Counters, Target};

/// A payload size and a connection count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) body_len: usize,
    pub(crate) connections: usize,
}

/// One target in one cell in one run.
#[derive(Debug)]
pub(crate) struct Measurement {
    /// Which of the interleaved runs.
    pub(crate) run: usize,
    pub(crate) target: Target,
    pub(crate) cell: Cell,
    pub(crate) rate: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: u64,
    pub(crate) rss_kib: u64,
    /// Handler runs completed per second in the window (hooksmith only).
    pub(crate) handled_rate: Option<f64>,
    /// Deliveries stored but not yet handled when the window closed.
    pub(crate) backlog: Option<u64>,
    /// Deliveries the store holds (its history) when the window closed.
    pub(crate) held: Option<u64>,
    /// The share of its core the load generator used in the window: near 1, the generator and
    /// not the server may be what limits req/s.
    pub(crate) load_cpu: Option<f64>,
    /// The server's CPU time per delivery answered in the window, in µs of user and of system
    /// time (all its threads): where a difference in req/s comes from, the server's own code or
    /// the kernel's work for it.
    pub(crate) server_us: Option<(f64, f64)>,
    /// How often the load generator went to sleep, per delivery answered: each time, the server's
    /// next answer to reach its socket has to wake it, and the server's core pays for that
    /// wake-up (on a virtual machine, an interrupt sent to the other core). A server that answers
    /// more slowly finds the generator asleep more often, so this part of the kernel's time per
    /// delivery grows with the server's own.
    pub(crate) load_sleeps: Option<f64>,
}

impl Measurement {
    pub(crate) fn line(&self) -> String {
        let mut line = format!(
            "{:>6} B  {:>3} conns  {:<12} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  RSS {:>7.1} MiB",
            self.cell.body_len,
            self.cell.connections,
            self.target.name(),
            self.rate,
            self.p50_ms,
            self.p99_ms,
            self.rss_kib as f64 / 1024.0,
        );
        if let (Some(handled), Some(backlog)) = (self.handled_rate, self.backlog) {
            line.push_str(&format!("  handled {handled:>8.0}/s  backlog {backlog}"));
        }
        if let Some((user, system)) = self.server_us {
            line.push_str(&format!("  server {user:.2}+{system:.2} µs/req"));
        }
        if let Some(cpu) = self.load_cpu {
            line.push_str(&format!("  load generator {:.0}% CPU", cpu * 100.0));
        }
        if let Some(sleeps) = self.load_sleeps {
            line.push_str(&format!(", {sleeps:.2} sleeps/req"));
        }
        if self.errors > 0 {
            line.push_str(&format!("  ERRORS {}", self.errors));
        }
        line
    }
}

/// The load generator's share of its core above which the report says it may be the limit.
const SATURATED: f64 = 0.95;

/// CPU seconds this process has used, from `/proc/self/stat` (Linux; `None` elsewhere).
pub(crate) fn cpu_seconds() -> Option<f64> {
    process_cpu(std::process::id()).map(|(user, system)| user + system)
}

/// User and system CPU seconds process `pid` has used, all its threads, from `/proc/PID/stat`
/// (Linux; `None` elsewhere, or once the process is gone).
pub(crate) fn process_cpu(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces: the
    // third field of the line is the first here; user and system time are the 14th and 15th,
    // in clock ticks of 1/100 s (the kernel's `USER_HZ`).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let seconds = |i: usize| Some(fields.get(i - 3)?.parse::<u64>().ok()? as f64 / 100.0);
    Some((seconds(14)?, seconds(15)?))
}

/// How many times the calling thread has gone to sleep waiting — for a socket, a timer — since
/// it started: its voluntary context switches, from `/proc/thread-self/status` (Linux; `None`
/// elsewhere). The load generator runs on one thread, the one that measures.
pub(crate) fn thread_sleeps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

/// The load generator's sleeps per delivery: the difference between two readings of
/// [`thread_sleeps`] over `deliveries`; `None` without both readings or without deliveries.
pub(crate) fn sleeps_per_delivery(
    before: Option<u64>,
    after: Option<u64>,
    deliveries: f64,
) -> Option<f64> {
    let (before, after) = before.zip(after)?;
    (deliveries >= 1.0).then(|| after.saturating_sub(before) as f64 / deliveries)
}

/// CPU time per delivery, in µs of user and of system time: the difference between two readings
/// of [`process_cpu`] over `deliveries`; `None` without both readings or without deliveries.
pub(crate) fn per_delivery_us(
    before: Option<(f64, f64)>,
    after: Option<(f64, f64)>,
    deliveries: f64,
) -> Option<(f64, f64)> {
    let ((user0, system0), (user1, system1)) = before.zip(after)?;
    (deliveries >= 1.0).then(|| {
        (
            (user1 - user0) / deliveries * 1e6,
            (system1 - system0) / deliveries * 1e6,
        )
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The medians of one target in one cell.
struct Summary {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_kib: f64,
    handled_rate: Option<f64>,
    backlog: Option<f64>,
    held: Option<f64>,
    server_us: Option<(f64, f64)>,
    load_sleeps: Option<f64>,
    errors: u64,
}

fn summarise(results: &[Measurement], cell: Cell, target: Target) -> Option<Summary> {
    let runs: Vec<&Measurement> = results
        .iter()
        .filter(|m| m.cell == cell && m.target == target)
        .collect();
    if runs.is_empty() {
        return None;
    }
    let of = |f: &dyn Fn(&Measurement) -> f64| median(runs.iter().map(|m| f(m)).collect());
    let maybe = |f: &dyn Fn(&Measurement) -> Option<f64>| {
        let values: Vec<f64> = runs.iter().filter_map(|m| f(m)).collect();
        (!values.is_empty()).then(|| median(values))
    };
    Some(Summary {
        rate: of(&|m| m.rate),
        p50_ms: of(&|m| m.p50_ms),
        p99_ms: of(&|m| m.p99_ms),
        rss_kib: of(&|m| m.rss_kib as f64),
        handled_rate: maybe(&|m| m.handled_rate),
        backlog: maybe(&|m| m.backlog.map(|b| b as f64)),
        held: maybe(&|m| m.held.map(|h| h as f64)),
        server_us: maybe(&|m| m.server_us.map(|(user, _)| user))
            .zip(maybe(&|m| m.server_us.map(|(_, system)| system))),
        load_sleeps: maybe(&|m| m.load_sleeps),
        errors: runs.iter().map(|m| m.errors).sum(),
    })
}

/// The median over runs of `target`'s figure ÷ `base`'s in the same run. The two were measured
/// seconds apart, so a machine that drifts between runs (a busy neighbour, a slower minute) moves
/// both: the ratio of medians would mix one run's hooksmith with another's baseline.
fn paired(
    results: &[Measurement],
    cell: Cell,
    target: Target,
    base: Target,
    figure: impl Fn(&Measurement) -> f64,
) -> Option<f64> {
    let ratios = per_run(results, cell, target, base, figure);
    (!ratios.is_empty()).then(|| median(ratios))
}

/// Each run's own ratio of `target`'s figure to `base`'s, in the order of the runs.
fn per_run(
    results: &[Measurement],
    cell: Cell,
    target: Target,
    base: Target,
    figure: impl Fn(&Measurement) -> f64,
) -> Vec<f64> {
    results
        .iter()
        .filter(|m| m.cell == cell && m.target == target)
        .filter_map(|m| {
            let b = results
                .iter()
                .find(|b| b.cell == cell && b.target == base && b.run == m.run)?;
            Some(figure(m) / figure(b))
        })
        .collect()
}

/// The lowest and highest of the runs' ratios, as ` (runs 0.82–0.97×)`, when there are several:
/// whether a budget sits inside the runs' spread, which one run on a shared machine can move by
/// more than a budget's margin, is part of reading its check.
fn spread(ratios: &[f64]) -> String {
    if ratios.len() < 2 {
        return String::new();
    }
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" (runs {low:.2}–{high:.2}×)")
}

/// Prints the table of medians, the budgets and the summary line.
pub(crate) fn print(results: &[Measurement], cells: &[Cell], targets: &[Target]) {
    println!();
    println!(
        "| payload | conns | target | req/s | p50 ms | p99 ms | peak RSS MiB | handled/s | backlog | server µs/req user+sys | load generator sleeps/req | req/s × hand-written | p99 × hand-written |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut checks: Vec<(String, bool)> = Vec::new();
    let mut ratios: Vec<String> = Vec::new();
    for &cell in cells {
        let base = summarise(results, cell, Target::HandWritten);
        for &target in targets {
            let Some(s) = summarise(results, cell, target) else {
                continue;
            };
            let vs_hand = |figure: fn(&Measurement) -> f64| {
                paired(results, cell, target, Target::HandWritten, figure)
            };
            let vs =
                |ratio: Option<f64>| ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
            println!(
                "| {} B | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} | {} | {} |",
                cell.body_len,
                cell.connections,
                target.name(),
                s.rate,
                s.p50_ms,
                s.p99_ms,
                s.rss_kib / 1024.0,
                s.handled_rate
                    .map_or_else(|| "inline".to_owned(), |h| format!("{h:.0}")),
                s.backlog
                    .map_or_else(|| "—".to_owned(), |b| format!("{b:.0}")),
                s.server_us.map_or_else(
                    || "—".to_owned(),
                    |(user, system)| format!("{user:.2} + {system:.2}")
                ),
                s.load_sleeps
                    .map_or_else(|| "—".to_owned(), |n| format!("{n:.2}")),
                vs(vs_hand(|m| m.rate)),
                vs(vs_hand(|m| m.p99_ms)),
            );
            if s.errors > 0 {
                checks.push((
                    format!(
                        "{} {} B × {}: no errors",
                        target.name(),
                        cell.body_len,
                        cell.connections
                    ),
                    false,
                ));
            }
            // Each store against the hand-written receiver doing what it keeps the same way: the
            // memory store's history, the durable stores' commits.
            let like_for_like = match target {
                Target::Memory => Some(Target::HandWrittenHistory),
                Target::Sqlite => Some(Target::HandWrittenSqlite),
                Target::Postgres => Some(Target::HandWrittenPostgres),
                _ => None,
            };
            if let Some(reference) = like_for_like
                && let Some(ratio) = paired(results, cell, target, reference, |m| m.rate)
            {
                ratios.push(format!(
                    "{}÷{} {}B×{} {ratio:.2}×",
                    target.name(),
                    reference.name(),
                    cell.body_len,
                    cell.connections,
                ));
            }
            let Some(base) = &base else { continue };
            if target == Target::HandWritten {
                continue;
            }
            let ratio = vs_hand(|m| m.rate).unwrap_or(f64::NAN);
            ratios.push(format!(
                "{} {}B×{} {:.2}×",
                target.name(),
                cell.body_len,
                cell.connections,
                ratio
            ));
            if cell.connections != 64 {
                continue;
            }
            let label = |what: &str| format!("{} {} B × 64: {what}", target.name(), cell.body_len);
            let runs = |figure: fn(&Measurement) -> f64| {
                spread(&per_run(results, cell, target, Target::HandWritten, figure))
            };
            let keeps_up = s.handled_rate.is_some_and(|h| h >= 0.95 * s.rate);
            match target {
                Target::Memory => {
                    checks.push((
                        label(&format!(
                            "throughput {ratio:.2}× ≥ 0.90×{}",
                            runs(|m| m.rate)
                        )),
                        ratio >= 0.9,
                    ));
                    let p99 = vs_hand(|m| m.p99_ms).unwrap_or(f64::NAN);
                    checks.push((
                        label(&format!("p99 {p99:.2}× ≤ 1.25×{}", runs(|m| m.p99_ms))),
                        p99 <= 1.25,
                    ));
                    // The memory store keeps the last finished deliveries, bodies included, up
                    // to a number and a number of bytes.
                    let kept = s
                        .held
                        .unwrap_or(0.0)
                        .min(hooksmith::store::MemoryStore::DEFAULT_KEEP as f64);
                    let history_kib = (kept * cell.body_len as f64)
                        .min(hooksmith::store::MemoryStore::DEFAULT_KEEP_BYTES as f64)
                        / 1024.0;
                    let allowed = 1.5 * base.rss_kib + history_kib;
                    checks.push((
                        label(&format!(
                            "peak RSS {:.1} MiB ≤ 1.5 × {:.1} MiB + history {:.1} MiB",
                            s.rss_kib / 1024.0,
                            base.rss_kib / 1024.0,
                            history_kib / 1024.0
                        )),
                        s.rss_kib <= allowed,
                    ));
                    checks.push((
                        label(&format!(
                            "handlers keep up ({:.0}/s for {:.0} acks/s)",
                            s.handled_rate.unwrap_or(0.0),
                            s.rate
                        )),
                        keeps_up,
                    ));
                }
                Target::Sqlite if cell.body_len < 2048 => {
                    checks.push((
                        label(&format!(
                            "throughput {ratio:.2}× ≥ 0.50×{}",
                            runs(|m| m.rate)
                        )),
                        ratio >= 0.5,
                    ));
                    checks.push((
                        label(&format!(
                            "handlers keep up ({:.0}/s for {:.0} acks/s)",
                            s.handled_rate.unwrap_or(0.0),
                            s.rate
                        )),
                        keeps_up,
                    ));
                }
                _ => {}
            }
        }
    }
    println!();
    for m in results
        .iter()
        .filter(|m| m.load_cpu.is_some_and(|c| c >= SATURATED))
    {
        println!(
            "  note: the load generator used {:.0}% of its core driving {} {} B × {}: req/s there may be the generator's limit, not the server's",
            m.load_cpu.unwrap_or(0.0) * 100.0,
            m.target.name(),
            m.cell.body_len,
            m.cell.connections
        );
    }
    for (what, ok) in &checks {
        println!("  {} {what}", if *ok { "✓" } else { "✗" });
    }
    let met = checks.iter().filter(|(_, ok)| *ok).count();
    println!(
        "summary: {} | budgets met {met}/{}",
        ratios.join(", "),
        checks.len()
    );
}

/// `GET path` on a fresh connection; the body as text.
pub(crate) async fn get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::new())?;
    let response = sender.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Deliveries stored and handler runs succeeded, from hooksmith's Prometheus text.
pub(crate) fn counters(metrics: &str) -> Counters {
    let sum = |name: &str, label: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    };
    Counters {
        stored: sum("hooksmith_requests_total{", "outcome=\"stored\""),
        succeeded: sum("hooksmith_handler_runs_total{", "result=\"succeeded\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_across_label_sets() {
        let text = "\
# TYPE hooksmith_requests_total counter
hooksmith_requests_total{endpoint=\"/a\",status=\"204\",outcome=\"stored\"} 7
hooksmith_requests_total{endpoint=\"/b\",status=\"204\",outcome=\"stored\"} 5
hooksmith_requests_total{endpoint=\"/a\",status=\"204\",outcome=\"duplicate\"} 100
hooksmith_handler_runs_total{handler=\"h\",result=\"succeeded\"} 11
hooksmith_handler_runs_total{handler=\"h\",result=\"retrying\"} 3
";
        let c = counters(text);
        assert_eq!((c.stored, c.succeeded), (12, 11));
    }

    #[test]
    fn this_process_cpu_time_is_read_and_grows() {
        let before = cpu_seconds().expect("/proc/self/stat on Linux");
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = cpu_seconds().expect("/proc/self/stat on Linux");
        assert!(after - before >= 0.02, "{before} → {after}");
    }

    /// A slow minute that falls on one run's baseline and on another's hooksmith must not
    /// show as a slower hooksmith: ratios are taken within each run, then their median.
    #[test]
    fn ratios_pair_each_run_with_its_own_baseline() {
        let cell = Cell {
            body_len: 999,
            connections: 64,
        };
        let measured = |run, target, rate| Measurement {
            run,
            target,
            cell,
            rate,
            p50_ms: 1.0,
            p99_ms: 1.0,
            errors: 0,
            rss_kib: 0,
            handled_rate: None,
            backlog: None,
            held: None,
            load_cpu: None,
            server_us: None,
            load_sleeps: None,
        };
        let results = [
            measured(1, Target::HandWritten, 100.0),
            measured(1, Target::Memory, 50.0),
            measured(2, Target::HandWritten, 60.0),
            measured(2, Target::Memory, 54.0),
            measured(3, Target::HandWritten, 70.0),
            measured(3, Target::Memory, 63.0),
        ];
        let ratio = paired(&results, cell, Target::Memory, Target::HandWritten, |m| {
            m.rate
        });
        assert_eq!(ratio.map(|r| (r * 100.0).round()), Some(90.0));
        // The ratio of the medians (54 ÷ 70) would have said 0.77×.
        // A budget's check shows the runs' spread beside the median.
        let ratios = per_run(&results, cell, Target::Memory, Target::HandWritten, |m| {
            m.rate
        });
        assert_eq!(spread(&ratios), " (runs 0.50–0.90×)");
        assert_eq!(spread(&ratios[..1]), "", "one run has no spread");
    }

    /// The server's CPU per delivery is read from its own `/proc/PID/stat`, user and system
    /// apart: a process that spins shows user time, and a process that is gone shows nothing.
    #[test]
    fn a_process_cpu_time_is_read_by_its_pid() {
        let pid = std::process::id();
        let (user, system) = process_cpu(pid).expect("/proc/PID/stat on Linux");
        // Spins until 20 ms of user time show, however busy the machine. Spinning is user time:
        // the system time the stat reads cost stays well below it, which a swap of the two
        // fields would turn around.
        let spin = std::time::Instant::now();
        let (user_after, system_after) = loop {
            let mut x = 0u64;
            for _ in 0..10_000_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            let now = process_cpu(pid).expect("/proc/PID/stat on Linux");
            if now.0 - user >= 0.02 {
                break now;
            }
            assert!(
                spin.elapsed() < std::time::Duration::from_secs(20),
                "user time stayed at {user} → {now:?}"
            );
        };
        assert!(system_after >= system, "system {system} → {system_after}");
        assert!(
            user_after - user > system_after - system,
            "spinning shows as user time: user {user} → {user_after}, system {system} → {system_after}"
        );
        let mut gone = std::process::Command::new("true")
            .spawn()
            .expect("`true` runs");
        let gone_pid = gone.id();
        gone.wait().expect("`true` exits");
        assert_eq!(process_cpu(gone_pid), None, "a reaped process has no stat");
    }

    /// The load generator's sleeps are the measuring thread's own voluntary context switches:
    /// each sleep of this thread adds one, however busy the machine (the process's figure, its
    /// main thread's, would not move: tests run on threads of their own).
    #[test]
    fn this_threads_sleeps_are_counted() {
        let before = thread_sleeps().expect("/proc/thread-self/status on Linux");
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let after = thread_sleeps().expect("/proc/thread-self/status on Linux");
        assert!(after >= before + 5, "five sleeps: {before} → {after}");
    }

    #[test]
    fn sleeps_per_delivery_are_the_difference_over_the_deliveries() {
        assert_eq!(
            sleeps_per_delivery(Some(100), Some(350), 1000.0),
            Some(0.25)
        );
        assert_eq!(sleeps_per_delivery(Some(100), None, 1000.0), None);
        assert_eq!(sleeps_per_delivery(Some(100), Some(100), 0.0), None);
    }

    #[test]
    fn cpu_per_delivery_is_the_difference_over_the_deliveries() {
        let per = per_delivery_us(Some((1.0, 2.0)), Some((1.5, 2.25)), 100_000.0);
        let rounded = per.map(|(u, s)| ((u * 100.0).round(), (s * 100.0).round()));
        assert_eq!(rounded, Some((500.0, 250.0)), "5 µs user and 2.5 µs system");
        assert_eq!(per_delivery_us(Some((1.0, 2.0)), None, 100.0), None);
        assert_eq!(
            per_delivery_us(Some((1.0, 2.0)), Some((1.0, 2.0)), 0.0),
            None
        );
    }

    #[test]
    fn medians_take_the_middle_run() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert!(median(Vec::new()).is_nan());
    }
}
