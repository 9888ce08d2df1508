//! The read and write halves of one connection. Dropping the write half shuts down the sending
//! side (the client sees the end of the last answer); the read half leaves the socket to the
//! connection's lingering close (chinaport-proxy patch: shutting down reading here made the
//! lingering drain end at once, and a close with unread bytes sends a reset).

use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};

use crate::connection::Connection;

pub struct RefinedTcpStream {
    stream: Connection,
    close_write: bool,
}

impl RefinedTcpStream {
    /// The read half, then the write half; `None` when the socket cannot be duplicated.
    pub(crate) fn new(stream: Connection) -> IoResult<(RefinedTcpStream, RefinedTcpStream)> {
        let read = RefinedTcpStream {
            stream: stream.try_clone()?,
            close_write: false,
        };
        let write = RefinedTcpStream {
            stream,
            close_write: true,
        };
        Ok((read, write))
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.stream.read(buf)
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
