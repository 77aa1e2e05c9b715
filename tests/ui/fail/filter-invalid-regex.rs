use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", filter("repository.name" = regex("my-(repo")))]
async fn on_event() {}

fn main() {}
