use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "githb")]
async fn on_event() {}

fn main() {}
