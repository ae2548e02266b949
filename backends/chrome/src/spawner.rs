//! The one thread that forks every browser, so that kill-on-parent-death cannot fire
//! early.
//!
//! `PR_SET_PDEATHSIG` does not follow the parent *process*: it fires when the *thread*
//! that forked the child exits. Forking from a tokio worker or blocking-pool thread
//! (which exits after about 10 s idle) therefore kills the browser at a random moment.
//! Here every browser is forked by one dedicated thread that is started once per process
//! and never returns (its request channel's sender is a static that is never dropped),
//! so the death signal fires exactly when the whole process dies, however it dies
//! (including SIGKILL and OOM kills).
//!
//! In the child, between `fork` and `exec`, the pre-exec hook sets
//! `PR_SET_PDEATHSIG(SIGKILL)` and then checks that the parent is still the process that
//! forked it: if the parent died between `fork` and `prctl`, the child has already been
//! reparented and would never get the signal, so it exits instead.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, Command};
use std::sync::mpsc;
use std::sync::Mutex;

use rustix::process::{Pid, Signal};
use tokio::sync::oneshot;

/// A child forked by the spawner thread, leader of its own process group.
pub(crate) struct Spawned {
    /// Its PID, which is also its process group id.
    pub pid: Pid,
    /// Its stderr pipe, if it was piped.
    pub stderr: Option<ChildStderr>,
}

struct Request {
    cmd: Command,
    kill_on_parent_death: bool,
    reply: oneshot::Sender<io::Result<Spawned>>,
}

static SPAWNER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);

fn sender() -> io::Result<mpsc::Sender<Request>> {
    let mut guard = SPAWNER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = guard.as_ref() {
        return Ok(tx.clone());
    }
    let (tx, rx) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("browserpool-chrome-spawner".into())
        .spawn(move || spawner_loop(rx))?;
    *guard = Some(tx.clone());
    Ok(tx)
}

fn spawner_loop(rx: mpsc::Receiver<Request>) {
    // The sender lives in a static and is never dropped, so this loop never ends while
    // the process lives: the thread children are forked from never exits.
    while let Ok(req) = rx.recv() {
        serve(req);
    }
}

fn serve(req: Request) {
    let Request {
        mut cmd,
        kill_on_parent_death,
        reply,
    } = req;
    let parent = rustix::process::getpid();
    cmd.process_group(0);
    if kill_on_parent_death {
        // SAFETY: the hook runs in the forked child before exec and only makes raw system
        // calls (prctl, getppid), which are async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                if rustix::process::getppid() != Some(parent) {
                    // The parent died before the death signal was armed.
                    return Err(io::Error::from_raw_os_error(
                        rustix::io::Errno::SRCH.raw_os_error(),
                    ));
                }
                Ok(())
            });
        }
    }
    match cmd.spawn() {
        Ok(mut child) => {
            let pid = Pid::from_child(&child);
            let stderr = child.stderr.take();
            // `std::process::Child` neither kills nor reaps on drop: the launcher owns the
            // process from here on through its PID.
            drop(child);
            if let Err(Ok(orphan)) = reply.send(Ok(Spawned { pid, stderr })) {
                // The launch future was dropped while we forked: nobody owns this child,
                // so kill its group and reap it here (off this thread, which must stay
                // free for other launches).
                let _ = rustix::process::kill_process_group(orphan.pid, Signal::KILL);
                drop(orphan.stderr);
                let _ = std::thread::Builder::new()
                    .name("browserpool-chrome-reap".into())
                    .spawn(move || {
                        let _ = rustix::process::waitpid(
                            Some(orphan.pid),
                            rustix::process::WaitOptions::empty(),
                        );
                    });
            }
        }
        Err(e) => {
            let _ = reply.send(Err(e));
        }
    }
}

/// Fork `cmd` from the spawner thread as the leader of a new process group, with
/// `PR_SET_PDEATHSIG(SIGKILL)` armed against this process if `kill_on_parent_death`.
///
/// Cancel-safe: if the returned future is dropped before it resolves, a child forked for
/// it is killed and reaped by the spawner.
pub(crate) async fn spawn(cmd: Command, kill_on_parent_death: bool) -> io::Result<Spawned> {
    let (reply, rx) = oneshot::channel();
    sender()?
        .send(Request {
            cmd,
            kill_on_parent_death,
            reply,
        })
        .map_err(|_| io::Error::other("the browser spawner thread is gone"))?;
    rx.await
        .map_err(|_| io::Error::other("the browser spawner thread dropped the request"))?
}
