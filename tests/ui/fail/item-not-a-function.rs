use hooksmith::webhook;

#[webhook(path = "/hooks/github", sig = "github")]
struct OnEvent;

fn main() {}
