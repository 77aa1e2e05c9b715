//! The benchmark command works end to end (a tiny run; no figure is asserted: a test must not
//! fail because the machine was busy).

use std::process::Command;

#[test]
fn a_tiny_run_drives_every_target_without_errors() {
    let mut targets = vec!["hand-written", "memory", "hand-written-sqlite", "sqlite"];
    let mut command = Command::new(env!("CARGO_BIN_EXE_hooksmith-bench"));
    match std::env::var("HOOKSMITH_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            targets.extend(["hand-written-postgres", "postgres"]);
            command.args(["--postgres", &url]);
        }
        _ => eprintln!("the postgres targets skipped: HOOKSMITH_TEST_POSTGRES_URL is not set"),
    }
    let out = command
        .args(["--targets", &targets.join(",")])
        .args([
            "--runs",
            "1",
            "--seconds",
            "0.3",
            "--warmup",
            "0.2",
            "--connections",
            "2",
            "--sizes",
            "1k",
            "--no-pin",
        ])
        .output()
        .expect("the bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for target in targets {
        let line = stdout
            .lines()
            .find(|l| l.contains("run 1:") && l.split_whitespace().any(|word| word == target))
            .unwrap_or_else(|| panic!("no line for {target}:\n{stdout}"));
        assert!(!line.contains("ERRORS"), "{line}");
        // The server's CPU per delivery, read from its /proc/PID/stat.
        assert!(line.contains(" µs/req"), "{line}");
        // The load generator's sleeps per delivery, from its thread's context switches.
        assert!(line.contains(" sleeps/req"), "{line}");
        if !target.starts_with("hand-written") {
            // hooksmith's handler runs are read from its /metrics.
            assert!(line.contains("handled"), "{line}");
        }
    }
    assert!(stdout.contains("summary: "), "{stdout}");
}
