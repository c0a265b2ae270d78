//! A `redis-server` of the test's own, on a free port and a Unix socket, for what the shared server must not
//! see (a `CLIENT KILL` of every client, a `maxmemory`, a kill and restart): stopped by its PID when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private `redis-server` on a free port (and a Unix socket), stopped by its PID when dropped.
pub struct PrivateRedis {
    child: Child,
    pub port: u16,
    socket: PathBuf,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// Starts one with extra `args`, or `None` (after skipping) if redis-server is not installed.
    pub fn start(args: &[&str]) -> Option<PrivateRedis> {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let socket = dir.path().join("redis.sock");
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = match Self::spawn(port, &socket, dir.path(), &args) {
            Ok(child) => child,
            Err(e) => {
                super::skip_test(&format!("cannot start redis-server: {e}"));
                return None;
            }
        };
        let server = PrivateRedis {
            child,
            port,
            socket,
            args,
            _dir: dir,
        };
        server.wait_up();
        Some(server)
    }

    fn spawn(
        port: u16,
        socket: &std::path::Path,
        dir: &std::path::Path,
        args: &[String],
    ) -> std::io::Result<Child> {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args([
                "--unixsocket",
                socket.to_str().unwrap(),
                "--unixsocketperm",
                "700",
            ])
            .args(["--dir", dir.to_str().unwrap()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    }

    pub fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(self.socket.exists() && super::reachable(&format!("127.0.0.1:{}", self.port))) {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL, by its PID): its port refuses connections until [`Self::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts the server again on the same port and socket, empty.
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.port, &self.socket, self._dir.path(), &self.args)
            .expect("restart redis-server");
        self.wait_up();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn unix_url(&self) -> String {
        format!("redis+unix://{}?db=0", self.socket.display())
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // A killed server was reaped: its PID may belong to someone else by now, so it gets no signal.
        if let Ok(None) = self.child.try_wait() {
            self.signal(nix::sys::signal::Signal::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
