use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", filter(header("X-GitHub-Hook-ID") = 5))]
async fn on_event() {}

fn main() {}
