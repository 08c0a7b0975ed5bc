//! Test-only crash points (the `failpoints` feature, [fail-rs](https://docs.rs/fail)): the
//! process exits on the spot, as if killed, at an exact point of its persist/send cycle.
//! Without the feature, [`crash_point!`] compiles to nothing.
//!
//! Points, configured with the `FAILPOINTS` environment variable read at start
//! (`FAILPOINTS="after-persist=20*off->return"`: crash at the 21st hit):
//! - `after-persist`: a safety record (or Raft log write) is fsynced; the votes and
//!   acknowledgements it releases are not sent yet.
//! - `after-persist-safety`: the same, counting only writes that include the safety record
//!   (HotStuff/PBFT: what the next vote depends on; Raft: term and vote).
//! - `after-send`: a consensus frame was handed to the network (and given 100 ms to leave);
//!   the next persist has not happened.
//! - `before-block-write` / `after-block-write`: the store stage is about to write a group of
//!   executed blocks / has written them and not yet announced or reported them.
//!
//! The exit code is [`CRASH_EXIT_CODE`]; no destructor runs, so nothing is flushed or
//! closed that a SIGKILL would not have left as it is.

/// Exit code of a process stopped by a crash point.
pub const CRASH_EXIT_CODE: i32 = 86;

/// Exits the process at crash point `name` (see the module documentation).
#[cfg(feature = "failpoints")]
pub fn crash(name: &str, linger_ms: u64) -> ! {
    eprintln!("failpoint {name}: crashing now");
    // Lets frames already handed to the network task leave (it runs on another thread).
    std::thread::sleep(std::time::Duration::from_millis(linger_ms));
    std::process::exit(CRASH_EXIT_CODE)
}

/// Reads `FAILPOINTS`; the returned guard must live as long as the validator.
#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    let scenario = fail::FailScenario::setup();
    if let Some(spec) = std::env::var_os("FAILPOINTS") {
        tracing::warn!(failpoints = ?spec, "test-only failpoints are armed");
    }
    scenario
}

/// `crash_point!("after-persist", linger_ms)`: exits the process here when the failpoint
/// fires (its action is `return`); nothing without the `failpoints` feature.
macro_rules! crash_point {
    ($name:literal, $linger_ms:expr) => {
        fail::fail_point!($name, |_| {
            $crate::validator::failpoints::crash($name, $linger_ms)
        })
    };
}
pub(crate) use crash_point;
