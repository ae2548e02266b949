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
    let mix = (u64::from(std::process::id()) << 32)
        ^ nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // One SplitMix64 step, so that close inputs give unrelated ids.
    let mut state = mix;
    sweep::instance_from(crate::rng::splitmix64(&mut state))
}
