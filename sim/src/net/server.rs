//! The RPC server: line-delimited JSON over turmoil TCP, in front of a real async
//! [`Pool`].

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use browserpool::{OwnerKey, Pool, ProcessLauncher, SessionError, SessionId};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use turmoil::net::{TcpListener, TcpStream};

use super::proto::{ErrorKind, Op, Reply, Request, Response};

/// How the server treats its connections.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// After a connection drops, its sessions are destroyed unless used again within this.
    pub grace: Duration,
    /// A connection that sends nothing (not even a ping) for this long while the server
    /// waits for a request is considered vanished and closed: this is how a peer that
    /// disappeared without FIN or RST (partition, hang) is detected.
    pub keepalive: Duration,
    /// Longest `hold_ms` accepted for an operation (longer ones are capped).
    pub max_hold: Duration,
    /// Call [`Pool::release_owner`] when a connection drops. Always true in production;
    /// false only to prove that the invariants catch a server that forgets to.
    pub release_on_disconnect: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            grace: Duration::from_secs(30),
            keepalive: Duration::from_secs(20),
            max_hold: Duration::from_secs(60),
            release_on_disconnect: true,
        }
    }
}

/// Why the server closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed it (EOF).
    Eof,
    /// Reading or writing failed (reset, broken pipe).
    IoError,
    /// Nothing arrived for [`ServerConfig::keepalive`].
    KeepaliveTimeout,
}

/// What the server did, for the harness's invariants.
#[derive(Clone, Debug)]
pub enum ServerEvent {
    /// A connection was accepted.
    Opened {
        /// Connection number within this server incarnation.
        conn: u64,
        /// The peer.
        peer: SocketAddr,
        /// Simulated time.
        at: Duration,
    },
    /// A connection was closed and its owner released.
    Closed {
        /// Connection number within this server incarnation.
        conn: u64,
        /// The peer.
        peer: SocketAddr,
        /// Why.
        reason: CloseReason,
        /// Sessions created on this connection and not destroyed through it.
        sessions: Vec<SessionId>,
        /// How many sessions `release_owner` put on notice.
        released: usize,
        /// Simulated time.
        at: Duration,
    },
}

/// A shared, append-only log of [`ServerEvent`]s (single-threaded, like a turmoil sim).
#[derive(Clone, Default)]
pub struct ServerLog(Rc<RefCell<Vec<ServerEvent>>>);

impl ServerLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&self, e: ServerEvent) {
        self.0.borrow_mut().push(e);
    }

    /// The number of events so far.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// A copy of the events from index `from` on.
    pub fn since(&self, from: usize) -> Vec<ServerEvent> {
        self.0
            .borrow()
            .get(from..)
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }
}

/// The simulated time of the current turmoil host (zero outside a simulation).
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// Accept connections forever, serving each on its own local task.
///
/// Guarantees:
/// - every connection gets its own [`OwnerKey`] (`<label>-<n>`), and every session it
///   creates is acquired for that owner;
/// - requests on one connection are answered in order, one [`Response`] each; the answer
///   to `create`, `operate` and `destroy` is bounded by the pool's own bounds
///   (`acquire_timeout` + `launch_timeout`; `hold_ms` capped at
///   [`ServerConfig::max_hold`]; the kill budget);
/// - when a connection ends (EOF, I/O error, or [`ServerConfig::keepalive`] without a
///   byte while waiting for a request), [`Pool::release_owner`] is called with
///   [`ServerConfig::grace`] and a [`ServerEvent::Closed`] is logged. This is done on the
///   normal code path, never from a destructor, so a server that is killed runs none of
///   it (as a real crash would not).
///
/// Must run inside a tokio `LocalSet` (every turmoil host does). Returns only if
/// `accept` fails.
pub async fn serve<L: ProcessLauncher>(
    listener: TcpListener,
    pool: Arc<Pool<L>>,
    config: ServerConfig,
    label: String,
    log: ServerLog,
) -> std::io::Result<()> {
    let mut next = 0u64;
    loop {
        let (stream, peer) = listener.accept().await?;
        next += 1;
        let conn = next;
        log.push(ServerEvent::Opened {
            conn,
            peer,
            at: sim_now(),
        });
        let owner = OwnerKey::new(format!("{label}-{conn}"));
        tokio::task::spawn_local(handle_conn(
            stream,
            peer,
            conn,
            owner,
            pool.clone(),
            config.clone(),
            log.clone(),
        ));
    }
}

async fn handle_conn<L: ProcessLauncher>(
    stream: TcpStream,
    peer: SocketAddr,
    conn: u64,
    owner: OwnerKey,
    pool: Arc<Pool<L>>,
    config: ServerConfig,
    log: ServerLog,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut sessions: BTreeSet<SessionId> = BTreeSet::new();
    let reason = loop {
        let line = match tokio::time::timeout(config.keepalive, lines.next_line()).await {
            Err(_) => break CloseReason::KeepaliveTimeout,
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => break CloseReason::Eof,
            Ok(Err(_)) => break CloseReason::IoError,
        };
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(req) => Response {
                seq: req.seq,
                reply: handle(&pool, &owner, &config, &mut sessions, req.op).await,
            },
            Err(e) => Response {
                seq: 0,
                reply: Reply::Error {
                    kind: ErrorKind::BadRequest,
                    message: e.to_string(),
                },
            },
        };
        let mut out = match serde_json::to_string(&response) {
            Ok(s) => s,
            Err(_) => break CloseReason::IoError,
        };
        out.push('\n');
        if write.write_all(out.as_bytes()).await.is_err() {
            break CloseReason::IoError;
        }
    };
    let released = if config.release_on_disconnect {
        pool.release_owner(&owner, config.grace)
    } else {
        0
    };
    log.push(ServerEvent::Closed {
        conn,
        peer,
        reason,
        sessions: sessions.into_iter().collect(),
        released,
        at: sim_now(),
    });
}

fn session_error(e: &SessionError) -> Reply {
    let kind = match e {
        SessionError::Ended { .. } | SessionError::TeardownPending { .. } => {
            ErrorKind::SessionEnded
        }
        // A future kind of session error is reported as unknown: the client acquires anew.
        _ => ErrorKind::UnknownSession,
    };
    Reply::Error {
        kind,
        message: e.to_string(),
    }
}

async fn handle<L: ProcessLauncher>(
    pool: &Pool<L>,
    owner: &OwnerKey,
    config: &ServerConfig,
    sessions: &mut BTreeSet<SessionId>,
    op: Op,
) -> Reply {
    match op {
        Op::Ping => Reply::Pong,
        Op::Create => match pool.acquire_for(owner.clone()).await {
            Ok(lease) => {
                sessions.insert(lease.id());
                Reply::Created { id: lease.id().0 }
            }
            Err(e) => Reply::Error {
                kind: ErrorKind::AcquireFailed,
                message: e.to_string(),
            },
        },
        Op::Operate { id, hold_ms } => {
            let lease = match pool.session(SessionId(id)) {
                Ok(l) => l,
                Err(e) => return session_error(&e),
            };
            let guard = match lease.begin_op() {
                Ok(g) => g,
                Err(e) => return session_error(&e),
            };
            tokio::time::sleep(Duration::from_millis(hold_ms).min(config.max_hold)).await;
            drop(guard);
            Reply::Operated
        }
        Op::Destroy { id } => {
            let id = SessionId(id);
            sessions.remove(&id);
            match pool.destroy(id).await {
                Ok(()) => Reply::Destroyed,
                Err(e) => session_error(&e),
            }
        }
    }
}
