use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", retry(max = 3, backoff = "1 second"))]
async fn on_event() {}

fn main() {}
