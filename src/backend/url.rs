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

/// The password in `url`, if it has one (what [`redact`] hides), so that text from elsewhere (a Python
/// harness's error messages) can be cleaned of it too.
pub fn password(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")?;
    let rest = &url[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let password = match userinfo.split_once(':') {
        Some((_, password)) => password,
        None if url.starts_with("redis") => userinfo,
        None => return None,
    };
    (!password.is_empty()).then_some(password)
}

/// `text` with every occurrence of `url`'s password replaced by `***`.
pub fn scrub(text: &str, url: &str) -> String {
    match password(url) {
        Some(p) => text.replace(p, "***"),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_the_password_anywhere_in_a_message() {
        let url = "amqp://guest:s3cret@127.0.0.1:5672/%2f";
        assert_eq!(password(url), Some("s3cret"));
        assert_eq!(
            scrub("login s3cret refused for amqp://guest:s3cret@h", url),
            "login *** refused for amqp://guest:***@h"
        );
        assert_eq!(password("redis://127.0.0.1:6379/0"), None);
        assert_eq!(password("redis://pw@127.0.0.1:6379/0"), Some("pw"));
        assert_eq!(scrub("nothing", "redis://127.0.0.1/0"), "nothing");
    }

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
