use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", ack = "later")]
async fn on_event() {}

fn main() {}
