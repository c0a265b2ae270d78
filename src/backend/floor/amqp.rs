//! RabbitMQ's floor: a blocking socket on a plain thread speaking AMQP 0-9-1 itself, its frames built and
//! read by amq-protocol (lapin's own codec) and nothing else: one `basic.publish` of the case's message,
//! with its Celery properties, persistent, to a queue of its own (`<queue>.taskbench-floor`, declared as
//! the case's queue is and deleted after, so the case's delivered count is untouched), its confirm read as
//! with `confirm = "each"` (nothing read with `confirm = "off"`). The publish's frames are encoded once; a
//! unit is one write of them, and its confirm. The queue must hold every publish when it is deleted, and is
//! deleted over a new connection after a failure. `confirm = "batch"` and `"window"`, and `batch` above 1,
//! have no floor: their latency runs from a message's send to its batch's last ack (or its own), which a
//! loop of one publish at a time does not measure, so the floor says so instead.

use super::{Measured, Plan};
use crate::backend::amqp::wire::WireTemplate;
use crate::backend::amqp::{DEFAULT_URL, queue_arguments};
use crate::backend::url::{broker_url, redact};
use crate::scenario::{AmqpOptions, Case, Confirm};
use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, WriteContext, gen_frame, parse_frame};
use amq_protocol::protocol::{
    AMQPClass, BasicProperties, basic, channel, confirm, connection, queue,
};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use amq_protocol::uri::{AMQPScheme, AMQPUri, SASLMechanism};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The floor client, as the table and summary.json name it (`confirm = "off"` or `"each"`).
pub fn client(confirm: Confirm) -> &'static str {
    if confirm == Confirm::Off {
        "a blocking socket on a plain thread: one AMQP basic.publish of the message, no confirms"
    } else {
        "a blocking socket on a plain thread: one AMQP basic.publish of the message, read its confirm"
    }
}

/// Why a case with these options has no floor (`confirm = "batch"` or `"window"`, or `batch` above 1), or
/// `None`.
pub fn not_measured(o: &AmqpOptions) -> Option<String> {
    if matches!(o.confirm, Confirm::Batch | Confirm::Window) {
        return Some(format!(
            "not measured: confirm = {:?} times each message to its batch's last ack or to its own, which a floor of one publish at a time does not measure; compare with a confirm = \"each\" or \"off\" case",
            o.confirm.name()
        ));
    }
    (o.batch > 1).then(|| {
        format!(
            "not measured: batch = {} sends that many messages per publish call and times each to the last of them, which a floor of one publish at a time does not measure; compare with a batch = 1 case",
            o.batch
        )
    })
}

/// The channel the floor publishes on.
const CHANNEL: u16 = 1;
/// AMQP's frame overhead: type, channel, size, frame end.
const FRAME_OVERHEAD: usize = 8;

/// Where the floor publishes, and what.
pub(super) struct FloorTarget {
    uri: AMQPUri,
    shown: String,
    queue: ShortString,
    queue_arguments: FieldTable,
    properties: BasicProperties,
    body: Vec<u8>,
    /// `confirm = "each"`: each publish waits for its confirm.
    confirms: bool,
    timeout: Duration,
}

impl FloorTarget {
    pub(super) fn of(case: &Case, o: &AmqpOptions) -> io::Result<FloorTarget> {
        let url = broker_url(o.url.as_deref(), "TASKBENCH_AMQP_URL", DEFAULT_URL);
        let shown = redact(&url);
        let uri: AMQPUri = url
            .parse()
            .map_err(|e| io::Error::other(format!("{shown} is not an AMQP URL: {e}")))?;
        if uri.scheme == AMQPScheme::AMQPS {
            return Err(io::Error::other(
                "not measured: TLS (amqps://) has no plain blocking floor client",
            ));
        }
        if let Some(mechanism) = uri
            .query
            .auth_mechanism
            .filter(|m| *m != SASLMechanism::Plain)
        {
            return Err(io::Error::other(format!(
                "not measured: the floor logs in with PLAIN only, and {shown} asks for {mechanism:?}"
            )));
        }
        let queue = format!("{}.taskbench-floor", case.task.spec().queue);
        let queue = ShortString::try_new(queue)
            .map_err(|e| io::Error::other(format!("the floor's queue name is too long: {e}")))?;
        let message = crate::message::TaskMessage::new(case.task.clone());
        Ok(FloorTarget {
            uri,
            shown,
            queue,
            queue_arguments: queue_arguments(o.queue_type),
            properties: WireTemplate::new(&case.task).properties(message.id()),
            body: message.body().to_vec(),
            confirms: o.confirm == Confirm::Each,
            timeout: case.publish_timeout,
        })
    }

    pub(super) fn measure(self, plan: Plan) -> io::Result<Measured> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", self.shown));
        let (mut conn, frame_max) = self.connect().map_err(context)?;
        let mut published = 0u64;
        let measured = self.declare(&mut conn).and_then(|()| {
            let publish = self.publish_frames(frame_max)?;
            plan.run(|| {
                conn.write(&publish, "a publish")?;
                published += 1;
                while self.confirms && conn.confirm()? < published {}
                Ok(())
            })
        });
        let measured = match measured {
            Ok(measured) => measured,
            Err(e) => {
                // The connection may be unusable (a frame cut by a timeout, closed by the broker, blocked):
                // the queue is deleted over a new one.
                drop(conn);
                self.delete_over_a_new_connection();
                return Err(context(e));
            }
        };
        match self.delete(&mut conn) {
            // Every publish reached the queue: the floor measured what it says. (A publish the broker
            // dropped would have cost it less.)
            Ok(held) if u64::from(held) == published => {
                let _ = self.close(&mut conn);
                Ok(measured)
            }
            Ok(held) => Err(context(io::Error::other(format!(
                "the floor's queue {} held {held} of its {published} publishes at the end (a policy limiting its length?), so its figures are not of the publishes it timed",
                self.queue
            )))),
            Err(e) => {
                drop(conn);
                tracing::warn!(
                    "the AMQP floor could not delete its queue {} on {}: {e}; trying over a new connection",
                    self.queue,
                    self.shown
                );
                self.delete_over_a_new_connection();
                Ok(measured)
            }
        }
    }

    /// A connection to the broker, logged in, with channel 1 open; and the largest frame it takes.
    fn connect(&self) -> io::Result<(Conn<TcpStream>, u32)> {
        let authority = &self.uri.authority;
        let mut last = io::Error::other("the host name resolved to no address");
        for addr in (authority.host.as_str(), authority.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(self.timeout))?;
                    s.set_write_timeout(Some(self.timeout))?;
                    let mut conn = Conn::new(s, self.timeout);
                    let frame_max = self.open(&mut conn)?;
                    return Ok((conn, frame_max));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Deletes the floor's queue over a connection of its own, after a failure: the queue must not stay
    /// behind with the floor's persistent messages in it.
    fn delete_over_a_new_connection(&self) {
        let deleted = self.connect().and_then(|(mut conn, _)| {
            self.delete(&mut conn)?;
            self.close(&mut conn)
        });
        if let Err(e) = deleted {
            tracing::warn!(
                "the AMQP floor could not delete its queue {} on {}: {e}; delete it by hand",
                self.queue,
                self.shown
            );
        }
    }

    /// The handshake (PLAIN login, no heartbeats) and channel 1; returns the largest frame the broker takes
    /// (and the URL's `frame_max`, as lapin honours it for the case).
    fn open(&self, conn: &mut Conn<TcpStream>) -> io::Result<u32> {
        conn.write(b"AMQP\x00\x00\x09\x01", "the protocol header")?;
        conn.expect("connection.start", |m| match m {
            AMQPClass::Connection(connection::AMQPMethod::Start(_)) => Some(()),
            _ => None,
        })?;
        let user = &self.uri.authority.userinfo;
        let start_ok = connection::StartOk {
            client_properties: client_properties(),
            mechanism: "PLAIN".into(),
            response: LongString::from(format!("\0{}\0{}", user.username, user.password)),
            locale: "en_US".into(),
        };
        let tune = conn.call(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok)),
            "connection.tune (was the login refused?)",
            |m| match m {
                AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => Some(t.clone()),
                _ => None,
            },
        )?;
        let frame_max = [Some(tune.frame_max), self.uri.query.frame_max]
            .into_iter()
            .flatten()
            .filter(|&m| m > 0)
            .min()
            .unwrap_or(131_072);
        let tune_ok = connection::TuneOk {
            channel_max: tune.channel_max,
            frame_max,
            heartbeat: 0,
        };
        conn.send(method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok)),
        ))?;
        let open = connection::Open {
            virtual_host: self.uri.vhost.as_str().into(),
        };
        conn.call(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(open)),
            "connection.open-ok",
            |m| matches!(m, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))).then_some(()),
        )?;
        conn.call(
            CHANNEL,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            "channel.open-ok",
            |m| matches!(m, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))).then_some(()),
        )?;
        Ok(frame_max)
    }

    /// Declares the floor's queue as the case's is declared, and turns on confirms with `confirm = "each"`.
    fn declare(&self, conn: &mut Conn<TcpStream>) -> io::Result<()> {
        let declare = queue::Declare {
            queue: self.queue.clone(),
            passive: false,
            durable: true,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: self.queue_arguments.clone(),
        };
        conn.call(
            CHANNEL,
            AMQPClass::Queue(queue::AMQPMethod::Declare(declare)),
            "queue.declare-ok",
            |m| matches!(m, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_))).then_some(()),
        )?;
        if self.confirms {
            conn.call(
                CHANNEL,
                AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                    nowait: false,
                })),
                "confirm.select-ok",
                |m| matches!(m, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))).then_some(()),
            )?;
        }
        Ok(())
    }

    /// One publish's frames, encoded: basic.publish to the default exchange with the floor's queue as the
    /// routing key, the content header, and the body in as many frames as `frame_max` asks.
    fn publish_frames(&self, frame_max: u32) -> io::Result<Vec<u8>> {
        let mut frames = vec![
            method(
                CHANNEL,
                AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                    exchange: "".into(),
                    routing_key: self.queue.clone(),
                    // As the case's: with confirms, an unroutable publish comes back (basic.return)
                    // instead of being dropped and acked.
                    mandatory: self.confirms,
                    immediate: false,
                })),
            ),
            AMQPFrame::Header(
                CHANNEL,
                AMQPContentHeader {
                    class_id: 60,
                    body_size: self.body.len() as u64,
                    properties: self.properties.clone(),
                },
            ),
        ];
        let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
        frames.extend(
            self.body
                .chunks(chunk)
                .map(|c| AMQPFrame::Body(CHANNEL, c.to_vec())),
        );
        encode(&frames)
    }

    /// Deletes the floor's queue; returns how many messages it held.
    fn delete(&self, conn: &mut Conn<TcpStream>) -> io::Result<u32> {
        let delete = queue::Delete {
            queue: self.queue.clone(),
            if_unused: false,
            if_empty: false,
            nowait: false,
        };
        conn.call(
            CHANNEL,
            AMQPClass::Queue(queue::AMQPMethod::Delete(delete)),
            "queue.delete-ok",
            |m| match m {
                AMQPClass::Queue(queue::AMQPMethod::DeleteOk(ok)) => Some(ok.message_count),
                _ => None,
            },
        )
    }

    /// Closes the connection with the handshake.
    fn close(&self, conn: &mut Conn<TcpStream>) -> io::Result<()> {
        let close = connection::Close {
            reply_code: 200,
            reply_text: "taskbench floor done".into(),
            class_id: 0,
            method_id: 0,
        };
        conn.call(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(close)),
            "connection.close-ok",
            |m| {
                matches!(m, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))).then_some(())
            },
        )
    }
}

/// What the floor tells the broker about itself: its name (shown by `rabbitmqctl list_connections
/// client_properties`), and that a refused login should be a connection.close saying why rather than a
/// dropped socket.
fn client_properties() -> FieldTable {
    let mut capabilities = FieldTable::default();
    capabilities.insert(
        "authentication_failure_close".into(),
        AMQPValue::Boolean(true),
    );
    let mut properties = FieldTable::default();
    properties.insert(
        "product".into(),
        AMQPValue::LongString("taskbench floor".into()),
    );
    properties.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    properties
}

fn method(channel: u16, class: AMQPClass) -> AMQPFrame {
    AMQPFrame::Method(channel, class)
}

/// Frames as bytes, in order.
fn encode(frames: &[AMQPFrame]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    for frame in frames {
        out = gen_frame(frame)(WriteContext::from(out))
            .map_err(|e| io::Error::other(format!("cannot encode an AMQP frame: {e}")))?
            .into_inner()
            .0;
    }
    Ok(out)
}

/// A blocking AMQP connection: the socket, what was read of it but not yet parsed, and the delivery tag
/// the broker confirmed up to.
struct Conn<S> {
    s: S,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    confirmed: u64,
    /// The socket's read and write timeout, for the errors.
    timeout: Duration,
}

impl<S: Read + Write> Conn<S> {
    fn new(s: S, timeout: Duration) -> Self {
        Conn {
            s,
            buf: vec![0; 4096],
            start: 0,
            end: 0,
            confirmed: 0,
            timeout,
        }
    }

    /// Writes `bytes` (`what` names them in errors).
    fn write(&mut self, bytes: &[u8], what: &str) -> io::Result<()> {
        self.s
            .write_all(bytes)
            .map_err(|e| self.timed_out(e, &format!("RabbitMQ took no more of {what} within")))
    }

    fn send(&mut self, frame: AMQPFrame) -> io::Result<()> {
        self.write(&encode(&[frame])?, "a method")
    }

    /// Sends method `class` on `channel`, then reads frames until `pick` takes the broker's answer
    /// ([`Conn::expect`]; `answer` names it in errors).
    fn call<T>(
        &mut self,
        channel: u16,
        class: AMQPClass,
        answer: &str,
        pick: impl Fn(&AMQPClass) -> Option<T>,
    ) -> io::Result<T> {
        self.send(method(channel, class))?;
        self.expect(answer, pick)
    }

    /// A socket timeout (`EAGAIN` from a blocking socket with a timeout) as what it means here.
    fn timed_out(&self, e: io::Error, what: &str) -> io::Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{what} {} (publish_timeout; is it blocked by a memory or disk alarm?)",
                    humantime::format_duration(self.timeout)
                ),
            ),
            _ => e,
        }
    }

    /// The next frame from the broker.
    fn next(&mut self) -> io::Result<AMQPFrame> {
        loop {
            if self.end > self.start {
                match parse_frame(&self.buf[self.start..self.end]) {
                    Ok((rest, frame)) => {
                        self.start = self.end - rest.len();
                        return Ok(frame);
                    }
                    Err(e) if e.is_incomplete() => {}
                    Err(e) => {
                        return Err(io::Error::other(format!(
                            "RabbitMQ sent a frame taskbench cannot read: {e}"
                        )));
                    }
                }
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = match self.s.read(&mut self.buf[self.end..]) {
                Ok(n) => n,
                Err(e) => return Err(self.timed_out(e, "RabbitMQ sent nothing within")),
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "RabbitMQ closed the connection",
                ));
            }
            self.end += n;
        }
    }

    /// Reads frames until `pick` takes a method (`what` names it in errors); the broker's close of the
    /// connection or channel, or a publish it returned, is an error with its reply, and anything else (a
    /// heartbeat, connection.blocked) is passed over.
    fn expect<T>(&mut self, what: &str, pick: impl Fn(&AMQPClass) -> Option<T>) -> io::Result<T> {
        loop {
            let AMQPFrame::Method(_, class) = self
                .next()
                .map_err(|e| io::Error::new(e.kind(), format!("waiting for {what}: {e}")))?
            else {
                continue;
            };
            if let Some(picked) = pick(&class) {
                return Ok(picked);
            }
            let (closed, code, text) = match class {
                AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                    ("closed the connection", c.reply_code, c.reply_text)
                }
                AMQPClass::Channel(channel::AMQPMethod::Close(c)) => {
                    ("closed the channel", c.reply_code, c.reply_text)
                }
                AMQPClass::Basic(basic::AMQPMethod::Return(r)) => {
                    ("returned a publish", r.reply_code, r.reply_text)
                }
                _ => continue,
            };
            return Err(io::Error::other(format!(
                "RabbitMQ {closed} while taskbench waited for {what}: {code} {text}"
            )));
        }
    }

    /// Reads the next confirm; returns the delivery tag confirmed up to (an ack confirms its own tag, a
    /// `multiple` one every tag up to it; the floor has one publish unconfirmed at a time). A nack is an
    /// error.
    fn confirm(&mut self) -> io::Result<u64> {
        let (tag, acked) = self.expect("a publisher confirm", |m| match m {
            AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => Some((a.delivery_tag, true)),
            AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => Some((n.delivery_tag, false)),
            _ => None,
        })?;
        if !acked {
            return Err(io::Error::other(format!(
                "RabbitMQ nacked the floor's publish {tag}"
            )));
        }
        self.confirmed = self.confirmed.max(tag);
        Ok(self.confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_larger_than_a_frame_is_split_into_body_frames() {
        let target = FloorTarget {
            uri: DEFAULT_URL.parse().unwrap(),
            shown: redact(DEFAULT_URL),
            queue: "q.taskbench-floor".into(),
            queue_arguments: FieldTable::default(),
            properties: BasicProperties::default(),
            body: vec![7; 10_000],
            confirms: true,
            timeout: Duration::from_secs(1),
        };
        let mut bytes = &target.publish_frames(4096).unwrap()[..];
        let mut kinds = Vec::new();
        let mut body = 0;
        while !bytes.is_empty() {
            let (rest, frame) = parse_frame(bytes).unwrap();
            assert!(bytes.len() - rest.len() <= 4096, "no frame above frame_max");
            match frame {
                AMQPFrame::Method(CHANNEL, AMQPClass::Basic(basic::AMQPMethod::Publish(p))) => {
                    assert_eq!(p.routing_key.as_str(), "q.taskbench-floor");
                    kinds.push("publish");
                }
                AMQPFrame::Header(CHANNEL, h) => {
                    assert_eq!(h.body_size, 10_000);
                    kinds.push("header");
                }
                AMQPFrame::Body(CHANNEL, b) => {
                    body += b.len();
                    kinds.push("body");
                }
                other => panic!("unexpected {other:?}"),
            }
            bytes = rest;
        }
        assert_eq!(kinds, ["publish", "header", "body", "body", "body"]);
        assert_eq!(body, 10_000);
    }

    #[test]
    fn acks_confirm_up_to_their_tag_and_a_nack_is_an_error() {
        let acks = encode(&[
            method(
                CHANNEL,
                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: 1,
                    multiple: false,
                })),
            ),
            AMQPFrame::Heartbeat,
            method(
                CHANNEL,
                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: 5,
                    multiple: true,
                })),
            ),
            method(
                CHANNEL,
                AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: 6,
                    multiple: false,
                    requeue: false,
                })),
            ),
        ])
        .unwrap();
        let mut conn = Conn::new(io::Cursor::new(acks), Duration::from_secs(1));
        assert_eq!(conn.confirm().unwrap(), 1);
        assert_eq!(
            conn.confirm().unwrap(),
            5,
            "a multiple ack confirms up to its tag"
        );
        let nack = conn.confirm().unwrap_err().to_string();
        assert_eq!(nack, "RabbitMQ nacked the floor's publish 6");
        let eof = conn.confirm().unwrap_err().to_string();
        assert_eq!(
            eof,
            "waiting for a publisher confirm: RabbitMQ closed the connection"
        );
    }
}
