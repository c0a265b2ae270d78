//! A plain Redis connection owned by one publisher, like redis-py's (which kombu uses): write the commands,
//! read their replies, on the publisher's own task.
//!
//! redis-rs encodes every command ([`redis::Cmd`]) and parses every reply that is not a plain success
//! ([`redis::parse_redis_value`]); this module only owns the socket and frames the replies. It exists because
//! redis-rs 1.x's only async connection is multiplexed: each request crosses a channel to a driver task and
//! its reply comes back on another, two task wake-ups that cost more than the LPUSH itself on loopback
//! (see docs/redis.md). Speaks RESP2 (no HELLO is sent), over TLS for a `rediss://` URL (rustls, its handshake
//! timed as the `tls` stage).

use crate::backend::tls::{HandshakeFailed, TokioTls};
use crate::stage::{Stage, StageClock};
use redis::{Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, RedisError, RedisResult};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Initial size of the reply buffer; it grows only for a reply larger than this.
const READ_BUFFER: usize = 4096;

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// One plain connection: an output buffer of encoded commands, and a buffer of replies read so far.
pub struct PlainConnection {
    stream: Stream,
    out: Vec<u8>,
    input: Vec<u8>,
    /// Bytes of `input` read from the socket.
    filled: usize,
    /// Bytes of `input` already handed out as replies.
    consumed: usize,
    /// Commands were written whose replies were not all read (an error or a cancellation): the stream is
    /// out of step and the connection must not be reused.
    broken: bool,
    /// The server has answered something on this connection (a plain connection closed before that is
    /// what a TLS port does).
    answered: bool,
}

impl PlainConnection {
    /// Connects to `info` (TCP with TCP_NODELAY, or a Unix socket; `connect` stage), does the TLS handshake
    /// with `tls` for a `rediss://` URL (`tls` stage), and authenticates and selects the database if it says
    /// so, in one round trip (`connect` again).
    pub async fn connect(
        info: &ConnectionInfo,
        tls: Option<&TokioTls>,
        clock: &mut StageClock,
    ) -> RedisResult<PlainConnection> {
        let stream = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                let stream = clock
                    .time(Stage::Connect, TcpStream::connect((host.as_str(), *port)))
                    .await?;
                stream.set_nodelay(true)?;
                match tls {
                    Some(tls) => Stream::Tls(Box::new(
                        clock
                            .time(Stage::Tls, tls.handshake(stream, "redis"))
                            .await?,
                    )),
                    None => Stream::Tcp(stream),
                }
            }
            ConnectionAddr::Unix(path) => Stream::Unix(
                clock
                    .time(Stage::Connect, UnixStream::connect(path))
                    .await?,
            ),
            _ => {
                return Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "this kind of redis address is not supported by taskbench's redis backend",
                )));
            }
        };
        let mut conn = PlainConnection {
            stream,
            out: Vec::with_capacity(1024),
            input: vec![0; READ_BUFFER],
            filled: 0,
            consumed: 0,
            broken: false,
            answered: false,
        };
        let settings = info.redis_settings();
        let mut commands = 0;
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            conn.queue(&auth);
            commands += 1;
        }
        if settings.db() != 0 {
            conn.queue(redis::cmd("SELECT").arg(settings.db()));
            commands += 1;
        }
        if commands > 0 {
            clock
                .time(Stage::Connect, conn.round_trip(commands))
                .await?;
        }
        Ok(conn)
    }

    /// Whether the connection is out of step (see [`PlainConnection::round_trip`]) and must be dropped.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Encodes `cmd` into the output buffer.
    pub fn queue(&mut self, cmd: &Cmd) {
        cmd.write_packed_command(&mut self.out);
    }

    /// Encodes `LPUSH <list> <value>` into the output buffer (see [`Lpush`]).
    pub fn queue_lpush(&mut self, lpush: &mut Lpush, value: &[u8]) {
        lpush.write(&mut self.out, value);
    }

    /// Adds already encoded commands to the output buffer.
    pub fn queue_packed(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Sends what was queued and reads `replies` replies; returns the first error reply, after reading them
    /// all (so the connection stays usable after an error reply). If the future is dropped part-way, or
    /// the socket fails, the connection is marked broken.
    pub async fn round_trip(&mut self, replies: usize) -> RedisResult<()> {
        self.broken = true;
        let written = self.write_out().await;
        self.out.clear();
        written?;
        let mut first_error = None;
        for _ in 0..replies {
            let len = self.next_reply_len().await?;
            let reply = &self.input[self.consumed..self.consumed + len];
            self.consumed += len;
            // `:` (an integer, LPUSH's reply) and `+` (a status) are successes; anything else is parsed.
            if !matches!(reply[0], b':' | b'+')
                && first_error.is_none()
                && let Err(e) = redis::parse_redis_value(reply).and_then(|v| v.extract_error())
            {
                first_error = Some(e);
            }
        }
        self.broken = false;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn write_out(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Stream::Tcp(s) => s.write_all(&self.out).await,
            Stream::Unix(s) => s.write_all(&self.out).await,
            Stream::Tls(s) => s.write_all(&self.out).await,
        }
    }

    /// The length of the next complete reply in the input buffer, reading until there is one.
    async fn next_reply_len(&mut self) -> RedisResult<usize> {
        loop {
            if let Some(len) = reply_len(&self.input[self.consumed..self.filled])? {
                return Ok(len);
            }
            if self.consumed > 0 {
                self.input.copy_within(self.consumed..self.filled, 0);
                self.filled -= self.consumed;
                self.consumed = 0;
            }
            if self.filled == self.input.len() {
                self.input.resize(self.input.len() * 2, 0);
            }
            let buf = &mut self.input[self.filled..];
            let read = match &mut self.stream {
                Stream::Tcp(s) => s.read(buf).await,
                Stream::Unix(s) => s.read(buf).await,
                Stream::Tls(s) => s.read(buf).await,
            };
            let n = match read {
                Ok(n) if n > 0 => n,
                // Closed or reset before any reply: what a TLS port does with plain text.
                _ if !self.answered && matches!(self.stream, Stream::Tcp(_)) => {
                    return Err(RedisError::from(io::Error::other(
                        HandshakeFailed::plain_to_tls("rediss"),
                    )));
                }
                Ok(_) => {
                    return Err(RedisError::from(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            self.answered = true;
            self.filled += n;
        }
    }
}

/// `LPUSH <list> <value>` for values of one length (every envelope of a case has the same length: only
/// fixed-length ids change): redis-rs encodes the command once, and each publish copies its header, the
/// value and the closing CRLF, one copy of the envelope.
pub struct Lpush {
    list: String,
    /// The encoded command up to the value, for values of `value_len` bytes.
    header: Vec<u8>,
    value_len: usize,
}

impl Lpush {
    pub fn new(list: &str) -> Lpush {
        Lpush {
            list: list.to_string(),
            header: Vec::new(),
            value_len: usize::MAX,
        }
    }

    fn write(&mut self, out: &mut Vec<u8>, value: &[u8]) {
        if value.len() != self.value_len {
            let mut packed = Vec::new();
            redis::cmd("LPUSH")
                .arg(&self.list)
                .arg(value)
                .write_packed_command(&mut packed);
            packed.truncate(packed.len() - value.len() - 2);
            self.header = packed;
            self.value_len = value.len();
        }
        out.extend_from_slice(&self.header);
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// The length of the first complete RESP2 reply at the start of `b`, or `None` if more bytes are needed.
fn reply_len(b: &[u8]) -> RedisResult<Option<usize>> {
    let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = eol + 2;
    match b[0] {
        b'+' | b'-' | b':' => Ok(Some(line)),
        b'$' => match length(&b[1..eol])? {
            None => Ok(Some(line)),
            Some(n) => {
                let total = line + n + 2;
                Ok((b.len() >= total).then_some(total))
            }
        },
        b'*' => {
            let mut at = line;
            for _ in 0..length(&b[1..eol])?.unwrap_or(0) {
                match reply_len(&b[at..])? {
                    Some(n) => at += n,
                    None => return Ok(None),
                }
            }
            Ok(Some(at))
        }
        other => Err(protocol_error(other)),
    }
}

/// A bulk string's or array's length; `None` for -1 (null).
fn length(digits: &[u8]) -> RedisResult<Option<usize>> {
    if digits == b"-1" {
        return Ok(None);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Some)
        .ok_or_else(|| protocol_error(b'?'))
}

fn protocol_error(byte: u8) -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected RESP reply type {:?}", byte as char),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lpush_is_encoded_as_redis_rs_encodes_it() {
        let mut lpush = Lpush::new("q\x06\x163");
        let mut out = Vec::new();
        for value in [&b"abc"[..], b"xyz", b"longer value"] {
            out.clear();
            lpush.write(&mut out, value);
            let expected = redis::cmd("LPUSH")
                .arg("q\x06\x163")
                .arg(value)
                .get_packed_command();
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn frames_resp2_replies() {
        assert_eq!(reply_len(b":12\r\n:1").unwrap(), Some(5));
        assert_eq!(reply_len(b":12\r").unwrap(), None);
        assert_eq!(reply_len(b"-OOM no\r\n").unwrap(), Some(9));
        assert_eq!(reply_len(b"$3\r\nabc\r\n+").unwrap(), Some(9));
        assert_eq!(reply_len(b"$3\r\nab").unwrap(), None);
        assert_eq!(reply_len(b"$-1\r\n").unwrap(), Some(5));
        assert_eq!(reply_len(b"*2\r\n:1\r\n$1\r\nx\r\n").unwrap(), Some(15));
        assert_eq!(reply_len(b"*2\r\n:1\r\n").unwrap(), None);
        assert_eq!(reply_len(b"*-1\r\n").unwrap(), Some(5));
        assert!(reply_len(b"!x\r\n").is_err());
    }
}
