//! Who owns each session and which connections are attached to it.
//!
//! Every session the server creates gets an owner key of its own (`ws-12 127.0.0.1:5000`
//! for a WebSocket connection, `http-13 <caller>` for `POST /sessions`), so releasing an
//! owner touches exactly one session. A session may have several connections attached
//! (the one that created it, reconnects); when the last one drops, the owner is released
//! with the grace period: the session survives that long for a reconnect, then goes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use browserpool::{ActivityRef, OwnerKey, Pool, ProcessLauncher, SessionId};
use rustc_hash::FxHashMap;

struct Entry {
    owner: OwnerKey,
    activity: ActivityRef,
    conns: u32,
}

/// The registry of owners and attached connections.
#[derive(Default)]
pub(crate) struct Attachments {
    map: Mutex<FxHashMap<SessionId, Entry>>,
}

impl Attachments {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<SessionId, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a new session and its owner (no connection attached yet). Forgets sessions
    /// that have ended, so the map stays the size of the live set.
    pub(crate) fn register(&self, id: SessionId, owner: OwnerKey, activity: ActivityRef) {
        let mut map = self.lock();
        map.retain(|_, e| !e.activity.is_ended());
        map.insert(
            id,
            Entry {
                owner,
                activity,
                conns: 0,
            },
        );
    }

    /// Attach one more connection to `id`, reclaiming the session from a release its last
    /// detach started. `None` if the session is not (or no longer) known here.
    ///
    /// Attach and detach both talk to the pool under this registry's lock, so a reattach
    /// and the previous connection's release cannot interleave: either the detach sees
    /// the new connection and releases nothing, or the reattach cancels its release.
    pub(crate) fn attach<L: ProcessLauncher>(
        self: &Arc<Self>,
        pool: &Arc<Pool<L>>,
        id: SessionId,
        grace: Duration,
    ) -> Option<AttachGuard<L>> {
        let mut map = self.lock();
        let e = map.get_mut(&id)?;
        e.conns += 1;
        if pool.reclaim(id) {
            tracing::info!(session = %id, "client reattached within the grace; release cancelled");
        }
        Some(AttachGuard {
            registry: self.clone(),
            pool: Arc::downgrade(pool),
            id,
            grace,
        })
    }

    /// The owner of `id` and how many connections are attached, if known.
    pub(crate) fn get(&self, id: SessionId) -> Option<(OwnerKey, u32)> {
        self.lock().get(&id).map(|e| (e.owner.clone(), e.conns))
    }

    /// Owners of live sessions with no connection attached.
    pub(crate) fn unattached(&self) -> Vec<OwnerKey> {
        let map = self.lock();
        let mut v: Vec<(SessionId, OwnerKey)> = map
            .iter()
            .filter(|(_, e)| e.conns == 0 && !e.activity.is_ended())
            .map(|(id, e)| (*id, e.owner.clone()))
            .collect();
        v.sort_unstable_by_key(|(id, _)| *id);
        v.into_iter().map(|(_, o)| o).collect()
    }

    /// Detach one connection; the last one releases the session's owner with `grace`
    /// (under this registry's lock, see [`Attachments::attach`]). Returns the owner
    /// released and how many sessions the pool put on notice.
    fn detach<L: ProcessLauncher>(
        &self,
        pool: &std::sync::Weak<Pool<L>>,
        id: SessionId,
        grace: Duration,
    ) -> Option<(OwnerKey, usize)> {
        let mut map = self.lock();
        let e = map.get_mut(&id)?;
        e.conns = e.conns.saturating_sub(1);
        if e.conns > 0 {
            return None;
        }
        let owner = e.owner.clone();
        if e.activity.is_ended() {
            map.remove(&id);
            return None;
        }
        let pool = pool.upgrade()?;
        let n = pool.release_owner(&owner, grace);
        Some((owner, n))
    }
}

/// One connection attached to a session. Dropping it (connection closed, task ended or
/// panicked, upgrade failed) detaches it; the last detach releases the session's owner
/// with the grace period.
pub(crate) struct AttachGuard<L: ProcessLauncher> {
    registry: Arc<Attachments>,
    pool: std::sync::Weak<Pool<L>>,
    id: SessionId,
    grace: Duration,
}

impl<L: ProcessLauncher> Drop for AttachGuard<L> {
    fn drop(&mut self) {
        if let Some((owner, n)) = self.registry.detach(&self.pool, self.id, self.grace) {
            tracing::info!(session = %self.id, owner = %owner, grace = ?self.grace, released = n,
                "last connection of the session closed; it ends after the grace period unless a client reconnects");
        }
    }
}

/// Counts open WebSocket connections against `max_connections`.
#[derive(Default)]
pub(crate) struct Connections {
    open: AtomicUsize,
}

impl Connections {
    /// Reserve a place, or `None` if `max` are open.
    pub(crate) fn try_open(self: &Arc<Self>, max: usize) -> Option<ConnGuard> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnGuard {
                conns: self.clone(),
            })
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// A place among the open connections, freed on drop.
pub(crate) struct ConnGuard {
    conns: Arc<Connections>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.conns.open.fetch_sub(1, Ordering::AcqRel);
    }
}
