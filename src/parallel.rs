//! Work on all cores with results consumed in order: [`ordered_parallel`], and
//! [`ordered_parallel_as_ready`] for work whose inputs arrive one by one.
//!
//! Owns only the scheduling (threads, the bounded look-ahead, stopping on the first error
//! or a panic). It knows nothing of packages, trees or the network: callers pass closures
//! and the inputs as they arrive.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};

/// `work(i)` for every `i` in `0..n` on all cores, and `consume(i, result)` on this
/// thread in index order as the results come in: [`ordered_parallel_as_ready`] with every
/// input there from the start.
pub fn ordered_parallel<T: Send, E>(
    n: usize,
    work: impl Fn(usize) -> T + Sync,
    consume: impl FnMut(usize, T) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    ordered_parallel_as_ready(
        n,
        (0..n).map(|i| (i, ())),
        |i, ()| work(i),
        consume,
        |_| unreachable!("every index is ready from the start"),
    )
}

/// What the workers, the feeder and the consumer of [`ordered_parallel_as_ready`] share.
struct Gate<A> {
    /// Inputs arrived and not yet taken by a worker, by index.
    ready: BTreeMap<usize, A>,
    /// Indexes consumed so far (all below this one).
    consumed: usize,
    /// No more inputs will arrive, and every index came.
    complete: bool,
    /// No more inputs will arrive, and this index (the first) never came.
    incomplete: Option<usize>,
    /// Stop: `consume` failed, a worker panicked, or inputs stopped coming.
    stop: bool,
}

/// The gate's state, locked (a worker's panic does not poison it for the others).
fn lock<A>(gate: &(Mutex<Gate<A>>, Condvar)) -> std::sync::MutexGuard<'_, Gate<A>> {
    gate.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// `work(i, input)` on all cores for each `(i, input)` that `arriving` yields (indexes
/// of `0..n`, each once, in any order, as their inputs become available: it may block
/// between them), and `consume(i, result)` on this thread in index order as the results
/// come in, so what is built from them depends neither on the order of arrival nor on
/// which worker finished first. A free worker takes the lowest index that has arrived;
/// workers run at most `2 × workers` indexes ahead of the last consumed one, so the
/// results waiting (for packages: a spool file each) stay bounded however large `n` is.
/// The first error of `consume` stops the workers and is returned; a panic in `work`
/// stops them and is resumed here. When `arriving` ends before every index came (its
/// source failed), the workers stop too and `missing(the first index that never
/// came)` is returned, unless `consume` failed first: the caller reports its source's
/// failure. Returns once `arriving` has ended.
pub fn ordered_parallel_as_ready<A: Send, T: Send, E>(
    n: usize,
    arriving: impl Iterator<Item = (usize, A)> + Send,
    work: impl Fn(usize, A) -> T + Sync,
    mut consume: impl FnMut(usize, T) -> std::result::Result<(), E>,
    missing: impl FnOnce(usize) -> E,
) -> std::result::Result<(), E> {
    use std::sync::mpsc;
    let workers = std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .min(n)
        .max(1);
    let ahead = 2 * workers;
    let gate = (
        Mutex::new(Gate {
            ready: BTreeMap::new(),
            consumed: 0,
            complete: false,
            incomplete: None,
            stop: false,
        }),
        Condvar::new(),
    );
    /// Stops the other workers when this one unwinds.
    struct StopOnPanic<'a, A>(&'a (Mutex<Gate<A>>, Condvar));
    impl<A> Drop for StopOnPanic<'_, A> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                lock(self.0).stop = true;
                self.0 .1.notify_all();
            }
        }
    }
    let (tx, rx) = mpsc::channel::<(usize, T)>();
    std::thread::scope(|scope| {
        // The feeder: inputs into the gate as they arrive.
        let gate_ref = &gate;
        scope.spawn(move || {
            let mut came = vec![false; n];
            for (i, input) in arriving {
                let Some(seen) = came.get_mut(i).filter(|seen| !**seen) else {
                    debug_assert!(false, "index {i} out of range or given twice");
                    continue;
                };
                *seen = true;
                lock(gate_ref).ready.insert(i, input);
                gate_ref.1.notify_all();
            }
            let mut g = lock(gate_ref);
            match came.iter().position(|seen| !seen) {
                None => g.complete = true,
                Some(first) => {
                    g.incomplete = Some(first);
                    g.stop = true;
                    g.ready.clear();
                }
            }
            drop(g);
            gate_ref.1.notify_all();
        });
        for _ in 0..workers {
            let tx = tx.clone();
            let (gate, work) = (&gate, &work);
            scope.spawn(move || {
                let _stop = StopOnPanic(gate);
                loop {
                    let (i, input) = {
                        let mut g = lock(gate);
                        loop {
                            if g.stop {
                                return;
                            }
                            let first = g.ready.first_key_value().map(|(&i, _)| i);
                            if let Some(i) = first.filter(|&i| i < g.consumed + ahead) {
                                let input = g.ready.remove(&i).expect("the first key is there");
                                break (i, input);
                            }
                            if g.complete && first.is_none() {
                                return;
                            }
                            g = gate.1.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    if tx.send((i, work(i, input))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let set = |f: &dyn Fn(&mut Gate<A>)| {
            f(&mut lock(&gate));
            gate.1.notify_all();
        };
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
                    set(&|g| g.stop = true);
                    break;
                }
                consumed += 1;
                set(&|g| g.consumed = consumed);
            }
        }
        // Short of `n` with no error: inputs stopped coming, or a worker panicked (which
        // the scope resumes once it has joined every thread). The feeder may still wait
        // for the end of the inputs: only then is it known which one never came.
        if result.is_ok() && consumed < n {
            let mut g = lock(&gate);
            while !g.complete && g.incomplete.is_none() {
                g = gate.1.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            if let Some(first) = g.incomplete {
                result = Err(missing(first));
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::{ordered_parallel, ordered_parallel_as_ready};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::mpsc;
    use std::time::Duration;

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

    #[test]
    fn inputs_arriving_in_any_order_are_consumed_in_index_order() {
        let mut seen = Vec::new();
        let r: Result<(), ()> = ordered_parallel_as_ready(
            50,
            (0..50).rev().map(|i| (i, i * 3)),
            |i, input| {
                assert_eq!(input, i * 3);
                input + 1
            },
            |i, v| {
                assert_eq!(v, i * 3 + 1);
                seen.push(i);
                Ok(())
            },
            |_| (),
        );
        assert!(r.is_ok());
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn work_starts_before_the_other_inputs_arrive() {
        // Index 3 is given alone; the rest come only once its work has run: were the
        // work held back until every input came, the wait below would time out.
        let (give, arriving) = mpsc::channel::<(usize, ())>();
        let (worked, on_work) = mpsc::channel::<usize>();
        let feeder = std::thread::spawn(move || {
            give.send((3, ())).unwrap();
            let first = on_work.recv_timeout(Duration::from_secs(60));
            for i in [0, 1, 2, 4, 5] {
                give.send((i, ())).unwrap();
            }
            first
        });
        let mut seen = Vec::new();
        let r: Result<(), ()> = ordered_parallel_as_ready(
            6,
            arriving.into_iter(),
            |i, ()| {
                let _ = worked.send(i);
            },
            |i, ()| {
                seen.push(i);
                Ok(())
            },
            |_| (),
        );
        assert_eq!(feeder.join().unwrap(), Ok(3));
        assert!(r.is_ok());
        assert_eq!(seen, (0..6).collect::<Vec<_>>());
    }

    #[test]
    fn inputs_that_stop_coming_stop_the_work_naming_the_first_missing_index() {
        let mut seen = Vec::new();
        let r = ordered_parallel_as_ready(
            10,
            [0, 1, 2, 3, 4, 6, 7, 9].into_iter().map(|i| (i, ())),
            |i, ()| i,
            |i, v| {
                assert_eq!(i, v);
                seen.push(i);
                Ok(())
            },
            |i| format!("{i} never came"),
        );
        assert_eq!(r, Err("5 never came".to_string()));
        // Consumed in order, and nothing at or after the missing index.
        assert_eq!(seen, (0..seen.len()).collect::<Vec<_>>());
        assert!(seen.len() <= 5, "{seen:?}");
    }

    #[test]
    fn arriving_workers_stay_a_bounded_distance_ahead() {
        let consumed = AtomicUsize::new(0);
        let widest = AtomicUsize::new(0);
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        // Index 0 arrives last: nothing can be consumed before it, so the work done
        // meanwhile is all look-ahead.
        let r: Result<(), ()> = ordered_parallel_as_ready(
            100,
            (1..100).chain([0]).map(|i| (i, ())),
            |i, ()| {
                let gap = i.saturating_sub(consumed.load(SeqCst));
                widest.fetch_max(gap, SeqCst);
            },
            |_, ()| {
                consumed.fetch_add(1, SeqCst);
                Ok(())
            },
            |_| (),
        );
        assert!(r.is_ok());
        let limit = 2 * cores.min(100);
        assert!(
            widest.load(SeqCst) < limit,
            "{} >= {limit}",
            widest.load(SeqCst)
        );
    }
}
