//! A GitHub receiver whose handler records an effect per delivery id in a database of its own,
//! idempotently, as a careful user writes it: the process the crash-loop and multi-instance tests
//! start, kill with SIGKILL, and start again.
//!
//! Environment: the usual `HOOKSMITH_*` variables and `GITHUB_WEBHOOK_SECRET`, plus
//! `EFFECTS_URL` (`sqlite:PATH` or `postgres://…`), `EFFECTS_SCHEME` (PostgreSQL schema, optional),
//! `HANDLER_SLEEP_MS` (how long each handler run takes) and `INSTANCE` (a name stored with each
//! run).

use std::time::Duration;

use hooksmith::{Delivery, State, webhook};
use sqlx::AnyPool;

#[derive(Clone)]
struct Effects {
    pool: AnyPool,
    sleep: Duration,
    instance: String,
}

#[webhook(
    path = "/hooks/github",
    sig = "github",
    event = "push",
    retry(max = 10, backoff = "100ms", max_delay = "1s")
)]
async fn record_effect(delivery: Delivery, effects: State<Effects>) -> hooksmith::Result {
    tokio::time::sleep(effects.sleep).await;
    // Every run is logged; the effect itself is written once per delivery id.
    sqlx::query("INSERT INTO runs (delivery_id, instance) VALUES ($1, $2)")
        .bind(delivery.id())
        .bind(&effects.instance)
        .execute(&effects.pool)
        .await?;
    sqlx::query(
        "INSERT INTO effects (delivery_id) VALUES ($1) ON CONFLICT (delivery_id) DO NOTHING",
    )
    .bind(delivery.id())
    .execute(&effects.pool)
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let url = std::env::var("EFFECTS_URL")?;
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await?;
    if let Ok(schema) = std::env::var("EFFECTS_SCHEMA") {
        // Effects live beside the store's tables, in the test's own schema.
        let pool_opts = format!("{url}?options=-c%20search_path%3D{schema}");
        drop(pool);
        return run(sqlx::any::AnyPoolOptions::new()
            .max_connections(8)
            .connect(&pool_opts)
            .await?)
        .await;
    }
    run(pool).await
}

async fn run(pool: AnyPool) -> anyhow::Result<()> {
    for statement in [
        "CREATE TABLE IF NOT EXISTS effects (delivery_id TEXT PRIMARY KEY)",
        "CREATE TABLE IF NOT EXISTS runs (delivery_id TEXT NOT NULL, instance TEXT NOT NULL)",
    ] {
        // Instances starting together race on CREATE TABLE IF NOT EXISTS in PostgreSQL; the
        // loser's error is harmless, so try again.
        for attempt in 0.. {
            match sqlx::query(statement).execute(&pool).await {
                Ok(_) => break,
                Err(_) if attempt < 5 => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(error) => return Err(error.into()),
            }
        }
    }
    let effects = Effects {
        pool,
        sleep: Duration::from_millis(
            std::env::var("HANDLER_SLEEP_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ),
        instance: std::env::var("INSTANCE").unwrap_or_default(),
    };
    let app = hooksmith::App::builder()
        .handler::<record_effect>()
        .state(effects)
        .from_env()?
        .build()?;
    app.serve().await?;
    Ok(())
}
