//! `apt::version::compare` on up to eight versions (one per line of the input):
//! no panic, and the order is a total order — reflexive, antisymmetric, transitive,
//! and `Equal` versions are interchangeable.
#![no_main]

use std::cmp::Ordering::{self, Equal, Greater, Less};

use compose::apt::version::compare;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let v: Vec<&str> = text.split('\n').take(8).collect();
    let n = v.len();
    let mut c = vec![vec![Equal; n]; n];
    for i in 0..n {
        for j in 0..n {
            c[i][j] = compare(v[i], v[j]);
        }
    }
    for i in 0..n {
        assert_eq!(c[i][i], Equal, "compare({:?}, itself)", v[i]);
        for j in 0..n {
            assert_eq!(
                c[i][j],
                c[j][i].reverse(),
                "antisymmetry: {:?} vs {:?}",
                v[i],
                v[j]
            );
            for k in 0..n {
                let (ab, bc, ac) = (c[i][j], c[j][k], c[i][k]);
                // a ≤ b ≤ c ⇒ a ≤ c, strictly if either step is strict.
                if ab != Greater && bc != Greater {
                    let want: Ordering = if ab == Less || bc == Less {
                        Less
                    } else {
                        Equal
                    };
                    assert_eq!(
                        ac, want,
                        "transitivity: {:?} {ab:?} {:?} {bc:?} {:?} but {ac:?}",
                        v[i], v[j], v[k]
                    );
                }
                // Equal versions compare alike against everything.
                if ab == Equal {
                    assert_eq!(
                        ac, bc,
                        "{:?} == {:?} but not against {:?}",
                        v[i], v[j], v[k]
                    );
                }
            }
        }
    }
    // The standard sort (which may panic on an inconsistent order) agrees.
    let mut sorted = v.clone();
    sorted.sort_by(|a, b| compare(a, b));
    for w in sorted.windows(2) {
        assert_ne!(compare(w[0], w[1]), Greater);
    }
});
