//! Redis's floor: a blocking socket on a plain thread writing one `LPUSH` of the case's envelope and
//! reading its one-line reply, as a bare client of the server would. It pushes to a list of its own
//! (the case's list with `.taskbench-floor` after it, so the case's delivery check is untouched) and
//! deletes it at the end.

use super::{Measured, Plan};
use crate::backend::redis::{DEFAULT_URL, kombu};
use crate::backend::url::{broker_url, redact};
use crate::scenario::{Case, RedisOptions};
use redis::{ConnectionAddr, IntoConnectionInfo};
use std::io::{self, Read, Write};
use std::time::Duration;

pub const CLIENT: &str =
    "a blocking socket on a plain thread: one LPUSH of the envelope, read the reply";

/// Where the floor pushes, and what.
pub(super) struct FloorTarget {
    info: redis::ConnectionInfo,
    shown: String,
    list: String,
    envelope: Vec<u8>,
    timeout: Duration,
}

impl FloorTarget {
    pub(super) fn of(case: &Case, o: &RedisOptions) -> io::Result<FloorTarget> {
        let url = broker_url(o.url.as_deref(), "TASKBENCH_REDIS_URL", DEFAULT_URL);
        let shown = redact(&url);
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(|e| io::Error::other(format!("the redis URL {shown} is not valid: {e}")))?;
        let spec = case.task.spec();
        Ok(FloorTarget {
            info,
            shown,
            list: format!(
                "{}.taskbench-floor",
                kombu::list_for(&spec.queue, spec.priority)
            ),
            envelope: crate::message::TaskMessage::new(case.task.clone())
                .envelope()
                .to_vec(),
            timeout: case.publish_timeout,
        })
    }

    pub(super) fn measure(self, plan: Plan) -> io::Result<Measured> {
        let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", self.shown));
        match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let s = std::net::TcpStream::connect((host.as_str(), *port)).map_err(context)?;
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(self.timeout))?;
                self.push_loop(s, plan)
            }
            ConnectionAddr::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path).map_err(context)?;
                s.set_read_timeout(Some(self.timeout))?;
                self.push_loop(s, plan)
            }
            _ => Err(io::Error::other(
                "not measured: TLS (rediss://) has no plain blocking floor client",
            )),
        }
    }

    fn push_loop<S: Read + Write>(&self, mut s: S, plan: Plan) -> io::Result<Measured> {
        let settings = self.info.redis_settings();
        let mut reply = [0u8; 512];
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            command(&mut s, &auth.get_packed_command(), &mut reply)?;
        }
        if settings.db() != 0 {
            let select = redis::cmd("SELECT").arg(settings.db()).get_packed_command();
            command(&mut s, &select, &mut reply)?;
        }
        let lpush = redis::cmd("LPUSH")
            .arg(&self.list)
            .arg(&self.envelope[..])
            .get_packed_command();
        let measured = plan.run(|| command(&mut s, &lpush, &mut reply));
        let del = redis::cmd("DEL").arg(&self.list).get_packed_command();
        command(&mut s, &del, &mut reply)?;
        measured
    }
}

/// Writes one encoded command and reads its reply: one line (`:N`, `+OK`), an error reply (`-...`) being
/// an error.
fn command(s: &mut (impl Read + Write), packed: &[u8], buf: &mut [u8]) -> io::Result<()> {
    s.write_all(packed)?;
    let mut filled = 0;
    loop {
        let n = s.read(&mut buf[filled..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "redis closed the connection",
            ));
        }
        filled += n;
        if buf[..filled].ends_with(b"\r\n") {
            break;
        }
        if filled == buf.len() {
            return Err(io::Error::other("redis sent a reply longer than one line"));
        }
    }
    if buf[0] == b'-' {
        let line = String::from_utf8_lossy(&buf[1..filled - 2]).into_owned();
        return Err(io::Error::other(format!("redis answered: {line}")));
    }
    Ok(())
}
