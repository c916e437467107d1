//! Crash points for the exactly-once tests. `K2MC_FAULT_POINT=<name>` (or `<name>:<n>` for the
//! n-th time the point is reached) makes the process abort there, as a SIGKILL would, so a test
//! can stop the pipeline at each step boundary and check that the next run repairs everything
//! (or pause there, [`WAIT_ENV`]).
//! Unset (always, outside tests) it costs one relaxed load per point.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that arms a crash point.
pub const ENV: &str = "K2MC_FAULT_POINT";

/// Every point the pipeline passes, in order.
pub const POINTS: &[&str] = &[
    "after-fetch",
    "after-stage",
    "after-intent",
    "after-pending",
    "after-log-entry",
    "after-load-created",
    "after-claim",
    "after-load-fixed",
    "after-session-open",
    "after-block",
    "before-maxcompute-commit",
    "after-maxcompute-commit",
    "after-load-done",
];

struct Armed {
    name: String,
    nth: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let text = std::env::var(ENV).ok()?;
            let (name, nth) = match text.split_once(':') {
                Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
                None => (text, 1),
            };
            Some(Armed {
                name,
                nth,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// With the point armed, `K2MC_FAULT_WAIT=<file>` pauses there instead of aborting: the process
/// creates `<file>.reached` and blocks (the whole process, as a SIGSTOP would) until `<file>`
/// exists. Tests use it to interleave two invocations at exact step boundaries.
pub const WAIT_ENV: &str = "K2MC_FAULT_WAIT";

/// Aborts the process (or pauses it, see [`WAIT_ENV`]) if this point is armed and reached for
/// the armed time.
pub fn point(name: &str) {
    if let Some(a) = armed()
        && a.name == name
        && a.seen.fetch_add(1, Ordering::Relaxed) + 1 == a.nth
    {
        if let Some(gate) = std::env::var_os(WAIT_ENV).map(std::path::PathBuf::from) {
            eprintln!(
                "k2mc: fault point {name} reached; waiting for {}",
                gate.display()
            );
            let mut reached = gate.clone().into_os_string();
            reached.push(".reached");
            let _ = std::fs::write(&reached, name);
            while !gate.exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            return;
        }
        eprintln!("k2mc: fault point {name} reached; aborting as armed by {ENV}");
        std::process::abort();
    }
}
