use hooksmith::webhook;

#[webhook(path = "/hooks/open", sig = "none", secret = env("OPEN_SECRET"))]
async fn on_event() {}

fn main() {}
