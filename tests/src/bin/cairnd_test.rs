//! `cairnd` built with the test-only features `byzantine` and `failpoints`, for the
//! real-process fault tests (`tests/tests/nemesis.rs`, `byzantine.rs`, `crash_points.rs`).
//! Identical to `cairnd` unless `--byzantine` or `FAILPOINTS` is given.

fn main() -> std::process::ExitCode {
    node::cli::cairnd::main()
}
