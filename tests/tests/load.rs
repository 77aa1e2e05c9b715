//! The load test's short form (the long form is `cargo run --release -p hooksmith-tests --bin
//! load -- 64 30 1000 300`): sustained signed traffic on SQLite with zero refusals, zero transport
//! errors, every 2xx stored and handled; a burst of connections with none left hanging; a storm of
//! slow clients while legitimate traffic is still answered.

#[test]
fn the_load_command_loses_nothing() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_load"))
        .args(["16", "3", "100", "30"])
        .output()
        .expect("the load command runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{printed}");
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains("0 refused, 0 transport errors"),
        "{printed}"
    );
    assert!(printed.contains("0 without an answer"), "{printed}");
}
