//! Retrying network operations (downloads and registry pushes alike): which failures
//! may pass, the backoff between attempts, and how many attempts the final error reports.
//!
//! It must not know a client or an error type: callers classify each failure as a
//! [`Failure`] and record the count through [`Attempts`].

use std::future::Future;
use std::time::Duration;

/// Attempts per operation (the first included) for failures that may pass: connection
/// errors, timeouts, resets, 5xx, 408 and 429.
pub const ATTEMPTS: u32 = 3;

/// How one attempt failed: worth another attempt, or final.
pub enum Failure<E> {
    /// May pass on another attempt (after [`backoff`]), while attempts remain.
    Retry(E),
    /// Final: returned at once.
    Fatal(E),
}

/// An error that can say how many attempts were made before it was final.
pub trait Attempts {
    /// This error, recording that `attempts` attempts were made (the first included).
    fn after(self, attempts: u32) -> Self;
}

/// HTTP statuses that may pass on another attempt: 5xx, 408 and 429.
pub fn retryable_status(status: u16) -> bool {
    (500..=599).contains(&status) || status == 408 || status == 429
}

/// Wait before attempt `n + 1`: 200 ms, 800 ms, 3.2 s, …
pub fn backoff(n: u32) -> Duration {
    Duration::from_millis(200 * 4u64.pow(n.saturating_sub(1).min(6)))
}

/// Run `once` up to [`ATTEMPTS`] times with [`backoff`] while it fails in a way that may
/// pass; the final error says how many attempts were made.
pub async fn with_retries<T, E, F, Fut>(mut once: F) -> Result<T, E>
where
    E: Attempts,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure<E>>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match once().await {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(e)) => return Err(e.after(attempt)),
            Err(Failure::Retry(e)) if attempt >= ATTEMPTS => return Err(e.after(attempt)),
            Err(Failure::Retry(_)) => tokio::time::sleep(backoff(attempt)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct E(&'static str, u32);

    impl Attempts for E {
        fn after(self, attempts: u32) -> E {
            E(self.0, attempts)
        }
    }

    #[test]
    fn retries_what_may_pass_and_counts_attempts() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let mut calls = 0;
        let r: Result<(), E> = rt.block_on(with_retries(|| {
            calls += 1;
            async { Err(Failure::Retry(E("flaky", 0))) }
        }));
        assert_eq!((r, calls), (Err(E("flaky", ATTEMPTS)), ATTEMPTS));
        let mut calls = 0;
        let r: Result<(), E> = rt.block_on(with_retries(|| {
            calls += 1;
            async { Err(Failure::Fatal(E("final", 0))) }
        }));
        assert_eq!((r, calls), (Err(E("final", 1)), 1));
        assert!(retryable_status(503) && retryable_status(429) && !retryable_status(404));
    }
}
