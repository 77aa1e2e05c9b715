//! `hooksmith deliveries|dead|connections`: the admin API of a running app, as tables on a
//! terminal or JSON with `--json`.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::Subcommand;
use http::{HeaderValue, Method, header};
use serde_json::Value;

use crate::client;
use crate::output::{Style, table};

/// Where the admin API is and how to authenticate.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The app's base URL.
    #[arg(
        long,
        env = "HOOKSMITH_ADMIN_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    admin_url: String,
    /// The admin token (the app's HOOKSMITH_ADMIN_TOKEN).
    #[arg(long, env = "HOOKSMITH_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Deliveries {
    /// Newest first.
    List {
        #[command(flatten)]
        target: Target,
        /// Only this endpoint path.
        #[arg(long)]
        endpoint: Option<String>,
        /// Only this status: received, dispatched, acknowledged, unhandled, dead.
        #[arg(long)]
        status: Option<String>,
        /// Only this event.
        #[arg(long)]
        event: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// One delivery with its headers (secrets redacted) and body.
    Show {
        #[command(flatten)]
        target: Target,
        /// The delivery's id (the first column of `list`).
        id: i64,
    },
    /// Run its handlers again now.
    Replay {
        #[command(flatten)]
        target: Target,
        /// The delivery's id.
        id: i64,
        /// Replay even though every handler succeeded.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Dead {
    /// Deliveries with a dead handler job.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Put every dead job back in the queue with a fresh retry budget.
    Replay {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum Connections {
    /// Every connection (secrets are never shown).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Add a connection for `{connection}` endpoints.
    Create {
        #[command(flatten)]
        target: Target,
        /// Its name in the path.
        #[arg(long)]
        name: String,
        /// The scheme (`github`, `stripe`, ...), which must be the endpoint's.
        #[arg(long = "type")]
        kind: String,
        /// Its signing secret.
        #[arg(long, env = "HOOKSMITH_CONNECTION_SECRET", hide_env_values = true)]
        secret: String,
        /// The signature header, for generic HMAC schemes.
        #[arg(long)]
        signature_header: Option<String>,
        /// The header holding the delivery id.
        #[arg(long)]
        nonce_header: Option<String>,
    },
    /// Make a new secret the newest; the previous one keeps verifying until the next rotation.
    Rotate {
        #[command(flatten)]
        target: Target,
        /// The connection.
        name: String,
        /// The new secret.
        #[arg(long, env = "HOOKSMITH_CONNECTION_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// Remove a connection.
    Delete {
        #[command(flatten)]
        target: Target,
        /// The connection.
        name: String,
    },
}

impl Target {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let Some(token) = &self.token else {
            bail!("set HOOKSMITH_ADMIN_TOKEN (or pass --token) to the app's admin token");
        };
        let mut headers = vec![(
            header::AUTHORIZATION,
            HeaderValue::try_from(format!("Bearer {token}"))
                .context("the token is not a valid header value")?,
        )];
        if body.is_some() {
            headers.push((
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ));
        }
        let url = format!("{}{path}", self.admin_url.trim_end_matches('/'));
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let reply = client::request(method, &url, &headers, body).await?;
        match reply.status.as_u16() {
            401 => bail!("the admin API refused the token (401): check HOOKSMITH_ADMIN_TOKEN"),
            404 if path.starts_with("/admin/deliveries")
                && !path.contains("/admin/deliveries/") =>
            {
                bail!(
                    "no admin API at {}: is HOOKSMITH_ADMIN_TOKEN set for the app?",
                    self.admin_url
                )
            }
            _ => Ok((reply.status, reply.body)),
        }
    }

    /// Prints the answer as JSON, or with `render` on success; non-2xx answers exit 1.
    fn print(
        &self,
        status: http::StatusCode,
        body: &Bytes,
        render: impl FnOnce(&Value) -> String,
    ) -> ExitCode {
        if !status.is_success() {
            eprintln!(
                "{} {status}: {}",
                Style::stderr().red("error:"),
                String::from_utf8_lossy(body).trim_end()
            );
            return ExitCode::FAILURE;
        }
        let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        } else {
            println!("{}", render(&value));
        }
        ExitCode::SUCCESS
    }
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn deliveries_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let handlers = d["handlers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    format!(
                        "{}:{}/{}",
                        text(&h["name"]),
                        text(&h["status"]),
                        h["attempts"]
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                d["id"].to_string(),
                text(&d["received_at"]),
                text(&d["endpoint"]),
                text(&d["event"]),
                text(&d["delivery_id"]),
                text(&d["status"]),
                handlers,
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no deliveries".into();
    }
    table(
        &[
            "ID", "RECEIVED", "ENDPOINT", "EVENT", "DELIVERY", "STATUS", "HANDLERS",
        ],
        &rows,
    )
}

pub(crate) async fn deliveries(command: Deliveries) -> anyhow::Result<ExitCode> {
    match command {
        Deliveries::List {
            target,
            endpoint,
            status,
            event,
            limit,
        } => {
            let mut query = format!("/admin/deliveries?limit={limit}");
            for (key, value) in [("endpoint", endpoint), ("status", status), ("event", event)] {
                if let Some(value) = value {
                    query.push_str(&format!("&{key}={}", encode(&value)));
                }
            }
            let (status, body) = target.call(Method::GET, &query, None).await?;
            Ok(target.print(status, &body, deliveries_table))
        }
        Deliveries::Show { target, id } => {
            let (status, body) = target
                .call(Method::GET, &format!("/admin/deliveries/{id}"), None)
                .await?;
            Ok(target.print(status, &body, |d| {
                let mut out = deliveries_table(&Value::Array(vec![d.clone()]));
                out.push_str("\n\nheaders:\n");
                for pair in d["headers"].as_array().into_iter().flatten() {
                    out.push_str(&format!("  {}: {}\n", text(&pair[0]), text(&pair[1])));
                }
                for h in d["handlers"].as_array().into_iter().flatten() {
                    if let Some(error) = h["last_error"].as_str() {
                        out.push_str(&format!("last error of {}: {error}\n", text(&h["name"])));
                    }
                }
                out.push_str("\nbody:\n");
                let pretty = d["body"]
                    .as_str()
                    .and_then(|b| serde_json::from_str::<Value>(b).ok())
                    .and_then(|v| serde_json::to_string_pretty(&v).ok())
                    .or_else(|| d["body"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("(binary) base64: {}", text(&d["body_base64"])));
                out.push_str(&pretty);
                out
            }))
        }
        Deliveries::Replay { target, id, force } => {
            let path = format!(
                "/admin/deliveries/{id}/replay{}",
                if force { "?force=true" } else { "" }
            );
            let (status, body) = target.call(Method::POST, &path, None).await?;
            let style = Style::stdout();
            let code = target.print(status, &body, |report| {
                report["handlers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| match h["success"].as_bool() {
                        Some(true) => format!("{} {}", style.green("✓"), text(&h["name"])),
                        _ => format!(
                            "{} {}: {}",
                            style.red("✗"),
                            text(&h["name"]),
                            text(&h["error"])
                        ),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            let succeeded = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|r| r["success"].as_bool());
            Ok(if succeeded == Some(false) {
                ExitCode::FAILURE
            } else {
                code
            })
        }
    }
}

pub(crate) async fn dead(command: Dead) -> anyhow::Result<ExitCode> {
    match command {
        Dead::List { target } => {
            let (status, body) = target.call(Method::GET, "/admin/dead", None).await?;
            Ok(target.print(status, &body, deliveries_table))
        }
        Dead::Replay { target } => {
            let (status, body) = target
                .call(Method::POST, "/admin/dead/replay", None)
                .await?;
            Ok(target.print(status, &body, |r| {
                format!("{} dead jobs requeued", r["requeued"])
            }))
        }
    }
}

fn connections_table(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                text(&c["name"]),
                text(&c["type"]),
                c["secrets"].to_string(),
                c["signature_header"].as_str().unwrap_or("-").to_owned(),
                c["nonce_header"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no connections".into();
    }
    table(
        &[
            "NAME",
            "TYPE",
            "SECRETS",
            "SIGNATURE HEADER",
            "NONCE HEADER",
        ],
        &rows,
    )
}

pub(crate) async fn connections(command: Connections) -> anyhow::Result<ExitCode> {
    match command {
        Connections::List { target } => {
            let (status, body) = target.call(Method::GET, "/admin/connections", None).await?;
            Ok(target.print(status, &body, connections_table))
        }
        Connections::Create {
            target,
            name,
            kind,
            secret,
            signature_header,
            nonce_header,
        } => {
            let body = serde_json::json!({
                "name": name, "type": kind, "secret": secret,
                "signature_header": signature_header, "nonce_header": nonce_header,
            });
            let (status, reply) = target
                .call(Method::POST, "/admin/connections", Some(body))
                .await?;
            Ok(target.print(status, &reply, |c| {
                connections_table(&Value::Array(vec![c.clone()]))
            }))
        }
        Connections::Rotate {
            target,
            name,
            secret,
        } => {
            let path = format!("/admin/connections/{}/rotate", encode(&name));
            let (status, reply) = target
                .call(
                    Method::POST,
                    &path,
                    Some(serde_json::json!({ "secret": secret })),
                )
                .await?;
            Ok(target.print(status, &reply, |c| {
                connections_table(&Value::Array(vec![c.clone()]))
            }))
        }
        Connections::Delete { target, name } => {
            let (status, reply) = target
                .call(
                    Method::DELETE,
                    &format!("/admin/connections/{}", encode(&name)),
                    None,
                )
                .await?;
            if status == http::StatusCode::NO_CONTENT {
                println!("deleted {name}");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(target.print(status, &reply, |_| String::new()))
        }
    }
}

/// Percent-encodes a query or path value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
