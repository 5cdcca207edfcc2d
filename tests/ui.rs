//! Compile-time behaviour of `#[redlock]`: `tests/ui/pass` must compile and run (without Redis),
//! each `tests/ui/fail` file must fail with its `.stderr`. Regenerate snapshots with
//! `TRYBUILD=overwrite cargo test --test ui` and read the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
