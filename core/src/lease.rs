//! The handle a server holds on a session: activity stamping and in-flight marking.

use std::sync::{Arc, Weak};

use crate::backend::ProcessLauncher;
use crate::error::SessionError;
use crate::pool::Inner;
use crate::session::{ActivityRef, SessionId};

/// A handle on one session of a [`Pool`](crate::Pool).
///
/// The pool owns the session; a `Lease` only refers to it. Dropping a lease does not end
/// the session (a server typically looks sessions up by id per request with
/// [`Pool::session`](crate::Pool::session)); the idle reaper, eviction, owner release,
/// `destroy` and shutdown do. Once the session has ended, [`Lease::check`] and
/// [`Lease::begin_op`] return [`SessionError::Ended`] with the reason.
///
/// Cloning is cheap (reference counts).
pub struct Lease<L: ProcessLauncher> {
    /// Everything a touch needs: the cell sits beside the cells of the sessions launched
    /// around it, and its chunk carries the pool's coarse clock and `max_uses` (see
    /// [`ActivityRef`]). Touching many sessions in turn streams through the leases (two
    /// words each) and the cells' dense stamps.
    activity: ActivityRef,
    /// What only the colder calls need, behind one pointer.
    rest: Arc<LeaseRest<L>>,
}

/// The parts of a [`Lease`] a touch does not read.
struct LeaseRest<L: ProcessLauncher> {
    id: SessionId,
    process: Arc<L::Process>,
    pool: Weak<Inner<L>>,
}

impl<L: ProcessLauncher> Clone for Lease<L> {
    fn clone(&self) -> Self {
        Lease {
            activity: self.activity.clone(),
            rest: self.rest.clone(),
        }
    }
}

impl<L: ProcessLauncher> std::fmt::Debug for Lease<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.rest.id)
            .field("ended", &self.activity.is_ended())
            .finish()
    }
}

impl<L: ProcessLauncher> Lease<L> {
    /// A lease on live session `id` of `pool`.
    pub(crate) fn new(
        id: SessionId,
        activity: ActivityRef,
        process: Arc<L::Process>,
        pool: Weak<Inner<L>>,
    ) -> Self {
        Lease {
            activity,
            rest: Arc::new(LeaseRest { id, process, pool }),
        }
    }

    /// The session's id, stable for its whole life and never reused by this pool.
    pub fn id(&self) -> SessionId {
        self.rest.id
    }

    /// Stamp client activity now. One relaxed load of the pool's coarse clock and one
    /// relaxed store: lock-free, O(1), no system-clock read. Call it for every
    /// client-initiated operation; [`Lease::begin_op`] does it for you.
    #[inline]
    pub fn touch(&self) {
        self.activity.touch_coarse();
    }

    /// Mark an operation as in flight until the guard is dropped: the session is not
    /// reaped, evicted or retired meanwhile, and activity is stamped at both ends.
    /// Fails if the session has already ended.
    #[inline]
    pub fn begin_op(&self) -> Result<OpGuard<'_, L>, SessionError> {
        if self.activity.is_ended() {
            return Err(self.ended_error());
        }
        self.activity.begin_op(self.activity.coarse_now());
        Ok(OpGuard { lease: self })
    }

    /// Like [`Lease::begin_op`], but the guard owns a clone of the lease, so it can be
    /// kept across `.await` points, stored in a map or moved into another task (a CDP
    /// proxy keeps one per command awaiting its response). Same guarantees: the session
    /// is busy until the guard is dropped, activity is stamped at both ends, the use is
    /// counted. Fails if the session has already ended.
    pub fn begin_op_owned(&self) -> Result<OwnedOpGuard<L>, SessionError> {
        if self.activity.is_ended() {
            return Err(self.ended_error());
        }
        self.activity.begin_op(self.activity.coarse_now());
        Ok(OwnedOpGuard {
            lease: self.clone(),
        })
    }

    /// The end of an operation: stamp, and hint the pool if `max_uses` is reached.
    #[inline]
    fn end_op(&self) {
        let uses = self.activity.end_op(self.activity.coarse_now());
        if uses >= self.activity.max_uses() {
            if let Some(inner) = self.rest.pool.upgrade() {
                inner.retire_hint(self.rest.id);
            }
        }
    }

    /// `Ok` while the session is usable; otherwise why it ended.
    pub fn check(&self) -> Result<(), SessionError> {
        if self.activity.is_ended() {
            Err(self.ended_error())
        } else {
            Ok(())
        }
    }

    /// Whether the session has ended.
    pub fn is_ended(&self) -> bool {
        self.activity.is_ended()
    }

    /// The backend's process handle (for Chrome: the browser and its CDP connection).
    /// Using it does not stamp activity; wrap calls in [`Lease::begin_op`].
    pub fn process(&self) -> &L::Process {
        &self.rest.process
    }

    /// The session's activity cell.
    pub fn activity(&self) -> &ActivityRef {
        &self.activity
    }

    /// Why the session ended, as the pool remembers it.
    pub fn ended_error(&self) -> SessionError {
        match self.rest.pool.upgrade() {
            Some(inner) => inner.session_error(self.rest.id),
            None => SessionError::Ended {
                id: self.rest.id,
                reason: crate::EndReason::Shutdown,
            },
        }
    }
}

/// An operation in flight on a session; see [`Lease::begin_op`].
#[must_use = "the operation counts as in flight only while the guard lives"]
pub struct OpGuard<'a, L: ProcessLauncher> {
    lease: &'a Lease<L>,
}

impl<L: ProcessLauncher> Drop for OpGuard<'_, L> {
    #[inline]
    fn drop(&mut self) {
        self.lease.end_op();
    }
}

/// An operation in flight on a session, owning its lease; see [`Lease::begin_op_owned`].
#[must_use = "the operation counts as in flight only while the guard lives"]
pub struct OwnedOpGuard<L: ProcessLauncher> {
    lease: Lease<L>,
}

impl<L: ProcessLauncher> OwnedOpGuard<L> {
    /// The lease the operation runs on.
    pub fn lease(&self) -> &Lease<L> {
        &self.lease
    }
}

impl<L: ProcessLauncher> Drop for OwnedOpGuard<L> {
    #[inline]
    fn drop(&mut self) {
        self.lease.end_op();
    }
}

impl<L: ProcessLauncher> std::fmt::Debug for OwnedOpGuard<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedOpGuard")
            .field("id", &self.lease.rest.id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_two_words() {
        // Round-robin touches stream through the leases a server holds: keep them small.
        assert_eq!(
            std::mem::size_of::<Lease<crate::testing::FakeLauncher>>(),
            16
        );
    }
}
