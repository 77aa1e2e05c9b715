use hooksmith::webhook;

#[webhook(path = "hooks", sig = "githubb", event = "", retry(backoff = "soon"))]
async fn on_event() {}

fn main() {}
