use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", secret = "hunter2")]
async fn on_event() {}

fn main() {}
