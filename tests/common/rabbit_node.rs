//! A RabbitMQ node of a test's own (the memory-alarm test's, and the TLS tests' with an SSL listener), so
//! what the test does to it touches nobody else.

use std::time::Duration;

/// A RabbitMQ node of the test's own, so an alarm on it blocks nobody else: its own node name, AMQP and
/// distribution ports (on loopback), config, plugins (none), mnesia, logs and Erlang cookie, all in a temp
/// dir. Stopped by its PIDs when dropped.
pub struct PrivateNode {
    /// The `rabbitmq-server` script this test started (it runs the VM as its child).
    child: std::process::Child,
    dir: tempfile::TempDir,
    name: String,
    port: u16,
    /// The SSL listener's port ([`PrivateNode::start_tls`]).
    pub tls_port: Option<u16>,
}

/// Where the Debian package keeps the scripts that run RabbitMQ as the calling user (`/usr/sbin`'s wrappers
/// switch to the `rabbitmq` user, which would make the PIDs and the temp dir someone else's).
const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl PrivateNode {
    /// Starts the node and waits until it runs; `Err` says why it cannot here.
    pub fn start() -> Result<PrivateNode, String> {
        Self::start_with(None)
    }

    /// A node with an SSL listener too, on `tls_port`, presenting `certfile`/`keyfile` and trusting
    /// client certificates signed by `cacertfile` (asked for, not required).
    pub fn start_tls(
        cacertfile: &std::path::Path,
        certfile: &std::path::Path,
        keyfile: &std::path::Path,
    ) -> Result<PrivateNode, String> {
        Self::start_with(Some([cacertfile, certfile, keyfile]))
    }

    fn start_with(tls: Option<[&std::path::Path; 3]>) -> Result<PrivateNode, String> {
        let server = std::path::Path::new(RABBITMQ_BIN).join("rabbitmq-server");
        if !server.exists() {
            return Err(format!(
                "no {} to start a private node with",
                server.display()
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let (port, dist) = (free_port(), free_port());
        let name = format!("tb-node-{}@localhost", std::process::id());
        let tls_port = tls.map(|_| free_port());
        let d = dir.path();
        std::fs::write(d.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(d.join("env.conf"), "").unwrap();
        let mut conf = format!("listeners.tcp.local = 127.0.0.1:{port}\n");
        if let (Some([ca, cert, key]), Some(tls_port)) = (tls, tls_port) {
            conf.push_str(&format!(
                "listeners.ssl.local = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                ca.display(),
                cert.display(),
                key.display()
            ));
        }
        std::fs::write(d.join("rabbitmq.conf"), conf).unwrap();
        let log = std::fs::File::create(d.join("server.out")).unwrap();
        let child = std::process::Command::new(&server)
            .current_dir(d)
            .envs(Self::env(d, &name))
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", d.join("plugins"))
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            // Distribution on loopback only; one scheduler, so booting it leaves the other tests a core.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1} +S 1:1",
            )
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", server.display()))?;
        let mut node = PrivateNode {
            child,
            dir,
            name,
            port,
            tls_port,
        };
        // rabbitmqctl await_startup fails at once until the VM has registered its name with epmd.
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let tried = node.ctl().run(&["await_startup", "--timeout", "30"]);
            if tried.is_ok() {
                break;
            }
            let exited = node.child.try_wait().ok().flatten();
            if exited.is_some() || std::time::Instant::now() >= deadline {
                let out =
                    std::fs::read_to_string(node.dir.path().join("server.out")).unwrap_or_default();
                return Err(format!(
                    "the private node did not start ({}): {}; its output: {out}",
                    exited.map_or("still starting after 90 s".into(), |s| format!(
                        "exited {s}"
                    )),
                    tried.unwrap_err()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(node)
    }

    /// What both the server and rabbitmqctl need to find this node and only it: its name, an empty
    /// rabbitmq-env.conf (the system's names the shared node), and a HOME of its own (the Erlang cookie).
    fn env(d: &std::path::Path, name: &str) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![
            ("HOME", d.into()),
            ("RABBITMQ_NODENAME", name.into()),
            ("RABBITMQ_CONF_ENV_FILE", d.join("env.conf").into()),
            ("ERL_EPMD_ADDRESS", "127.0.0.1".into()),
        ]
    }

    /// `rabbitmqctl -n <this node> ARGS`, off the async threads.
    pub fn ctl(&self) -> NodeCtl {
        NodeCtl {
            dir: self.dir.path().to_path_buf(),
            name: self.name.clone(),
        }
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// A script that runs `rabbitmqctl -n <this node> ARGS` with the node's environment: what a user points
    /// TASKBENCH_RABBITMQCTL at for a broker the plain `rabbitmqctl` does not reach.
    pub fn ctl_script(&self) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let d = self.dir.path();
        let env: Vec<String> = Self::env(d, &self.name)
            .into_iter()
            .map(|(k, v)| format!("{k}='{}'", v.to_string_lossy()))
            .collect();
        let script = d.join("rabbitmqctl.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nexec env {} {RABBITMQ_BIN}/rabbitmqctl -n '{}' \"$@\"\n",
                env.join(" "),
                self.name
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    /// The SSL listener's URL (a node started with [`PrivateNode::start_tls`]).
    pub fn tls_url(&self) -> String {
        format!(
            "amqps://guest:guest@127.0.0.1:{}/%2f",
            self.tls_port.expect("a node started with start_tls")
        )
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        // The VM's PID (its pid file) gets SIGTERM, which stops RabbitMQ cleanly; the script exits with it.
        // SIGTERM to the script alone is not enough: it leaves the VM running.
        let vm = std::fs::read_to_string(self.dir.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .map(Pid::from_raw);
        let script = Pid::from_raw(self.child.id() as i32);
        if let Some(vm) = vm {
            let _ = kill(vm, Signal::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let vm_gone = |vm: Option<Pid>| vm.is_none_or(|p| kill(p, None).is_err());
        while std::time::Instant::now() < deadline && !vm_gone(vm) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(vm) = vm.filter(|p| kill(*p, None).is_ok()) {
            let _ = kill(vm, Signal::SIGKILL);
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(script, Signal::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// rabbitmqctl for a [`PrivateNode`] (owned, so it can run on a blocking thread).
pub struct NodeCtl {
    dir: std::path::PathBuf,
    name: String,
}

impl NodeCtl {
    /// `rabbitmqctl -q -n <node> ARGS`; `Err` with its output when it fails.
    pub fn run(&self, args: &[&str]) -> Result<(), String> {
        let out =
            std::process::Command::new(std::path::Path::new(RABBITMQ_BIN).join("rabbitmqctl"))
                .envs(PrivateNode::env(&self.dir, &self.name))
                .args(["-q", "-n", &self.name])
                .args(args)
                .output()
                .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
        out.status.success().then_some(()).ok_or_else(|| {
            format!(
                "rabbitmqctl {args:?} on {}: {}{}",
                self.name,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
    }
}
