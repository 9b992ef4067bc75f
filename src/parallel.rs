//! Work on all cores with results consumed in order: [`ordered_parallel`].
//!
//! Owns only the scheduling (threads, the bounded look-ahead, stopping on the first error
//! or a panic). It knows nothing of packages, trees or the network: callers pass closures.

use std::collections::BTreeMap;

/// `work(i)` for every `i` in `0..n` on all cores, and `consume(i, result)` on this
/// thread in index order as the results come in (so what is built from them does not
/// depend on which finished first). Workers run at most `2 × workers` indexes ahead of
/// the last consumed one, so the results waiting (for packages: a spool file each) stay
/// bounded however large `n` is. The first error of `consume` stops the workers and is
/// returned; a panic in `work` stops them and is resumed here.
pub fn ordered_parallel<T: Send, E>(
    n: usize,
    work: impl Fn(usize) -> T + Sync,
    mut consume: impl FnMut(usize, T) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::sync::{mpsc, Condvar, Mutex};
    let workers = std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .min(n)
        .max(1);
    let ahead = 2 * workers;
    let next = AtomicUsize::new(0);
    // (indexes consumed so far, stop)
    let gate = (Mutex::new((0usize, false)), Condvar::new());
    let set = |f: &dyn Fn(&mut (usize, bool))| {
        let mut g = gate.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g);
        gate.1.notify_all();
    };
    /// Stops the other workers when this one unwinds.
    struct StopOnPanic<'a>(&'a (Mutex<(usize, bool)>, Condvar));
    impl Drop for StopOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
                self.0 .1.notify_all();
            }
        }
    }
    let (tx, rx) = mpsc::channel::<(usize, T)>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, gate, work) = (&next, &gate, &work);
            scope.spawn(move || {
                let _stop = StopOnPanic(gate);
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= n {
                        return;
                    }
                    {
                        let mut g = gate.0.lock().unwrap_or_else(|e| e.into_inner());
                        while i >= g.0 + ahead && !g.1 {
                            g = gate.1.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                        if g.1 {
                            return;
                        }
                    }
                    if tx.send((i, work(i))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut waiting = BTreeMap::new();
        let mut consumed = 0;
        let mut result = Ok(());
        // Ends when every worker has ended (and dropped its sender).
        for (i, t) in rx {
            if result.is_err() {
                continue;
            }
            waiting.insert(i, t);
            while let Some(t) = waiting.remove(&consumed) {
                if let Err(e) = consume(consumed, t) {
                    result = Err(e);
                    set(&|g| g.1 = true);
                    break;
                }
                consumed += 1;
                set(&|g| g.0 = consumed);
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::ordered_parallel;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    #[test]
    fn results_are_consumed_in_index_order() {
        let mut seen = Vec::new();
        let r: Result<(), ()> = ordered_parallel(
            200,
            |i| {
                // Later indexes finish first now and then.
                if i % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                i * 2
            },
            |i, v| {
                assert_eq!(v, i * 2);
                seen.push(i);
                Ok(())
            },
        );
        assert!(r.is_ok());
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn workers_stay_a_bounded_distance_ahead() {
        let consumed = AtomicUsize::new(0);
        let widest = AtomicUsize::new(0);
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let r: Result<(), ()> = ordered_parallel(
            100,
            |i| {
                let gap = i.saturating_sub(consumed.load(SeqCst));
                widest.fetch_max(gap, SeqCst);
            },
            |_, ()| {
                std::thread::sleep(std::time::Duration::from_micros(200));
                consumed.fetch_add(1, SeqCst);
                Ok(())
            },
        );
        assert!(r.is_ok());
        let limit = 2 * cores.min(100);
        assert!(
            widest.load(SeqCst) <= limit,
            "{} > {limit}",
            widest.load(SeqCst)
        );
    }

    #[test]
    fn the_first_error_in_order_stops_the_work() {
        let started = AtomicUsize::new(0);
        let r = ordered_parallel(
            10_000,
            |i| {
                started.fetch_add(1, SeqCst);
                i
            },
            |i, _| {
                if i == 5 {
                    Err(format!("stop at {i}"))
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(r, Err("stop at 5".to_string()));
        assert!(started.load(SeqCst) < 100, "{}", started.load(SeqCst));
    }

    #[test]
    fn a_panicking_worker_does_not_hang_the_others() {
        let r = std::panic::catch_unwind(|| {
            let _: Result<(), ()> = ordered_parallel(
                1000,
                |i| {
                    if i == 3 {
                        panic!("worker panic");
                    }
                },
                |_, ()| Ok(()),
            );
        });
        assert!(r.is_err());
    }
}
