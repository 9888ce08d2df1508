//! One WebSocket connection to the UKey client software, and the helper thread that tells the
//! owner when the socket has something to read.
//!
//! Why a helper: the owner thread must react to two things at once, jobs from HTTP workers and
//! frames from the card. A blocking `read()` with a read timeout would make every job wait for
//! that timeout before it is written (and on Windows a timed-out socket is left in an undefined
//! state). Instead the socket stays blocking and a helper blocks in `peek()` on a clone of it;
//! when bytes arrive it sends `Readiness::Readable` and waits for the owner's go-ahead, so the
//! owner `select!`s on jobs and readability and never polls. While draining, the owner switches
//! the socket to non-blocking (the flag is shared by the clone, which is why the helper must be
//! parked then) and back.

use crossbeam_channel::{Receiver, Sender, bounded};
use std::io;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;
use tungstenite::protocol::WebSocket;
use tungstenite::{Message, Utf8Bytes};

/// How long a blocking write to the card may take before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::config::Endpoint;

/// What the readiness helper reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Bytes are waiting; the helper is parked until `Conn::drain` has run.
    Readable,
    /// The peer closed or the socket failed; the helper has exited.
    Closed,
}

/// Why a connection failed or ended.
#[derive(Debug)]
pub enum ConnError {
    Resolve(String),
    Connect(io::Error),
    Handshake(String),
    Io(io::Error),
    Closed(String),
    Protocol(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Resolve(e) => write!(f, "cannot resolve the UKey host: {e}"),
            ConnError::Connect(e) => write!(f, "cannot connect to the UKey client software: {e}"),
            ConnError::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            ConnError::Io(e) => write!(f, "socket error: {e}"),
            ConnError::Closed(why) => write!(f, "connection closed by the UKey side ({why})"),
            ConnError::Protocol(e) => write!(f, "WebSocket protocol error: {e}"),
        }
    }
}

impl From<tungstenite::Error> for ConnError {
    fn from(e: tungstenite::Error) -> Self {
        match e {
            tungstenite::Error::Io(io) => ConnError::Io(io),
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
                ConnError::Closed("closed".into())
            }
            other => ConnError::Protocol(other.to_string()),
        }
    }
}

/// An open connection: the WebSocket, a raw handle to shut it down, and the helper's channels.
pub struct Conn {
    ws: WebSocket<TcpStream>,
    raw: TcpStream,
    pub readiness: Receiver<Readiness>,
    go_on: Sender<()>,
}

impl Conn {
    /// Opens TCP, does the WebSocket handshake within `timeout`, and starts the helper.
    /// Frames that arrived with the handshake (the greeting) are returned for the caller.
    pub fn open(ep: &Endpoint, timeout: Duration) -> Result<(Conn, Vec<String>), ConnError> {
        let addrs: Vec<_> = (ep.host.as_str(), ep.port)
            .to_socket_addrs()
            .map_err(|e| ConnError::Resolve(e.to_string()))?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or(ConnError::Connect(last))?;
        stream.set_nodelay(true).map_err(ConnError::Io)?;
        // Bounded handshake; the timeout is removed afterwards because a timed-out read leaves a
        // Windows socket in an undefined state. A failed handshake discards the socket anyway.
        stream
            .set_read_timeout(Some(timeout))
            .map_err(ConnError::Io)?;
        stream
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(ConnError::Io)?;
        let (ws, _response) = tungstenite::client::client(ep.url.as_str(), stream)
            .map_err(|e| ConnError::Handshake(handshake_reason(e)))?;
        ws.get_ref().set_read_timeout(None).map_err(ConnError::Io)?;
        let raw = ws.get_ref().try_clone().map_err(ConnError::Io)?;
        let helper_stream = raw.try_clone().map_err(ConnError::Io)?;
        let (ready_tx, readiness) = bounded(1);
        let (go_on, go_rx) = bounded(1);
        let mut conn = Conn {
            ws,
            raw,
            readiness,
            go_on,
        };
        // The handshake may have read the greeting into tungstenite's buffer already, where
        // peek() cannot see it: drain before the helper starts.
        let early = conn.drain_frames()?;
        std::thread::Builder::new()
            .name("ukey-readiness".into())
            .spawn(move || readiness_helper(helper_stream, ready_tx, go_rx))
            .map_err(ConnError::Io)?;
        Ok((conn, early))
    }

    /// Sends one text frame (blocking, bounded by the write timeout).
    pub fn send(&mut self, text: String) -> Result<(), ConnError> {
        self.ws.send(Message::Text(Utf8Bytes::from(text)))?;
        Ok(())
    }

    /// Reads every complete frame available now, then lets the helper watch the socket again.
    /// Call after `Readiness::Readable`.
    pub fn drain(&mut self) -> Result<Vec<String>, ConnError> {
        let frames = self.drain_frames()?;
        // The helper may have exited meanwhile; its `Closed` is still in the channel.
        let _ = self.go_on.try_send(());
        Ok(frames)
    }

    fn drain_frames(&mut self) -> Result<Vec<String>, ConnError> {
        self.ws
            .get_ref()
            .set_nonblocking(true)
            .map_err(ConnError::Io)?;
        let mut frames = Vec::new();
        let outcome = loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => frames.push(t.as_str().to_owned()),
                Ok(Message::Binary(b)) => match String::from_utf8(b.to_vec()) {
                    Ok(t) => frames.push(t),
                    Err(_) => log::debug!("UKey sent a binary frame that is not UTF-8; ignored"),
                },
                Ok(Message::Close(frame)) => {
                    let why = frame
                        .map(|f| f.to_string())
                        .unwrap_or_else(|| "close".into());
                    break Err(ConnError::Closed(why));
                }
                Ok(_) => {} // ping/pong are answered by tungstenite
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    break Ok(());
                }
                Err(e) => break Err(ConnError::from(e)),
            }
        };
        outcome?;
        self.ws
            .get_ref()
            .set_nonblocking(false)
            .map_err(ConnError::Io)?;
        // a pong queued while non-blocking goes out now
        match self.ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        Ok(frames)
    }

    /// Sends a close frame (best effort, bounded by the write timeout) and shuts the socket, which
    /// also ends the helper.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
        let _ = self.raw.shutdown(Shutdown::Both);
    }

    /// Drops the connection without a close handshake (it is already broken).
    pub fn abort(self) {
        let _ = self.raw.shutdown(Shutdown::Both);
    }
}

fn handshake_reason(
    e: tungstenite::HandshakeError<tungstenite::ClientHandshake<TcpStream>>,
) -> String {
    match e {
        tungstenite::HandshakeError::Failure(e) => e.to_string(),
        tungstenite::HandshakeError::Interrupted(_) => "timed out".into(),
    }
}

/// Blocks in `peek()` and reports readability; after each `Readable` it waits for the owner to
/// finish draining (the owner toggles the shared non-blocking flag meanwhile).
fn readiness_helper(stream: TcpStream, ready: Sender<Readiness>, go_on: Receiver<()>) {
    let mut byte = [0u8; 1];
    loop {
        match stream.peek(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                if ready.send(Readiness::Readable).is_err() || go_on.recv().is_err() {
                    return; // the owner is gone
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = ready.send(Readiness::Closed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let e = Endpoint::parse("ws://127.0.0.1:61232").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 61232));
        let e = Endpoint::parse("ws://localhost/path").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("localhost", 80));
        let e = Endpoint::parse("ws://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert!(Endpoint::parse("ws://host:notaport").is_err());
        assert!(Endpoint::parse("ws://").is_err());
        assert!(Endpoint::parse("http://x").is_err());
    }
}
