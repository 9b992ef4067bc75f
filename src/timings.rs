//! Phase timings: with `COMPOSE_TIMINGS=1`, each phase of a build prints one line on
//! stderr, `timing <seconds since start> <phase>` (how `scripts/bench.sh` and a
//! profile see where the time goes). Off by default; nothing is measured then.
//!
//! It only prints; it must not change what a build does.

use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that turns the lines on.
pub const ENV: &str = "COMPOSE_TIMINGS";

static START: OnceLock<Option<Instant>> = OnceLock::new();

/// Start the clock (the first call wins); later calls to [`mark`] count from here.
pub fn start() {
    START.get_or_init(|| {
        std::env::var_os(ENV)
            .filter(|v| !v.is_empty() && v != "0")
            .map(|_| Instant::now())
    });
}

/// Print `timing <seconds> <what>` when timings are on.
pub fn mark(what: impl std::fmt::Display) {
    start();
    if let Some(Some(t0)) = START.get() {
        eprintln!("timing {:7.3} {what}", t0.elapsed().as_secs_f64());
    }
}
