//! The mission's example, verbatim.
use hooksmith::webhook;

#[webhook(path="/hooks/github", sig="hmac-sha256", filter(action="opened"))]
async fn pr_opened() {}

fn main() {
    let _ = <pr_opened as hooksmith::__private::Registered>::REGISTRATION;
}
