//! A point-in-time listing of the sessions a [`Lifecycle`] tracks, for status pages,
//! HTTP APIs and metrics. Reading it changes nothing: no activity is stamped, no
//! deadline moves.

use std::path::PathBuf;
use std::time::Duration;

use super::table::State;
use super::{Lifecycle, Phase};
use crate::session::{EndReason, OwnerKey, SessionId};
use crate::time::Timestamp;

/// One session as [`Lifecycle::snapshot`] (or [`Pool::sessions`](crate::Pool::sessions))
/// saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session.
    pub id: SessionId,
    /// Who it belongs to, if it was acquired with an owner.
    pub owner: Option<OwnerKey>,
    /// Where it is in its life.
    pub phase: Phase,
    /// Client operations in flight (the session is busy while this is above zero).
    pub in_flight: u32,
    /// How long since its last stamped client activity (stamps are up to one `tick`
    /// coarse). Zero while busy.
    pub idle_for: Duration,
    /// Client operations counted so far (what `max_uses` limits).
    pub uses: u64,
    /// How long since its browser came up (since the launch began while launching).
    pub age: Duration,
    /// Its owner was released and the grace period is running: it is destroyed when the
    /// grace ends unless it is used again.
    pub on_notice: bool,
    /// Why it is ending, once teardown has begun (`Stopping` or `Removing`).
    pub ending: Option<EndReason>,
    /// Its directory.
    pub dir: PathBuf,
}

impl SessionInfo {
    /// Whether a client operation is in flight.
    pub fn is_busy(&self) -> bool {
        self.in_flight > 0
    }
}

impl Lifecycle {
    /// Every session the machine tracks (any phase), in id order, as of `now`.
    /// O(n log n) in tracked sessions; meant for status requests, not hot paths.
    pub fn snapshot(&self, now: Timestamp) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .table
            .iter()
            .map(|(h, c)| {
                let id = h.id;
                let in_flight = h.activity.in_flight();
                let (phase, ending) = match &c.state {
                    State::Launching { .. } => (Phase::Launching, None),
                    State::Live => (Phase::Live, None),
                    State::Stopping { reason, .. } => (Phase::Stopping, Some(reason.clone())),
                    State::Removing { reason, .. } => (Phase::Removing, Some(reason.clone())),
                };
                SessionInfo {
                    id,
                    owner: c.owner.clone(),
                    phase,
                    in_flight,
                    idle_for: if in_flight > 0 {
                        Duration::ZERO
                    } else {
                        now.saturating_since(h.activity.last_active())
                    },
                    uses: h.activity.uses(),
                    age: now.saturating_since(c.launched_at),
                    on_notice: c.release.is_some() && phase == Phase::Live,
                    ending,
                    dir: self.dirs.dir(id),
                }
            })
            .collect();
        out.sort_unstable_by_key(|i| i.id);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::machine::{Action, Input};
    use crate::PoolConfig;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn launched(m: &mut Lifecycle, now: Timestamp, owner: &str) -> SessionId {
        m.acquire(now, Some(OwnerKey::new(owner)));
        let mut id = None;
        while let Some(a) = m.poll_action() {
            if let Action::Launch { id: i, .. } = a {
                id = Some(i);
            }
        }
        let id = id.unwrap();
        m.handle(now, Input::Launched { id });
        while m.poll_action().is_some() {}
        id
    }

    #[test]
    fn snapshot_lists_every_phase_with_owner_idle_time_uses_and_notice() {
        let config = PoolConfig {
            root: "/tmp/snapshot-test".into(),
            ..PoolConfig::default()
        };
        let mut m = Lifecycle::new(config, "0123456789ab").unwrap();
        let a = launched(&mut m, t(1_000), "conn-a");
        let b = launched(&mut m, t(2_000), "conn-b");
        // a: two operations, the second still in flight.
        let act = m.activity(a).unwrap().clone();
        act.begin_op(t(3_000));
        act.end_op(t(3_500));
        act.begin_op(t(4_000));
        // b's owner went away.
        assert_eq!(
            m.release_owner(t(4_000), &OwnerKey::new("conn-b"), Duration::from_secs(60)),
            1
        );
        // A third one still launching.
        m.acquire(t(4_500), None);
        while m.poll_action().is_some() {}

        let snap = m.snapshot(t(5_000));
        assert_eq!(snap.len(), 3);
        let (sa, sb, sc) = (&snap[0], &snap[1], &snap[2]);
        assert_eq!((sa.id, sb.id), (a, b));
        assert_eq!(sa.owner, Some(OwnerKey::new("conn-a")));
        assert_eq!(sa.phase, Phase::Live);
        assert!(sa.is_busy());
        assert_eq!(sa.idle_for, Duration::ZERO);
        assert_eq!(sa.uses, 2);
        assert_eq!(sa.age, Duration::from_secs(4));
        assert!(!sa.on_notice);
        assert_eq!(sb.idle_for, Duration::from_secs(3));
        assert_eq!(sb.uses, 0);
        assert!(sb.on_notice);
        assert_eq!(sc.phase, Phase::Launching);
        assert_eq!(sc.owner, None);
        assert!(sa.dir.to_string_lossy().contains("0123456789ab"));

        // Teardown shows the reason; reading the snapshot stamped nothing.
        m.destroy(t(5_000), b).unwrap();
        let snap = m.snapshot(t(6_000));
        assert_eq!(snap[1].phase, Phase::Stopping);
        assert_eq!(snap[1].ending, Some(EndReason::Destroyed));
        assert!(!snap[1].on_notice);
        assert_eq!(m.activity(a).unwrap().last_active(), t(4_000));
    }
}
