//! For the TLS tests: certificates made by the `openssl` command (a CA, a server certificate it signed for
//! 127.0.0.1 and localhost, an expired one, a client certificate it signed, another CA, a self-signed server
//! certificate),
//! and a `redis-server` of the test's own with a TLS port (stopped by its PID when dropped).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test's certificates, in a temp dir.
pub struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    /// Makes them; `Err` says why it cannot here (no `openssl`).
    pub fn make() -> Result<Certs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let d = dir.path();
        std::fs::write(
            d.join("san.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        let openssl = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .current_dir(d)
                .args(args)
                .output()
                .map_err(|e| format!("cannot run openssl: {e}"))?;
            out.status.success().then_some(()).ok_or_else(|| {
                format!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr))
            })
        };
        // A CA, or (`ca = false`) a server's own self-signed certificate.
        let self_signed = |name: &str, cn: &str, ca: bool| {
            let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
            let subj = format!("/CN={cn}");
            let constraints = format!(
                "basicConstraints=critical,CA:{}",
                ca.to_string().to_uppercase()
            );
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                &subj,
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-addext",
                &constraints,
            ])
        };
        // Signed by the CA, valid for `days` (-1: expired since before it was made).
        let signed = |name: &str, cn: &str, days: &str| {
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let subj = format!("/CN={cn}");
            openssl(&[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subj,
            ])?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                days,
                "-extfile",
                "san.cnf",
            ])
        };
        self_signed("ca", "taskbench test CA", true)?;
        self_signed("other-ca", "another CA", true)?;
        self_signed("self-signed", "localhost", false)?;
        signed("server", "localhost", "2")?;
        signed("client", "taskbench client", "2")?;
        signed("expired", "localhost", "-1")?;
        Ok(Certs { dir })
    }

    /// `NAME.pem` (or `NAME.key`): ca, other-ca, self-signed, server, client, expired (a server certificate
    /// the CA signed, whose validity ended a day before it began).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A `redis-server` with a TLS port only, on loopback.
pub struct TlsRedis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Starts one presenting `cert`/`key`, trusting client certificates signed by `ca`; `clients` is
    /// `--tls-auth-clients` (`optional` or `yes`), `password` its requirepass. `Err` says why it cannot.
    pub fn start(
        certs: &Certs,
        cert: &str,
        clients: &str,
        password: &str,
    ) -> Result<TlsRedis, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir: {e}"))?;
        let port = super::rabbit_node::free_port();
        let path = |p: PathBuf| p.display().to_string();
        let mut child = Command::new("redis-server")
            .current_dir(dir.path())
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &path(certs.file(&format!("{cert}.pem")))])
            .args(["--tls-key-file", &path(certs.file(&format!("{cert}.key")))])
            .args(["--tls-ca-cert-file", &path(certs.file("ca.pem"))])
            .args(["--tls-auth-clients", clients, "--requirepass", password])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !super::reachable(&format!("127.0.0.1:{port}")) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "redis-server exited {status}: is it built with TLS (--tls-port)?"
                ));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return Err("redis-server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(TlsRedis {
            child,
            port,
            _dir: dir,
        })
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `program` runs here (`program --version`).
pub fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A path as a TOML string.
pub fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}
