use hooksmith::webhook;

struct Service;

impl Service {
    #[webhook(path = "/hooks/github", sig = "github")]
    async fn on_event(&self) {}
}

fn main() {}
