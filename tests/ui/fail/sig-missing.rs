use hooksmith::webhook;

#[webhook(path = "/hooks/github")]
async fn on_event() {}

fn main() {}
