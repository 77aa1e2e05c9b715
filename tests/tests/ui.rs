//! Compile-time errors are part of the product: each `ui/fail` case is one mistake and its
//! `.stderr` is what the user reads. Snapshots are taken with rustc 1.95; other compilers word
//! their messages differently, so the test runs only there.
//! Regenerate with `TRYBUILD=overwrite cargo test -p hooksmith-tests --test ui` and read every diff.

#[rustversion::attr(not(stable(1.95)), ignore = "UI snapshots are taken with rustc 1.95")]
#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/fail/*.rs");
    cases.pass("ui/pass/*.rs");
}
