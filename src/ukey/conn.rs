//! One WebSocket connection to the UKey client software.
//!
//! The socket stays blocking and has no read timeout (on Windows a timed-out receive leaves a
//! socket in an undefined state). The UKey thread learns from `wait` (`poll`/`WSAPoll`) that the
//! socket has something, then `read_available` reads it once, which cannot block, and runs the
//! WebSocket on those bytes through a stream (`Wire`) whose reads come from them and whose writes
//! go straight to the socket. Per reply that is one `poll` and one `recv`, on the thread that
//! writes the next call: no reader thread, no hand-off.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;
use tungstenite::protocol::WebSocket;
use tungstenite::{Message, Utf8Bytes};

/// How long a blocking write to the card may take before the connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::config::Endpoint;

/// The most one `read` takes off the socket.
const CHUNK_BYTES: usize = 16 * 1024;

/// tungstenite's read buffer. Its default is 128 KiB, and tungstenite zero-fills the whole
/// free part before every `read` (`FrameCodec::read_in`): twice per reply, one of them the read
/// that finds nothing. That memset was a tenth of the UKey thread's time at zero card latency.
/// A frame larger than this still arrives whole: the buffer grows to fit the frame it is reading.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// The WebSocket settings of every connection to or from a card: this crate's client and the
/// simulator's server side.
pub fn websocket_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES)
}

/// The stream the WebSocket runs on. During the handshake it reads the socket itself; after
/// it, only the bytes `Conn::read_available` read, and `WouldBlock` once those are used up, which
/// tungstenite takes as "no more now". Writes always go straight to the socket.
struct Wire {
    tcp: TcpStream,
    fed: Option<Fed>,
}

#[derive(Default)]
struct Fed {
    bytes: Vec<u8>,
    at: usize,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(fed) = &mut self.fed else {
            return self.tcp.read(buf);
        };
        let left = &fed.bytes[fed.at..];
        if left.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        fed.at += n;
        if fed.at == fed.bytes.len() {
            fed.bytes.clear();
            fed.at = 0;
        }
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
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

/// An open connection: the WebSocket, and a raw handle to wait on, read and shut it down.
pub struct Conn {
    ws: WebSocket<Wire>,
    raw: TcpStream,
    /// Where `read_available` reads to (zeroed once, not per read).
    chunk: Box<[u8]>,
}

impl Conn {
    /// Opens TCP and does the WebSocket handshake within `timeout`. Frames that arrived with
    /// the handshake (the greeting) are returned for the caller.
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
        let raw = stream.try_clone().map_err(ConnError::Io)?;
        let wire = Wire {
            tcp: stream,
            fed: None,
        };
        let (mut ws, _response) = tungstenite::client::client_with_config(
            ep.url.as_str(),
            wire,
            Some(websocket_config()),
        )
        .map_err(|e| ConnError::Handshake(handshake_reason(e)))?;
        raw.set_read_timeout(None).map_err(ConnError::Io)?;
        // From here on the socket is read only by `read_available`. Frames that came with the
        // handshake (the greeting) are in tungstenite's buffer already, and are read now.
        ws.get_mut().fed = Some(Fed::default());
        let mut conn = Conn {
            ws,
            raw,
            chunk: vec![0u8; CHUNK_BYTES].into_boxed_slice(),
        };
        let early = conn.frames()?;
        Ok((conn, early))
    }

    /// The socket, for `wait`.
    pub fn socket(&self) -> &TcpStream {
        &self.raw
    }

    /// Reads what the socket has, in one `read` (call it when `wait` reported the socket, and
    /// it cannot block), and returns the complete frames so far; a frame cut at the end waits
    /// for the next read.
    pub fn read_available(&mut self) -> Result<Vec<String>, ConnError> {
        let n = loop {
            match self.raw.read(&mut self.chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ConnError::Io(e)),
            }
        };
        if n == 0 {
            return Err(ConnError::Closed("end of stream".into()));
        }
        let fed = self.ws.get_mut().fed.get_or_insert_with(Fed::default);
        fed.bytes.extend_from_slice(&self.chunk[..n]);
        self.frames()
    }

    /// Sends one text frame (blocking, bounded by the write timeout).
    pub fn send(&mut self, text: String) -> Result<(), ConnError> {
        self.ws.send(Message::Text(Utf8Bytes::from(text)))?;
        Ok(())
    }

    /// Every complete frame the WebSocket can read now.
    fn frames(&mut self) -> Result<Vec<String>, ConnError> {
        let mut frames = Vec::new();
        loop {
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
                    return Err(ConnError::Closed(why));
                }
                Ok(_) => {} // ping/pong are answered by tungstenite
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(frames);
                }
                Err(e) => return Err(ConnError::from(e)),
            }
        }
    }

    /// Sends a close frame (best effort, bounded by the write timeout) and shuts the socket.
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

fn handshake_reason(e: tungstenite::HandshakeError<tungstenite::ClientHandshake<Wire>>) -> String {
    match e {
        tungstenite::HandshakeError::Failure(e) => e.to_string(),
        tungstenite::HandshakeError::Interrupted(_) => "timed out".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame several times a read's chunk arrives whole, and so does the frame after it
    /// in the same chunk.
    #[test]
    fn frames_cut_across_chunks_arrive_whole() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let big = "x".repeat(6 * CHUNK_BYTES + 123);
        let sent = big.clone();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let mut ws = tungstenite::accept(tcp).unwrap();
            ws.send(Message::text(sent)).unwrap();
            ws.send(Message::text("after")).unwrap();
            let _ = ws.read(); // until the client closes
        });
        let ep = Endpoint::parse(&format!("ws://{addr}")).unwrap();
        let (mut conn, mut frames) = Conn::open(&ep, Duration::from_secs(5)).unwrap();
        let bell = super::super::wait::Doorbell::new().unwrap();
        let mut chunks = 0;
        while frames.len() < 2 {
            let woke = super::super::wait::wait(
                conn.socket(),
                &bell,
                false,
                || false,
                Duration::from_secs(5),
            )
            .unwrap();
            assert!(woke.card, "nothing arrived within 5 s");
            chunks += 1;
            frames.extend(conn.read_available().unwrap());
        }
        assert_eq!(frames, vec![big, "after".to_string()]);
        assert!(chunks > 1, "{chunks} chunks");
        conn.close();
        server.join().unwrap();
    }

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
