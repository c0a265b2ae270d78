//! Where a local backend's frames go: a Unix socket, a FIFO or a TCP address, as written on the command line
//! (`unix:PATH`, `fifo:PATH`, `tcp:IP:PORT`) and in a case's `address`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a sink listens and a local publisher connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Fifo(PathBuf),
    Tcp(SocketAddr),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hint = "expected unix:PATH, fifo:PATH or tcp:IP:PORT";
        let (kind, rest) = s.split_once(':').ok_or_else(|| format!("{s:?}: {hint}"))?;
        match kind {
            "unix" if !rest.is_empty() => Ok(Endpoint::Unix(rest.into())),
            "fifo" if !rest.is_empty() => Ok(Endpoint::Fifo(rest.into())),
            "tcp" => rest
                .parse()
                .map(Endpoint::Tcp)
                .map_err(|e| format!("{s:?}: {e}; {hint}")),
            _ => Err(format!("{s:?}: {hint}")),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Fifo(p) => write!(f, "fifo:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}
