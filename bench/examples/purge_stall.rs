//! How long deliveries wait while the memory store purges its history and keys.
//!
//! ```sh
//! cargo run --release -p hooksmith-bench --example purge_stall            # a million keys
//! cargo run --release -p hooksmith-bench --example purge_stall -- 200000  # fewer
//! ```
//!
//! On one thread, as a server with one worker runs: a purge is spawned while a task keeps
//! storing deliveries, and the longest gap between two of them is printed with the purge's own
//! time. Nothing is old enough to go, so every purge walks everything and the rounds compare.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hooksmith::store::{HeaderList, MemoryStore, NewDelivery, Retention, Store};

fn delivery(n: u64) -> NewDelivery {
    NewDelivery {
        key: format!("github:{n:032x}"),
        endpoint: "/hooks/github".to_owned(),
        connection: None,
        event: "pull_request".to_owned(),
        delivery_id: format!("{n:032x}"),
        headers: HeaderList::new(),
        body: bytes::Bytes::from_static(b"{}"),
        received_at_ms: 1_000,
        jobs: Vec::new(),
    }
}

fn main() -> anyhow::Result<()> {
    let keys: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store = Arc::new(MemoryStore::new());
        for n in 0..keys {
            store.ingest(delivery(n)).await?;
        }
        let mut n = keys;
        for _ in 0..5 {
            let purging = tokio::spawn({
                let store = store.clone();
                async move {
                    let started = Instant::now();
                    let nothing_old = Retention {
                        history_before_ms: 0,
                        keep_at_most: None,
                        keys_before_ms: 0,
                    };
                    let purged = store.purge(nothing_old).await;
                    (started.elapsed(), purged)
                }
            });
            let (mut stored, mut longest) = (0, Duration::ZERO);
            let mut last = Instant::now();
            while !purging.is_finished() {
                tokio::task::yield_now().await;
                longest = longest.max(last.elapsed());
                n += 1;
                store.ingest(delivery(n)).await?;
                stored += 1;
                last = Instant::now();
            }
            let (took, purged) = purging.await?;
            purged?;
            println!(
                "{keys} keys: purge {took:.2?}; meanwhile {stored} deliveries stored, \
                 the longest wait between two {longest:.2?}"
            );
        }
        Ok(())
    })
}
