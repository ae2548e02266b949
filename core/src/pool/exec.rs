//! The one executor of the machine's actions: bookkeeping under the pool's lock, I/O in
//! supervised tasks after it is released, and the synchronous variant the `Drop` of the
//! pool uses.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::sync::{oneshot, Notify};

use super::supervise::{self, catch, Supervision};
use crate::backend::{Filesystem, KillStage, LaunchSpec, ProcessLauncher};
use crate::config::PoolConfig;
use crate::dropnet::{run_blocking_cleanup, DropNet};
use crate::error::{AcquireError, BackendError, BackendErrorKind, SessionError};
use crate::machine::{Action, Input, Lifecycle, TeardownBegun, Ticket};
use crate::session::SessionId;
use crate::time::{Clock, CoarseClock, Timestamp};

pub(super) type Reply = Result<SessionId, AcquireError>;

/// Called with every action the machine emits, in order, under the pool's lock.
pub(super) type Observer = Arc<dyn Fn(&Action) + Send + Sync>;

pub(super) struct Slot<L: ProcessLauncher> {
    pub(super) process: Option<Arc<L::Process>>,
    pub(super) net: DropNet<L>,
    pub(super) watcher: Option<tokio::task::AbortHandle>,
}

pub(super) struct Shared<L: ProcessLauncher> {
    pub(super) machine: Lifecycle,
    pub(super) slots: FxHashMap<SessionId, Slot<L>>,
    pub(super) replies: FxHashMap<Ticket, oneshot::Sender<Reply>>,
    pub(super) finished: FxHashMap<SessionId, Vec<oneshot::Sender<()>>>,
}

pub(crate) struct Inner<L: ProcessLauncher> {
    pub(super) config: PoolConfig,
    pub(super) instance: String,
    pub(super) launcher: Arc<L>,
    pub(super) fs: Arc<dyn Filesystem>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) coarse: Arc<CoarseClock>,
    /// The runtime the pool was built in: every task is spawned here, so methods called
    /// from threads without a runtime (`release_owner`, `Drop`s) never need one.
    pub(super) handle: tokio::runtime::Handle,
    pub(super) observer: Option<Observer>,
    pub(super) shared: Mutex<Shared<L>>,
    pub(super) wake: Notify,
    /// Counts dispatches: the machine may have changed. The ticking
    /// reaper compares it once per tick instead of polling `wake`.
    pub(super) changes: AtomicU64,
    /// Until when (ms) released owners' grace periods run: stamps must stay fresh until
    /// then even if nothing else reads them.
    pub(super) release_until: AtomicU64,
    pub(super) progress: Notify,
    pub(super) closed: AtomicBool,
    pub(super) recovered: Arc<AtomicU64>,
    pub(super) swept: AtomicU64,
    pub(super) swept_processes: AtomicU64,
    pub(super) supervision: Supervision,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the machine half-updated in a way
    // that matters more than stopping cleanup would, so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Work<L: ProcessLauncher> {
    Launch {
        id: SessionId,
        dir: PathBuf,
    },
    Kill {
        id: SessionId,
        process: Option<Arc<L::Process>>,
        stage: KillStage,
        attempt: u32,
        wait: Duration,
    },
    Remove {
        id: SessionId,
        dir: PathBuf,
    },
}

fn panicked(op: &'static str, msg: &str) -> BackendError {
    BackendError::new(op, BackendErrorKind::Other, format!("panicked: {msg}"))
}

impl<L: ProcessLauncher> Inner<L> {
    pub(super) fn lock(&self) -> MutexGuard<'_, Shared<L>> {
        lock(&self.shared)
    }

    pub(super) fn now(&self) -> Timestamp {
        let now = self.clock.now();
        self.coarse.refresh(now);
        now
    }

    pub(crate) fn session_error(&self, id: SessionId) -> SessionError {
        match self.lock().machine.activity(id) {
            Err(e) => e,
            // Ended flag set but the machine still has it live cannot happen; be safe.
            Ok(_) => SessionError::Unknown { id },
        }
    }

    /// An operation ended with the session at `max_uses`: let the machine retire it
    /// (it re-checks, and waits if another operation is still in flight).
    pub(crate) fn retire_hint(self: &Arc<Self>, id: SessionId) {
        self.feed(Input::RetireHint { id });
    }

    /// Record a caught panic.
    pub(super) fn note_panic(&self, what: &'static str, id: Option<SessionId>, msg: &str) {
        self.supervision.count_panic();
        match id {
            Some(id) => tracing::error!(session = %id, call = what, panic = %msg,
                "backend call panicked; the pool treats it as that step failing"),
            None => tracing::error!(call = what, panic = %msg,
                "pool task panicked; the pool treats it as that step failing"),
        }
    }

    pub(super) fn feed(self: &Arc<Self>, input: Input) {
        let now = self.now();
        let mut st = self.lock();
        st.machine.handle(now, input);
        self.dispatch(st);
    }

    /// Drain the machine's actions: bookkeeping under the lock, I/O in supervised tasks
    /// spawned on the pool's runtime after it is released (so a slow kill never holds the
    /// lock).
    pub(super) fn dispatch(self: &Arc<Self>, mut st: MutexGuard<'_, Shared<L>>) {
        let mut work: Vec<Work<L>> = Vec::new();
        while let Some(action) = st.machine.poll_action() {
            if let Some(observe) = &self.observer {
                observe(&action);
            }
            match action {
                Action::Launch { id } => {
                    let dir = st.machine.session_dir(id);
                    let net = self.net(None, Some(dir.clone()));
                    st.slots.insert(
                        id,
                        Slot {
                            process: None,
                            net,
                            watcher: None,
                        },
                    );
                    work.push(Work::Launch { id, dir });
                }
                Action::Reply { ticket, result } => {
                    if let Some(tx) = st.replies.remove(&ticket) {
                        if let Err(Ok(id)) = tx.send(result) {
                            // The requester went away after we admitted it.
                            let now = self.clock.now();
                            let _ = st.machine.destroy(now, id);
                        }
                    }
                }
                Action::Ending { .. } | Action::Reaped { .. } => {
                    for TeardownBegun {
                        id, stage, wait, ..
                    } in action.endings()
                    {
                        let slot = st.slots.get_mut(&id);
                        let process = slot.and_then(|s| {
                            if let Some(w) = s.watcher.take() {
                                w.abort();
                            }
                            s.process.clone()
                        });
                        work.push(Work::Kill {
                            id,
                            process,
                            stage,
                            attempt: 1,
                            wait,
                        });
                    }
                    if let Action::Reaped { sessions, .. } = action {
                        st.machine.recycle(sessions);
                    }
                }
                Action::Kill {
                    id,
                    stage,
                    attempt,
                    wait,
                } => {
                    let process = st.slots.get(&id).and_then(|s| s.process.clone());
                    work.push(Work::Kill {
                        id,
                        process,
                        stage,
                        attempt,
                        wait,
                    });
                }
                Action::RemoveDir { id, .. } => work.push(Work::Remove {
                    id,
                    dir: st.machine.session_dir(id),
                }),
                Action::Finished {
                    id, dir_removed, ..
                } => {
                    if dir_removed {
                        if let Some(mut slot) = st.slots.remove(&id) {
                            slot.net.disarm();
                        }
                    }
                    for tx in st.finished.remove(&id).unwrap_or_default() {
                        let _ = tx.send(());
                    }
                    self.progress.notify_waiters();
                }
            }
        }
        drop(st);
        for w in work {
            self.spawn_work(w);
        }
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_waiters();
    }

    fn net(&self, process: Option<Arc<L::Process>>, dir: Option<PathBuf>) -> DropNet<L> {
        DropNet {
            launcher: self.launcher.clone(),
            fs: self.fs.clone(),
            process,
            dir,
            recovered: self.recovered.clone(),
        }
    }

    /// Spawn `fut` on the pool's runtime; if it panics, count it and report `on_panic`
    /// to the machine.
    fn spawn_supervised(
        self: &Arc<Self>,
        what: &'static str,
        id: SessionId,
        fut: impl std::future::Future<Output = ()> + Send + 'static,
        on_panic: impl FnOnce(String) -> Input + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        self.handle.spawn(async move {
            if let Err(msg) = catch(fut).await {
                me.note_panic(what, Some(id), &msg);
                me.feed(on_panic(msg));
            }
        })
    }

    fn spawn_work(self: &Arc<Self>, w: Work<L>) {
        let me = self.clone();
        match w {
            Work::Launch { id, dir } => {
                self.spawn_supervised("launch", id, me.do_launch(id, dir), move |msg| {
                    Input::LaunchFailed {
                        id,
                        reason: format!("the launch panicked: {msg}"),
                    }
                });
            }
            Work::Kill {
                id,
                process,
                stage,
                attempt,
                wait,
            } => {
                self.spawn_supervised(
                    "kill",
                    id,
                    me.do_kill(id, process, stage, attempt, wait),
                    move |_| Input::KillTimedOut { id, attempt },
                );
            }
            Work::Remove { id, dir } => {
                self.spawn_supervised("remove_dir_all", id, me.do_remove(id, dir), move |msg| {
                    Input::RemoveFailed {
                        id,
                        error: panicked("remove_dir_all", &msg),
                    }
                });
            }
        }
    }

    async fn do_launch(self: Arc<Self>, id: SessionId, dir: PathBuf) {
        let deadline = self.clock.now().saturating_add(self.config.launch_timeout);
        let spec = LaunchSpec { id, dir };
        let result = async {
            self.fs.create_dir(&spec.dir).await?;
            tokio::select! {
                biased;
                r = self.launcher.launch(&spec) => r,
                _ = self.clock.sleep_until(deadline) => Err(BackendError::new(
                    "launch",
                    BackendErrorKind::TimedOut,
                    format!("no usable browser within {:?}", self.config.launch_timeout),
                )),
            }
        }
        .await;
        match result {
            Ok(process) => {
                let process = Arc::new(process);
                let now = self.now();
                let mut st = self.lock();
                match st.slots.get_mut(&id) {
                    Some(slot) if !self.closed.load(Ordering::Acquire) => {
                        slot.process = Some(process.clone());
                        slot.net.process = Some(process.clone());
                        let me = self.clone();
                        let p = process.clone();
                        let watcher = self.spawn_supervised(
                            "exited",
                            id,
                            async move {
                                let exit = me.launcher.exited(&p).await;
                                me.feed(Input::Exited { id, exit });
                            },
                            move |msg| Input::Exited {
                                id,
                                exit: format!("unknown: watching for its exit panicked: {msg}"),
                            },
                        );
                        if let Some(slot) = st.slots.get_mut(&id) {
                            slot.watcher = Some(watcher.abort_handle());
                        }
                        st.machine.handle(now, Input::Launched { id });
                        self.dispatch(st);
                    }
                    _ => {
                        // The pool was dropped meanwhile: the machine is gone, so the
                        // safety net takes this browser and its directory.
                        drop(st);
                        let _net = self.net(Some(process), Some(spec.dir));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "launch failed");
                self.feed(Input::LaunchFailed {
                    id,
                    reason: e.to_string(),
                });
            }
        }
    }

    async fn do_kill(
        self: Arc<Self>,
        id: SessionId,
        process: Option<Arc<L::Process>>,
        stage: KillStage,
        attempt: u32,
        wait: Duration,
    ) {
        let gone = match &process {
            None => true,
            Some(p) => {
                // A kill that panics may still have signalled: wait for the tree as usual.
                match catch(self.launcher.kill(p, stage)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(session = %id, error = %e, ?stage, "kill reported an error")
                    }
                    Err(msg) => self.note_panic("kill", Some(id), &msg),
                }
                let deadline = self.clock.now().saturating_add(wait);
                tokio::select! {
                    biased;
                    r = catch(self.launcher.wait_gone(p)) => match r {
                        Ok(()) => true,
                        Err(msg) => {
                            // Unproven: count the attempt as timed out, at its deadline,
                            // so that a wait_gone that always panics cannot spin.
                            self.note_panic("wait_gone", Some(id), &msg);
                            self.clock.sleep_until(deadline).await;
                            false
                        }
                    },
                    _ = self.clock.sleep_until(deadline) => false,
                }
            }
        };
        if gone {
            let now = self.now();
            let mut st = self.lock();
            if let Some(slot) = st.slots.get_mut(&id) {
                slot.net.processes_gone();
                slot.process = None;
            }
            st.machine.handle(now, Input::Gone { id });
            self.dispatch(st);
        } else {
            self.feed(Input::KillTimedOut { id, attempt });
        }
    }

    async fn do_remove(self: Arc<Self>, id: SessionId, dir: PathBuf) {
        let result = self.fs.remove_dir_all(&dir).await;
        let now = self.now();
        let mut st = self.lock();
        match result {
            Ok(()) => {
                if let Some(slot) = st.slots.get_mut(&id) {
                    slot.net.disarm();
                }
                st.machine.handle(now, Input::DirRemoved { id });
                st.slots.remove(&id);
            }
            Err(error) => st.machine.handle(now, Input::RemoveFailed { id, error }),
        }
        self.dispatch(st);
    }

    /// The pool is being dropped: tear every session down through the machine, as
    /// [`Pool::shutdown`](crate::Pool::shutdown) would, but synchronously, with the
    /// backend's synchronous calls ([`ProcessLauncher::kill_on_drop`],
    /// [`Filesystem::remove_dir_all_sync`]) and without spawning anything. Same
    /// `Ending`/`Finished` actions, counters and tombstones as every other teardown.
    ///
    /// Sessions whose launch is still in flight stay with their launch task, which hands
    /// the browser and directory to a [`DropNet`] when it completes (the machine is gone
    /// by then); whatever is left in the slot table afterwards is dropped, and its
    /// [`DropNet`] cleans it.
    pub(super) fn teardown_on_drop(self: &Arc<Self>) {
        let now = match supervise::sync(|| self.clock.now()) {
            Ok(now) => now,
            Err(msg) => {
                self.note_panic("clock.now", None, &msg);
                Timestamp::ZERO
            }
        };
        let mut st = self.lock();
        // Requesters still waiting get `ShuttingDown` when their sender is dropped.
        st.replies.clear();
        st.machine.shutdown(now);
        loop {
            let mut kills = Vec::new();
            let mut removes = Vec::new();
            while let Some(action) = st.machine.poll_action() {
                if let Some(observe) = &self.observer {
                    observe(&action);
                }
                match action {
                    Action::Ending { .. } | Action::Reaped { .. } => {
                        for TeardownBegun { id, .. } in action.endings() {
                            let process = st.slots.get_mut(&id).and_then(|s| {
                                if let Some(w) = s.watcher.take() {
                                    w.abort();
                                }
                                s.process.take()
                            });
                            kills.push((id, process));
                        }
                    }
                    Action::Kill { id, .. } => {
                        let process = st.slots.get_mut(&id).and_then(|s| s.process.take());
                        kills.push((id, process));
                    }
                    Action::RemoveDir { id, .. } => removes.push((id, st.machine.session_dir(id))),
                    Action::Finished { id, .. } => {
                        // Processes gone and the directory removed, or its removal failed
                        // just now and is left to the next start's sweep: either way the
                        // safety net has nothing more to do.
                        if let Some(mut slot) = st.slots.remove(&id) {
                            slot.net.disarm();
                        }
                        for tx in st.finished.remove(&id).unwrap_or_default() {
                            let _ = tx.send(());
                        }
                    }
                    // No launch follows a shutdown; replies have no one to go to.
                    Action::Launch { .. } | Action::Reply { .. } => {}
                }
            }
            if kills.is_empty() && removes.is_empty() {
                break;
            }
            drop(st);
            let mut removed = Vec::with_capacity(removes.len());
            run_blocking_cleanup(|| {
                for (id, process) in &kills {
                    if let Some(p) = process {
                        if let Err(msg) = supervise::sync(|| self.launcher.kill_on_drop(p)) {
                            self.note_panic("kill_on_drop", Some(*id), &msg);
                        }
                        self.recovered.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(session = %id, "pool dropped without shutdown: killed its browser");
                    }
                }
                for (id, dir) in &removes {
                    let r = supervise::sync(|| self.fs.remove_dir_all_sync(dir)).unwrap_or_else(
                        |msg| {
                            self.note_panic("remove_dir_all_sync", Some(*id), &msg);
                            Err(panicked("remove_dir_all_sync", &msg))
                        },
                    );
                    removed.push((*id, r));
                }
            });
            st = self.lock();
            for (id, process) in kills {
                // kill_on_drop is the backend's strongest synchronous kill; there is no
                // later chance to wait, so the tree counts as gone after it.
                if let Some(slot) = st.slots.get_mut(&id) {
                    slot.net.processes_gone();
                }
                drop(process);
                st.machine.handle(now, Input::Gone { id });
            }
            for (id, r) in removed {
                match r {
                    Ok(()) => st.machine.handle(now, Input::DirRemoved { id }),
                    // Not retried (nobody is left to); the next start's sweep removes it.
                    Err(error) => st.machine.handle(now, Input::RemoveFailed { id, error }),
                }
            }
        }
        let mut left: Vec<SessionId> = st.slots.keys().copied().collect();
        left.sort_unstable();
        let slots: Vec<Slot<L>> = left
            .into_iter()
            .filter_map(|id| st.slots.remove(&id))
            .collect();
        drop(st);
        for mut slot in slots {
            if let Some(w) = slot.watcher.take() {
                w.abort();
            }
            drop(slot); // its DropNet kills and removes what is left
        }
    }
}
