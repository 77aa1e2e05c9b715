use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", sig = "none")]
async fn on_event() {}

fn main() {}
