//! chinaport-proxy patch: a deadline for a complete request head.
//!
//! A socket read timeout bounds each `recv`, so a client that sends one header byte every few
//! seconds keeps a connection (and its thread) forever. `HeadDeadlineReader` sits under the
//! connection's `BufReader`: once the first byte of a request head has arrived, every further
//! `recv` until the head is complete may only wait for what is left of `header_timeout`, and
//! then fails with `TimedOut` (tiny_http answers 408 and closes). A head that arrives in one
//! `recv`, the usual case, costs no system call at all.

use std::io::{ErrorKind, Read, Result as IoResult};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;

/// Shared between the connection (which says when a head starts and ends) and its reader.
pub(crate) struct HeadClock {
    limit: Option<Duration>,
    idle: Option<Duration>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Between the start of reading a head and its end.
    awaiting: bool,
    /// Set by the head's first byte.
    deadline: Option<Instant>,
    /// The socket's read timeout was shortened and must be set back to `idle`.
    shortened: bool,
}

impl HeadClock {
    pub(crate) fn new(limit: Option<Duration>, idle: Option<Duration>) -> Arc<HeadClock> {
        Arc::new(HeadClock {
            limit,
            idle,
            state: Mutex::new(State::default()),
        })
    }

    pub(crate) fn begin_head(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.awaiting = true;
            s.deadline = None;
        }
    }

    pub(crate) fn end_head(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.awaiting = false;
            s.deadline = None;
        }
    }
}

pub(crate) struct HeadDeadlineReader<R> {
    inner: R,
    /// A handle on the same socket, to change its read timeout; `None`: no head deadline.
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
        let Some(socket) = &self.socket else {
            return self.inner.read(buf);
        };
        if let Ok(mut s) = self.clock.state.lock() {
            match s.deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
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
        let n = self.inner.read(buf)?;
        if n > 0 {
            if let (Ok(mut s), Some(limit)) = (self.clock.state.lock(), self.clock.limit) {
                if s.awaiting && s.deadline.is_none() {
                    s.deadline = Some(Instant::now() + limit);
                }
            }
        }
        Ok(n)
    }
}
