#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The real async `Pool` and the production startup sweep, running on the simulated
//! backend (`SimBackend`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use browserpool::{EntryKind, Pool, PoolConfig};
use browserpool_sim::world::backend::{SimBackend, SimClock};
use browserpool_sim::world::{KillBehaviour, Owner, World, WorldConfig};

fn config() -> PoolConfig {
    PoolConfig::default()
        .with_max_browsers(2)
        .with_root(PathBuf::from("/tmp"))
        .with_prefix("chromelambda-")
}

#[tokio::test(flavor = "current_thread")]
async fn async_pool_runs_on_the_simulated_backend_and_sweeps_only_what_is_ours() {
    let world = Arc::new(Mutex::new(World::new(WorldConfig::default(), 3)));
    // Leftovers of a crashed predecessor (dead marker, a dir with a live orphan tree)
    // and neighbours that must survive.
    let (orphan, neighbour) = {
        let mut w = world.lock().unwrap();
        let dead = Path::new("/tmp/chromelambda-00000000dead-1");
        w.place(dead, EntryKind::Dir, 1000, Owner::Ours(0));
        let orphan = w
            .spawn_tree(dead, Owner::Ours(0), 12, KillBehaviour::default())
            .unwrap();
        let (holder_pid, holder_gen) = w.spawn_unrelated("old server").unwrap();
        let marker = Path::new("/tmp/chromelambda-00000000dead.lock");
        w.lock_marker(marker, (holder_pid, holder_gen), Owner::Ours(0))
            .unwrap();
        w.unlock_marker(marker); // that server died
        let live_dir = Path::new("/tmp/chromelambda-0000000a11ce-1");
        w.place(live_dir, EntryKind::Dir, 1000, Owner::Neighbour);
        let neighbour = w
            .spawn_tree(live_dir, Owner::Neighbour, 12, KillBehaviour::default())
            .unwrap();
        let other = w.spawn_unrelated("second pool server").unwrap();
        w.lock_marker(
            Path::new("/tmp/chromelambda-0000000a11ce.lock"),
            other,
            Owner::Neighbour,
        )
        .unwrap();
        w.place(
            Path::new("/tmp/chromelambda-other-user"),
            EntryKind::Dir,
            1001,
            Owner::Neighbour,
        );
        w.place(
            Path::new("/tmp/chromelambda-link"),
            EntryKind::Symlink,
            1000,
            Owner::Neighbour,
        );
        (orphan, neighbour)
    };
    let (launcher, fs) = SimBackend::with_incarnation(world.clone(), 1);
    let clock = SimClock::new(world.clone());
    let pool = Pool::builder(config(), launcher)
        .filesystem(Arc::new(fs))
        .clock(Arc::new(clock.clone()))
        .instance("00000000beef")
        .build()
        .await
        .unwrap();
    let report = pool.sweep_report().clone();
    assert_eq!(report.killed.len(), 1, "{report:#?}");
    assert_eq!(report.removed.len(), 2, "{report:#?}");
    {
        let mut w = world.lock().unwrap();
        assert!(!w.tree_alive(orphan.0, orphan.1));
        assert!(w.tree_alive(neighbour.0, neighbour.1));
        assert!(w.exists(Path::new("/tmp/chromelambda-other-user")));
        assert!(w.exists(Path::new("/tmp/chromelambda-link")));
        assert!(w.exists(Path::new("/tmp/chromelambda-0000000a11ce-1")));
        assert!(w.take_violations().is_empty());
    }

    let lease = pool.acquire().await.unwrap();
    let id = lease.id();
    let dir = pool.session_dir(id);
    assert!(world.lock().unwrap().exists(&dir));
    assert_eq!(world.lock().unwrap().ours_live().0, 1);
    drop(lease);
    pool.destroy(id).await.unwrap();
    assert!(!world.lock().unwrap().exists(&dir));
    assert_eq!(world.lock().unwrap().ours_live().0, 0);
    pool.shutdown().await;
    drop(pool);
    assert!(world.lock().unwrap().take_violations().is_empty());
}
