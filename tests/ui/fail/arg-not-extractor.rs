use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github")]
async fn on_event(body: String) {}

fn main() {}
