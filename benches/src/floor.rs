//! The floor: a bare relaxed `AtomicU64` store per touch.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::touch::Touch;

/// `n` plain `AtomicU64`s in one `Vec`. [`Touch::touch`] is one relaxed store of a fixed
/// value into slot `i`: no clock read, no indirection, no bookkeeping. Nothing that
/// records activity can be cheaper, so each touch row reports it as `floor_ns`.
#[derive(Debug)]
pub struct Floor {
    slots: Vec<AtomicU64>,
    value: u64,
}

impl Floor {
    /// `n` zeroed slots.
    pub fn new(n: usize) -> Self {
        Floor {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            value: 1,
        }
    }

    /// The value in slot `i` (for tests).
    pub fn get(&self, i: usize) -> u64 {
        self.slots[i].load(Ordering::Relaxed)
    }
}

impl Touch for Floor {
    fn len(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn touch(&self, i: usize) {
        self.slots[i].store(self.value, Ordering::Relaxed);
    }
}
