use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", filter("repository..name" = "x"))]
async fn on_event() {}

fn main() {}
