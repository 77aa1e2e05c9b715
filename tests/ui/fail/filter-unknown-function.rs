use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github", filter(some(action = "opened")))]
async fn on_event() {}

fn main() {}
