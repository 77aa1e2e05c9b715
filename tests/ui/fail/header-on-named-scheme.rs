use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", header = "X-Signature")]
async fn on_event() {}

fn main() {}
