//! Metrics do not hold memory when nobody scrapes `/metrics`: histogram samples are folded into
//! their buckets in the background. (Its own test binary: it reads this process's RSS.)

use std::time::Duration;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

#[test]
fn unscraped_histograms_do_not_grow_without_bound() {
    // Building an app installs hooksmith's Prometheus recorder (the process has none).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _app = runtime.block_on(async {
        hooksmith::App::builder()
            .store(hooksmith::store::MemoryStore::new())
            .build()
            .expect("an app with no endpoints")
    });
    let histogram = metrics::histogram!("hooksmith_test_unscraped_seconds");
    let before = rss_mib();
    // Eight million samples over about nine seconds: 120 MiB or more if they were all kept, a
    // few seconds' worth when they are folded as they come.
    for _ in 0..8 {
        for i in 0..1_000_000u32 {
            histogram.record(f64::from(i % 1000) / 1e6);
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
    let grown = rss_mib() - before;
    eprintln!("RSS grew by {grown:.1} MiB");
    assert!(
        grown < 48.0,
        "RSS grew by {grown:.1} MiB for samples nobody scraped"
    );
}
