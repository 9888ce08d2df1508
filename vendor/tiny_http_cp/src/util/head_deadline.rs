//! chinaport-proxy patch: the deadlines of a request's head and body, and what one host holds
//! without a complete request.
//!
//! A socket read timeout bounds each `recv`, so a client that sends one byte every few seconds
//! keeps a connection (and its thread) forever. `HeadDeadlineReader` sits under the connection's
//! `BufReader`: once the first byte of a request head has arrived, every further `recv` until
//! the head is complete may only wait for what is left of `header_timeout`; once the head is
//! complete, the body must arrive within `body_timeout`. Past either, reads fail with `TimedOut`
//! and the connection is marked broken (tiny_http answers 408 and closes). A head that arrives
//! in one `recv`, the usual case, costs no system call at all.
//!
//! The same clock counts the connection as *pending* for its host (see `admission.rs`) from
//! the first byte of a head (or from accept, for a new connection) until its request is
//! complete (body read, or answered).

use std::io::{ErrorKind, Read, Result as IoResult};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::util::admission::PendingSlot;

/// Shared between the connection (which says when a head starts and ends), its reader and its
/// requests (which say when they are complete, or that the connection broke).
pub(crate) struct HeadClock {
    limit: Option<Duration>,
    body_limit: Option<Duration>,
    idle: Option<Duration>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Between the start of reading a head and its end.
    awaiting: bool,
    /// Set by the head's first byte, then by the head's end (for the body).
    deadline: Option<Instant>,
    /// The socket's read timeout was shortened and must be set back to `idle`.
    shortened: bool,
    /// A deadline passed or a response could not be written: the connection must close.
    broken: bool,
    /// Counts this connection as pending for its host while a request is incomplete.
    pending: Option<PendingSlot>,
    /// Takes a `PendingSlot` when a later head starts.
    pending_source: Option<crate::util::admission::PendingSource>,
}

impl HeadClock {
    pub(crate) fn new(
        limit: Option<Duration>,
        body_limit: Option<Duration>,
        idle: Option<Duration>,
        pending: Option<PendingSlot>,
        pending_source: Option<crate::util::admission::PendingSource>,
    ) -> Arc<HeadClock> {
        Arc::new(HeadClock {
            limit,
            body_limit,
            idle,
            state: Mutex::new(State {
                pending,
                pending_source,
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn begin_head(&self) {
        let mut s = self.state();
        s.awaiting = true;
        s.deadline = None;
    }

    /// The head is complete; its body (if any) must follow within `body_limit`.
    pub(crate) fn end_head(&self) {
        let mut s = self.state();
        s.awaiting = false;
        s.deadline = self.body_limit.map(|l| Instant::now() + l);
    }

    /// The request is complete (its body read, or it is being answered): no more deadline, and
    /// the connection no longer counts as pending for its host.
    pub(crate) fn complete(&self) {
        let mut s = self.state();
        if !s.awaiting {
            s.deadline = None;
        }
        s.pending = None;
    }

    /// The connection must close after the current request.
    pub(crate) fn mark_broken(&self) {
        self.state().broken = true;
    }

    pub(crate) fn broken(&self) -> bool {
        self.state().broken
    }
}

pub(crate) struct HeadDeadlineReader<R> {
    inner: R,
    /// A handle on the same socket, to change its read timeout; `None`: no deadline.
    socket: Option<Connection>,
    clock: Arc<HeadClock>,
}

impl<R> HeadDeadlineReader<R> {
    pub(crate) fn new(inner: R, socket: Option<Connection>, clock: Arc<HeadClock>) -> Self {
        HeadDeadlineReader {
            inner,
            socket,
            clock,
        }
    }
}

impl<R: Read> Read for HeadDeadlineReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if let Some(socket) = &self.socket {
            let mut s = self.clock.state();
            if s.broken {
                return Err(ErrorKind::TimedOut.into());
            }
            match s.deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        s.broken = true;
                        return Err(ErrorKind::TimedOut.into());
                    }
                    let wait = match self.clock.idle {
                        Some(idle) => left.min(idle),
                        None => left,
                    };
                    socket.set_read_timeout(Some(wait))?;
                    s.shortened = true;
                }
                None if s.shortened => {
                    socket.set_read_timeout(self.clock.idle)?;
                    s.shortened = false;
                }
                None => {}
            }
        }
        let result = self.inner.read(buf);
        let mut s = self.clock.state();
        match &result {
            Ok(n) if *n > 0 && s.awaiting && s.deadline.is_none() => {
                // the first byte of a head: its deadline starts, and the connection is pending
                s.deadline = self.clock.limit.map(|l| Instant::now() + l);
                if s.pending.is_none() {
                    s.pending = s.pending_source.as_ref().map(|p| p.take());
                }
            }
            // a shortened read timeout ran out: the deadline passed (`WouldBlock` on Unix)
            Err(e)
                if s.deadline.is_some()
                    && matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) =>
            {
                s.broken = true;
                return Err(ErrorKind::TimedOut.into());
            }
            _ => {}
        }
        result
    }
}
