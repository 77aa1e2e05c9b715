use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", retry(attempts = 3))]
async fn on_event() {}

fn main() {}
