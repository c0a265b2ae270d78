//! Broker URLs: which one a case uses, and how to show it without its password.

/// The case's `url`, else the environment variable `env`, else `default`.
pub fn broker_url(url: Option<&str>, env: &str, default: &str) -> String {
    url.map(str::to_string)
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| default.to_string())
}

/// `url` with any password replaced by `***`, safe to print: `amqp://guest:***@127.0.0.1:5672/%2f`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    let redacted = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // redis://secret@host: a lone userinfo on Redis is the password.
        None if url.starts_with("redis") => "***".to_string(),
        None => userinfo.to_string(),
    };
    format!("{}://{}{}", &url[..scheme_end], redacted, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://s3cret@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://u:p@w@host/0"), "redis://u:***@host/0");
        assert_eq!(
            redact("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?db=0"),
            "redis+unix:///tmp/r.sock?db=0"
        );
        assert_eq!(redact("not a url"), "not a url");
    }
}
