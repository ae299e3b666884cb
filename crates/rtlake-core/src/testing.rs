//! For tests only: how a test that cannot run here says so, so the suite's summary counts it as
//! skipped instead of passed (`scripts/test.sh` prints the count per broker).
//!
//! A test that returns early calls [`skip`] (it does not apply to this setup, such as the
//! embedded broker in the Apache Kafka phase) or [`skip_missing`] (a tool it needs is not here;
//! with `CI=true` that fails the test, since CI installs every tool). Each skip is printed and,
//! when `RTLAKE_TEST_SKIPS` names a file, appended to it as `test name: reason`.

use std::io::Write;

/// Records that the current test did not run its subject, and why.
pub fn skip(reason: &str) {
    let name = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_string();
    eprintln!("skipped: {name}: {reason}");
    if let Some(path) = std::env::var_os("RTLAKE_TEST_SKIPS")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{name}: {reason}");
    }
}

/// [`skip`] for a tool that is missing; under `CI=true` the tool should be there, so this panics.
pub fn skip_missing(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and this test cannot run: {reason}; .ci/run should have installed it");
    }
    skip(reason);
}

/// Cases per property of a property-based test: `PROPTEST_CASES`, else `default` (what CI
/// runs; the long form sets the variable).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
