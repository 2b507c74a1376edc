//! `#[forkbridge::handlers]` misuse gives clear compile errors (trybuild
//! snapshots in `tests/ui/*.stderr`; regenerate with `TRYBUILD=overwrite`).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_*.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
