//! How the UKey thread waits for the card's socket and for new jobs at once, with no reader
//! thread and no read timeout: `poll()` on Unix, `WSAPoll` on Windows, over the card's socket and
//! a doorbell (a UDP socket on loopback that workers ring).
//!
//! Why: with a reader thread, every reply crossed a hand-off (the reader's `recv`, a channel, a
//! futex wake) before the UKey thread could write the next call, and at zero card latency that
//! hand-off held the card's path to about 70 % of a direct client even with a core to itself.
//! Waiting on the socket itself removes it. A read timeout would do the same on Linux only: on
//! Windows a timed-out receive leaves the socket in an undefined state. `poll` only reports; the
//! socket stays blocking and is read once per report, which cannot block.
//!
//! The doorbell is rung only while the UKey thread has room for a job and waits (`sleeping`):
//! while the card works on a call, a job waits in the channel and the worker makes no system
//! call, and the thread takes the job when the card's reply frees the slot.

use std::io;
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What woke a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Woke {
    /// The card's socket has bytes, or was closed, or failed: a read will not block.
    pub card: bool,
}

/// Workers' way to wake the UKey thread out of `wait`.
pub struct Doorbell {
    /// Set by the UKey thread while it waits with room for a job.
    sleeping: AtomicBool,
    stopping: AtomicBool,
    socket: UdpSocket,
}

impl Doorbell {
    /// A UDP socket on 127.0.0.1, connected to itself, that never blocks.
    pub fn new() -> io::Result<Doorbell> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(socket.local_addr()?)?;
        socket.set_nonblocking(true)?;
        Ok(Doorbell {
            sleeping: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            socket,
        })
    }

    /// After a job was queued: wakes the UKey thread if it waits for one (one datagram per
    /// wait, whoever rings first).
    pub fn job_queued(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.ring();
        }
    }

    /// Asks the UKey thread to end its session; wakes it whatever it waits for.
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.ring();
    }

    pub fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn ring(&self) {
        // A full socket buffer means a wake-up is pending already.
        let _ = self.socket.send(&[1]);
    }

    /// Reads every pending ring (they only ever mean "look").
    fn clear(&self) {
        let mut buf = [0u8; 64];
        while self.socket.recv(&mut buf).is_ok() {}
    }
}

/// Waits until the card's socket can be read, or the doorbell rings (only when `want_jobs`),
/// or `timeout` passes. `jobs_waiting` is asked after the thread has said it sleeps, so that a
/// job queued just before is not missed.
pub fn wait(
    card: &TcpStream,
    bell: &Doorbell,
    want_jobs: bool,
    jobs_waiting: impl Fn() -> bool,
    timeout: Duration,
) -> io::Result<Woke> {
    if want_jobs {
        bell.sleeping.store(true, Ordering::SeqCst);
        if jobs_waiting() {
            bell.sleeping.store(false, Ordering::SeqCst);
            return Ok(Woke { card: false });
        }
    }
    let polled = sys::poll_two(card, &bell.socket, timeout);
    bell.sleeping.store(false, Ordering::SeqCst);
    let (card_ready, bell_rang) = polled?;
    if bell_rang {
        bell.clear();
    }
    Ok(Woke { card: card_ready })
}

/// Milliseconds for `poll`, rounded up so that a wait shorter than a millisecond is not a spin.
fn millis(timeout: Duration) -> i32 {
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    ms.min(i32::MAX as u128) as i32
}

#[cfg(unix)]
mod sys {
    use std::io;
    use std::net::{TcpStream, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// Whether each of the two sockets has something to read (or has failed).
    pub fn poll_two(
        card: &TcpStream,
        bell: &UdpSocket,
        timeout: Duration,
    ) -> io::Result<(bool, bool)> {
        let mut fds = [
            libc::pollfd {
                fd: card.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: bell.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two initialised `pollfd`s for the whole call, and
        // both descriptors stay open (the sockets are borrowed).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, super::millis(timeout)) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok((false, false));
            }
            return Err(e);
        }
        Ok((fds[0].revents != 0, fds[1].revents != 0))
    }
}

#[cfg(windows)]
mod sys {
    use std::io;
    use std::net::{TcpStream, UdpSocket};
    use std::os::windows::io::AsRawSocket;
    use std::time::Duration;
    use windows_sys::Win32::Networking::WinSock::{
        POLLRDNORM, SOCKET, WSAGetLastError, WSAPOLLFD, WSAPoll,
    };

    /// Whether each of the two sockets has something to read (or has failed).
    pub fn poll_two(
        card: &TcpStream,
        bell: &UdpSocket,
        timeout: Duration,
    ) -> io::Result<(bool, bool)> {
        let mut fds = [
            WSAPOLLFD {
                fd: card.as_raw_socket() as SOCKET,
                events: POLLRDNORM,
                revents: 0,
            },
            WSAPOLLFD {
                fd: bell.as_raw_socket() as SOCKET,
                events: POLLRDNORM,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two initialised `WSAPOLLFD`s for the whole call,
        // and both sockets stay open (they are borrowed).
        let n = unsafe { WSAPoll(fds.as_mut_ptr(), 2, super::millis(timeout)) };
        if n < 0 {
            // SAFETY: no arguments; reads this thread's last Winsock error.
            let code = unsafe { WSAGetLastError() };
            return Err(io::Error::from_raw_os_error(code));
        }
        Ok((fds[0].revents != 0, fds[1].revents != 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::time::Instant;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn bytes_or_a_close_on_the_card_socket_wake_the_wait() {
        type PeerDoes = fn(TcpStream);
        let cases: [(&str, PeerDoes); 2] = [
            ("bytes", |mut peer| peer.write_all(b"x").unwrap()),
            ("a close", drop),
        ];
        for (what, peer_does) in cases {
            let (card, peer) = pair();
            let bell = Doorbell::new().unwrap();
            peer_does(peer);
            let woke = wait(&card, &bell, false, || false, Duration::from_secs(10)).unwrap();
            assert!(woke.card, "{what} did not wake the wait");
        }
    }

    /// Waits on a card socket that stays quiet: what woke the wait, and after how long.
    fn quiet_wait(
        bell: &Doorbell,
        want_jobs: bool,
        jobs_waiting: bool,
        timeout: Duration,
    ) -> (Woke, Duration) {
        let (card, _peer) = pair();
        let start = Instant::now();
        let woke = wait(&card, bell, want_jobs, || jobs_waiting, timeout).unwrap();
        (woke, start.elapsed())
    }

    const SHORT: Duration = Duration::from_millis(30);
    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn the_timeout_ends_a_quiet_wait() {
        let (woke, took) = quiet_wait(&Doorbell::new().unwrap(), true, false, SHORT);
        assert!(!woke.card);
        assert!(took >= SHORT, "{took:?}");
    }

    #[test]
    fn a_job_rings_only_a_thread_that_waits_for_one() {
        let bell = std::sync::Arc::new(Doorbell::new().unwrap());
        // not waiting for jobs: a queued job does not ring
        bell.job_queued();
        let (_, took) = quiet_wait(&bell, false, false, SHORT);
        assert!(took >= SHORT, "woken by a ring after {took:?}");
        // waiting for jobs: a job queued from another thread ends the wait
        let ringer = bell.clone();
        let t = std::thread::spawn(move || {
            while !ringer.sleeping.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            ringer.job_queued();
        });
        let (woke, took) = quiet_wait(&bell, true, false, LONG);
        assert!(!woke.card);
        assert!(took < LONG / 3, "{took:?}");
        t.join().unwrap();
    }

    #[test]
    fn a_job_queued_before_the_wait_is_not_slept_through() {
        let (woke, took) = quiet_wait(&Doorbell::new().unwrap(), true, true, LONG);
        assert!(!woke.card);
        assert!(took < LONG / 3, "{took:?}");
    }

    #[test]
    fn a_stop_request_wakes_any_wait() {
        let bell = Doorbell::new().unwrap();
        bell.request_stop();
        let (_, took) = quiet_wait(&bell, false, false, LONG);
        assert!(took < LONG / 3, "{took:?}");
        assert!(bell.stop_requested());
    }

    #[test]
    fn millis_round_up() {
        assert_eq!(millis(Duration::ZERO), 0);
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(5)), 5);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
