//! The slot a call's reply comes back in: filled once by the UKey thread, waited on by the worker
//! that made the call.
//!
//! Why not a crossbeam channel of one: its blocking receive spins and then calls `sched_yield`
//! several times before it parks. Under load every one of those yields is a context switch, and
//! with one waiting worker per in-flight request they were about four system calls per call, on
//! the same cores the card's path needs. A mutex and a condition variable park at once.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

enum State<T> {
    Empty,
    Full(T),
    /// The sender was dropped without sending.
    Closed,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    filled: Condvar,
}

/// The UKey thread's end: sends one value, or, dropped unsent, tells the waiter so.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
    sent: bool,
}

/// The worker's end.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why no value came.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The deadline passed first.
    Timeout,
    /// The sender is gone without sending (the UKey thread ended).
    Closed,
}

/// A new slot.
pub fn slot<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::Empty),
        filled: Condvar::new(),
    });
    (
        Sender {
            shared: shared.clone(),
            sent: false,
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Fills the slot and wakes the waiter, if one still waits (a worker that gave up is not an
    /// error: its value is dropped with the slot).
    pub fn send(mut self, value: T) {
        self.sent = true;
        self.fill(State::Full(value));
    }

    fn fill(&self, state: State<T>) {
        let mut slot = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = state;
        drop(slot);
        self.shared.filled.notify_one();
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if !self.sent {
            self.fill(State::Closed);
        }
    }
}

impl<T> Receiver<T> {
    /// Waits for the value until `deadline`.
    pub fn recv_deadline(self, deadline: Instant) -> Result<T, RecvError> {
        let mut slot = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            match std::mem::replace(&mut *slot, State::Empty) {
                State::Full(value) => return Ok(value),
                State::Closed => return Err(RecvError::Closed),
                State::Empty => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            slot = self
                .shared
                .filled
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_value_sent_from_another_thread_arrives() {
        let (tx, rx) = slot();
        let t = std::thread::spawn(move || tx.send(42));
        assert_eq!(
            rx.recv_deadline(Instant::now() + Duration::from_secs(5)),
            Ok(42)
        );
        t.join().unwrap();
    }

    #[test]
    fn a_value_sent_before_the_wait_is_kept() {
        let (tx, rx) = slot();
        tx.send("early");
        assert_eq!(rx.recv_deadline(Instant::now()), Ok("early"));
    }

    #[test]
    fn the_deadline_ends_the_wait() {
        let (_tx, rx) = slot::<u8>();
        let start = Instant::now();
        let r = rx.recv_deadline(start + Duration::from_millis(30));
        assert_eq!(r, Err(RecvError::Timeout));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_sender_dropped_unsent_ends_the_wait_at_once() {
        let (tx, rx) = slot::<u8>();
        let t = std::thread::spawn(move || drop(tx));
        let start = Instant::now();
        let r = rx.recv_deadline(start + Duration::from_secs(30));
        assert_eq!(r, Err(RecvError::Closed));
        assert!(start.elapsed() < Duration::from_secs(10));
        t.join().unwrap();
    }

    #[test]
    fn sending_to_a_receiver_that_gave_up_is_harmless() {
        let (tx, rx) = slot();
        drop(rx);
        tx.send(String::from("nobody"));
    }
}
