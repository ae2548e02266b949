//! Building a pool: a fresh instance id, and the startup sweep of what a crashed
//! predecessor left under the root.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sweep;

pub(super) fn fresh_instance() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    sweep::instance_from(instance_seed(std::process::id(), nanos, count))
}

/// The seed of an instance id: the process id, the wall-clock time and a per-process
/// count, combined so that pools differing in any one of them get different seeds
/// (pools started in the same nanosecond by two processes, or twice in one process),
/// then one SplitMix64 step, so that close inputs give unrelated ids.
fn instance_seed(pid: u32, nanos: u64, count: u64) -> u64 {
    let mut state = (u64::from(pid) << 32) ^ nanos ^ count.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    crate::rng::splitmix64(&mut state)
}

#[cfg(test)]
mod tests {
    use super::instance_seed;

    /// Any one input changed gives another seed, whatever the others are (the mix is
    /// injective in each input when the others are fixed).
    #[test]
    fn pools_differing_in_pid_time_or_count_get_different_seeds() {
        for nanos in [
            0,
            1,
            u64::MAX,
            0xffff_ffff_0000_0000,
            1_764_633_600_000_000_000,
        ] {
            for count in [0, 1, 7] {
                assert_ne!(
                    instance_seed(1, nanos, count),
                    instance_seed(2, nanos, count)
                );
                assert_ne!(
                    instance_seed(4_000_000, nanos, count),
                    instance_seed(4_000_001, nanos, count)
                );
                assert_ne!(
                    instance_seed(1, nanos, count),
                    instance_seed(1, nanos, count + 1)
                );
            }
            assert_ne!(instance_seed(9, nanos, 0), instance_seed(9, nanos ^ 1, 0));
        }
    }
}
