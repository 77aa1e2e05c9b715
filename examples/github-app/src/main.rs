//! A GitHub app with typed payloads: pull requests by action, pushes to the default branch only,
//! issue comments that mention the bot. Handlers borrow nothing from each other and take only
//! what they need.
//!
//! Run with `GITHUB_WEBHOOK_SECRET=… cargo run -p example-github-app`.

use hooksmith::{Delivery, Json, webhook};
use serde::Deserialize;

/// The parts of a `pull_request` delivery this app reads.
#[derive(Debug, Deserialize)]
pub struct PullRequestEvent {
    /// `opened`, `closed`, `synchronize`, ...
    pub action: String,
    /// The pull request.
    pub pull_request: PullRequest,
}

/// A pull request.
#[derive(Debug, Deserialize)]
pub struct PullRequest {
    /// Its number.
    pub number: u64,
    /// Whether it was merged (on `closed`).
    #[serde(default)]
    pub merged: bool,
}

/// The parts of a `push` delivery this app reads.
#[derive(Debug, Deserialize)]
pub struct PushEvent {
    /// `refs/heads/main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The commits pushed.
    #[serde(default)]
    pub commits: Vec<serde_json::Value>,
}

/// A pull request opened or updated: run the checks.
#[webhook(path = "/github", sig = "github", event = ["pull_request.opened", "pull_request.synchronize"])]
pub async fn check_pull_request(event: Json<PullRequestEvent>) -> hooksmith::Result {
    tracing::info!(number = event.pull_request.number, action = %event.action, "checking");
    Ok(())
}

// ANCHOR: filters
/// A merged pull request: the filter reads a nested boolean.
#[webhook(path = "/github", sig = "github", event = "pull_request.closed", filter("pull_request.merged" = true))]
pub async fn merged(event: Json<PullRequestEvent>) -> hooksmith::Result {
    tracing::info!(number = event.pull_request.number, "merged");
    Ok(())
}

/// Pushes to the default branch only.
#[webhook(path = "/github", sig = "github", event = "push", filter("ref" = "refs/heads/main"))]
pub async fn deploy(push: Json<PushEvent>, delivery: Delivery) -> hooksmith::Result {
    tracing::info!(commits = push.commits.len(), git_ref = %push.git_ref, id = delivery.id(), "deploying");
    Ok(())
}

/// Comments that mention the bot, matched with a regex checked at compile time.
#[webhook(path = "/github", sig = "github", event = "issue_comment.created", filter("comment.body" = regex("@hooksmith-bot\\b")))]
pub async fn mentioned(comment: serde_json::Value) -> hooksmith::Result {
    tracing::info!(issue = %comment["issue"]["number"], "mentioned");
    Ok(())
}
// ANCHOR_END: filters

/// The app, with its handlers registered explicitly.
pub fn app() -> Result<hooksmith::AppBuilder, hooksmith::Error> {
    hooksmith::App::builder()
        .only_explicit_handlers()
        .handler::<check_pull_request>()
        .handler::<merged>()
        .handler::<deploy>()
        .handler::<mentioned>()
        .from_env()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    app()?.build()?.serve().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use hooksmith::store::{JobStatus, MemoryStore};
    use hooksmith::testing::TestClient;
    use serde_json::json;

    fn client() -> TestClient {
        let app = super::app()
            .unwrap()
            .store(MemoryStore::new())
            .var("GITHUB_WEBHOOK_SECRET", "test")
            .build()
            .unwrap();
        TestClient::new(app)
    }

    async fn handlers(client: &TestClient, event: &str, body: serde_json::Value) -> Vec<String> {
        let response = client.post("/github").event(event).json(&body).send().await;
        assert_eq!(response.status(), 204);
        let outcome = response.outcome().await.unwrap();
        assert!(
            outcome
                .handlers
                .iter()
                .all(|h| h.status == JobStatus::Succeeded),
            "{outcome:?}"
        );
        outcome.handlers.iter().map(|h| h.name.clone()).collect()
    }

    #[tokio::test]
    async fn each_event_reaches_its_handler() {
        let c = client();
        let pr = |action: &str, merged: bool| json!({"action": action, "pull_request": {"number": 1, "merged": merged}});
        assert_eq!(
            handlers(&c, "pull_request", pr("opened", false)).await,
            ["check_pull_request"]
        );
        assert_eq!(
            handlers(&c, "pull_request", pr("synchronize", false)).await,
            ["check_pull_request"]
        );
        assert_eq!(
            handlers(&c, "pull_request", pr("closed", true)).await,
            ["merged"]
        );
        assert!(
            handlers(&c, "pull_request", pr("closed", false))
                .await
                .is_empty()
        );
        assert_eq!(
            handlers(
                &c,
                "push",
                json!({"ref": "refs/heads/main", "commits": [{}]})
            )
            .await,
            ["deploy"]
        );
        assert!(
            handlers(&c, "push", json!({"ref": "refs/heads/dev"}))
                .await
                .is_empty()
        );
        let comment = |body: &str| json!({"action": "created", "comment": {"body": body}, "issue": {"number": 3}});
        assert_eq!(
            handlers(&c, "issue_comment", comment("hi @hooksmith-bot please")).await,
            ["mentioned"]
        );
        assert!(
            handlers(&c, "issue_comment", comment("hi @hooksmith-botty"))
                .await
                .is_empty()
        );
    }
}
