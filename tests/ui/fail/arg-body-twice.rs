use hooksmith::webhook;

use hooksmith::{Json, Raw};

#[webhook(path = "/hooks/github", sig = "github")]
async fn on_event(payload: Json<serde_json::Value>, raw: Raw) {}

fn main() {}
