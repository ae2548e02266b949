//! The wire protocol: one JSON object per line, each way.
//!
//! A client sends [`Request`]s and the server answers each one, in order, with exactly
//! one [`Response`] carrying the same `seq`.

use serde::{Deserialize, Serialize};

/// What a client asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Acquire a new session owned by this connection.
    Create,
    /// Run an operation on session `id` that lasts `hold_ms` simulated milliseconds.
    Operate {
        /// The session.
        id: u64,
        /// How long the operation holds the session busy.
        hold_ms: u64,
    },
    /// Destroy session `id`.
    Destroy {
        /// The session.
        id: u64,
    },
    /// Keepalive; touches no session.
    Ping,
}

/// A request line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Client-chosen sequence number, echoed in the response.
    pub seq: u64,
    /// The operation.
    #[serde(flatten)]
    pub op: Op,
}

/// Classes of errors the server reports; every one is a "clear error" a client can act on
/// except [`ErrorKind::BadRequest`], which means a client or server bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The session has ended (reaped, evicted, released, destroyed...).
    SessionEnded,
    /// The session id is unknown to this server incarnation.
    UnknownSession,
    /// No session could be acquired (capacity, queue, launch failure, shutdown).
    AcquireFailed,
    /// The request could not be parsed.
    BadRequest,
}

/// The outcome of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    /// A session was created.
    Created {
        /// Its id.
        id: u64,
    },
    /// The operation ran to completion.
    Operated,
    /// The session was destroyed.
    Destroyed,
    /// Answer to a ping.
    Pong,
    /// The request failed.
    Error {
        /// Error class.
        kind: ErrorKind,
        /// Human-readable reason (the pool's error message).
        message: String,
    },
}

/// A response line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request's sequence number.
    pub seq: u64,
    /// The outcome.
    #[serde(flatten)]
    pub reply: Reply,
}
