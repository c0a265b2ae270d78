//! Broker URLs: which one a case uses, and how to show it without its password.

/// The case's `url`, else the environment variable `env`, else `default`.
pub fn broker_url(url: Option<&str>, env: &str, default: &str) -> String {
    url.map(str::to_string)
        .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| default.to_string())
}

/// What a hidden secret is shown as.
const HIDDEN: &str = "***";

/// `url` with every password replaced by `***`, safe to print: `amqp://guest:***@127.0.0.1:5672/%2f`.
///
/// It covers every place the redis and lapin crates (and kombu) read a password from, valid URL or not:
/// the userinfo (`user:pass@`, and on Redis a lone `secret@`, which kombu reads as the password), and any
/// query parameter that names one (`pass`, which redis-rs reads on `unix://` and `redis+unix://` socket
/// URLs, `password`, `passwd`, `pwd`, and any key containing "password", `?ssl_password=` for instance),
/// whatever the scheme (`amqps`, `rediss`, `valkey`, ...). Being a string function, it also hides the
/// password of a URL the crates reject: everything before the last `@` of the authority is treated as
/// userinfo, even with an unescaped `/`, `?` or `#` in the password.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    // The authority runs to the first '/' (a '?' or '#' there may be part of an unescaped password), unless
    // what precedes that '/' is no host:port but `user:pa` of an unescaped `user:pa/ss@host`: then the
    // userinfo runs to the last '@'.
    let first_slash = rest.find('/').unwrap_or(rest.len());
    let authority_end = if scheme.is_empty() {
        0
    } else if !rest[..first_slash].contains('@')
        && rest[..first_slash]
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.bytes().all(|b| b.is_ascii_digit()))
        && let Some(at) = rest.rfind('@')
    {
        rest[at..].find('/').map_or(rest.len(), |p| at + p)
    } else {
        first_slash
    };
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => out.push_str(&format!("{user}:{HIDDEN}")),
                // redis://secret@host: kombu reads a lone Redis userinfo as the password.
                None if is_redis(scheme) => out.push_str(HIDDEN),
                None => out.push_str(userinfo),
            }
            &authority[at..]
        }
        None => authority,
    };
    // A host part with no '@' may still carry a query (redis://host?password=x).
    let rest = format!("{host}{tail}");
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q + 1], &rest[q + 1..]),
        None => (rest.as_str(), ""),
    };
    out.push_str(before_query);
    let (query, fragment) = match query.find('#') {
        Some(f) => (&query[..f], &query[f..]),
        None => (query, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((key, _value)) if is_password_key(key) => {
                out.push_str(key);
                out.push('=');
                out.push_str(HIDDEN);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
    out
}

fn is_redis(scheme: &str) -> bool {
    let scheme = scheme.to_ascii_lowercase();
    scheme.starts_with("redis") || scheme.starts_with("valkey")
}

/// Whether query parameter `key` holds a password.
fn is_password_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    matches!(key.as_str(), "pass" | "passwd" | "pwd") || key.contains("password")
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
    fn userinfo_passwords_never_show() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact("amqps://user:Secret@broker:5671/vhost?heartbeat=10"),
            "amqps://user:***@broker:5671/vhost?heartbeat=10"
        );
        assert_eq!(
            redact("redis://:s3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("rediss://default:s3cret@cache.example:6380/1#insecure"),
            "rediss://default:***@cache.example:6380/1#insecure"
        );
        assert_eq!(
            redact("valkeys://u:s3cret@127.0.0.1/0"),
            "valkeys://u:***@127.0.0.1/0"
        );
    }

    #[test]
    fn a_lone_redis_userinfo_is_the_password() {
        assert_eq!(
            redact("redis://s3cret@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("amqp://guest@127.0.0.1/%2f"),
            "amqp://guest@127.0.0.1/%2f",
            "an AMQP user name alone is no secret"
        );
    }

    #[test]
    fn unescaped_characters_in_a_password_stay_hidden() {
        assert_eq!(redact("redis://u:p@w@host/0"), "redis://u:***@host/0");
        assert_eq!(
            redact("redis://:se#cr?et@host/0"),
            "redis://:***@host/0",
            "a '#' or '?' before the '@' is part of the password"
        );
        assert_eq!(redact("amqp://u:a%2Fb@host/%2f"), "amqp://u:***@host/%2f");
        assert_eq!(
            redact("redis://:pa/ss@host/0"),
            "redis://:***@host/0",
            "an unescaped '/' in the password"
        );
        assert_eq!(
            redact("amqp://guest:a/b/c@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(
            redact("redis://host:6379/0?note=a@b"),
            "redis://host:6379/0?note=a@b",
            "a port is a port: an '@' later is not userinfo"
        );
    }

    #[test]
    fn query_passwords_never_show() {
        assert_eq!(
            redact("redis://127.0.0.1:1/0?password=QuerySecret"),
            "redis://127.0.0.1:1/0?password=***"
        );
        assert_eq!(
            redact("redis://127.0.0.1/0?protocol=resp3&Password=x&db=1"),
            "redis://127.0.0.1/0?protocol=resp3&Password=***&db=1"
        );
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?db=2&user=me&pass=Secret"),
            "redis+unix:///tmp/r.sock?db=2&user=me&pass=***"
        );
        assert_eq!(
            redact("unix:///tmp/r.sock?pass=Secret&db=2"),
            "unix:///tmp/r.sock?pass=***&db=2"
        );
        assert_eq!(
            redact("amqps://u:p@h/v?ssl_password=x&heartbeat=5#frag"),
            "amqps://u:***@h/v?ssl_password=***&heartbeat=5#frag"
        );
        assert_eq!(redact("redis://h?password=x"), "redis://h?password=***");
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis+unix:///tmp/r.sock?db=0",
            "unix:///tmp/r.sock",
            "amqp://127.0.0.1:5672/%2f",
            "amqps://broker/vhost?heartbeat=10&channel_max=8",
            "redis://[::1]:6379/0?protocol=resp3",
            "not a url",
            "",
        ] {
            assert_eq!(redact(url), url);
        }
    }

    #[test]
    fn not_urls_still_lose_query_passwords() {
        assert_eq!(redact("host?password=x"), "host?password=***");
    }
}
