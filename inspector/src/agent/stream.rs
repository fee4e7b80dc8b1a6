//! `/api/flows` written as it is made: the flows are named one at a time
//! ([`crate::session::FlowTable`]) into chunks of about 64 KiB, and at most `IN_FLIGHT`
//! chunks wait for the HTTP side. So an answer of 100,000 flows (40 MB of NDJSON) holds
//! about 1 MiB, not the answer. The session thread writes it (it owns the session), and a
//! client that takes no chunk for `STALL` is cut off (its body ends in an error, never
//! silently short: a body is complete only with the empty chunk that ends it), so a stuck
//! client cannot stop the agent's rounds for longer.
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::{
    api::{self, ApiFilter},
    http::{Answer, Chunk},
};
use crate::session::{Session, SessionError};

/// A chunk is sent once it holds this much.
const CHUNK: usize = 64 * 1024;
/// Chunks written and not yet taken by the HTTP side, at most.
const IN_FLIGHT: usize = 16;
/// How long a chunk may wait for room before the client is cut off.
const STALL: Duration = Duration::from_secs(5);

/// Why writing stopped early.
#[derive(Debug, thiserror::Error)]
pub enum Stop {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("{0}")]
    Sink(String),
}

/// Answers `/api/flows`: the reply first (a stream, or the error that the flows cannot be
/// read: a 500, not a cut body), then the chunks as the HTTP side takes them.
pub fn flows(
    s: &Session,
    f: &ApiFilter,
    reply: tokio::sync::oneshot::Sender<Result<Answer, String>>,
) {
    let table = match s.flow_table() {
        Ok(t) => t,
        Err(e) => {
            let _ = reply.send(Err(e.to_string()));
            return;
        }
    };
    let (tx, rx) = mpsc::channel::<Chunk>(IN_FLIGHT);
    if reply.send(Ok(Answer::Records(rx))).is_err() {
        return; // the client has gone
    }
    // Complete only with the empty chunk at the end: without it the HTTP side ends the
    // body in an error, so the client sees it cut.
    let done = api::write_flows(s, &table, f, CHUNK, |chunk| push(&tx, chunk))
        .and_then(|()| push(&tx, Vec::new()));
    if let Err(e) = done {
        eprintln!("inspector: warning: /api/flows answer cut off: {e}");
    }
}

/// Hands one chunk over, waiting at most `STALL` for room.
fn push(tx: &mpsc::Sender<Chunk>, chunk: Vec<u8>) -> Result<(), Stop> {
    let mut item: Chunk = Bytes::from(chunk);
    let deadline = Instant::now() + STALL;
    loop {
        match tx.try_send(item) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(_)) => return Err(Stop::Sink("the client has gone".into())),
            Err(TrySendError::Full(back)) => {
                if Instant::now() >= deadline {
                    return Err(Stop::Sink(format!(
                        "the client took no data for {} s",
                        STALL.as_secs()
                    )));
                }
                item = back;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}
