use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", event = "")]
async fn on_event() {}

fn main() {}
