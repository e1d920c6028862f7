//! What the `[http]` server refuses before routing a request: too many
//! connections at once, a request larger than a status probe needs, and a
//! `Host` header that names a foreign site (DNS rebinding: a web page in the
//! operator's browser whose name resolves to this machine must not read
//! `/status`).

use std::net::IpAddr;
use std::time::Duration;

/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// Largest request head (request line and headers) read, in bytes (hyper's
/// smallest buffer); a larger one is answered 431.
pub const MAX_HEADER_BYTES: usize = 8192;
/// Largest request body accepted (`GET` needs none); larger is answered 413.
pub const MAX_BODY_BYTES: u64 = 1024;
/// How long a client may take to send its request head (slow clients would
/// otherwise hold connections).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The reply to a connection over [`MAX_CONNECTIONS`], written before closing it.
pub const BUSY_REPLY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 34\r\nconnection: close\r\nretry-after: 1\r\n\r\ntoo many connections; retry later\n";

/// Whether a request with this `Host` header may be served: no header
/// (HTTP/1.0 tools), an IP address (a browser only sends one when the page's
/// own origin is that address, so no rebinding), `localhost` or a name of
/// `[http] allowed_hosts`. Any port.
pub fn host_allowed(host: Option<&str>, allowed: &[String]) -> bool {
    let Some(host) = host.map(str::trim) else {
        return true;
    };
    let name = strip_port(host);
    if name.is_empty() {
        return false;
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
}

/// `name:port` -> `name`, `[::1]:port` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_and_addresses_pass_and_foreign_names_do_not() {
        let extra = vec!["status.example.com".to_string()];
        for ok in [
            None,
            Some("127.0.0.1:9187"),
            Some("localhost:9187"),
            Some("LOCALHOST"),
            Some("[::1]:9187"),
            Some("10.1.2.3"),
            Some("status.example.com:443"),
            Some("Status.Example.com."),
        ] {
            assert!(host_allowed(ok, &extra), "{ok:?}");
        }
        for refused in [
            Some("evil.example.net:9187"),
            Some("evil.example.net"),
            Some("localhost.evil.example.net"),
            Some(""),
            Some(":9187"),
            Some("127.0.0.1.evil.example.net"),
        ] {
            assert!(!host_allowed(refused, &extra), "{refused:?}");
        }
    }
}

#[cfg(test)]
mod prop_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(proptest::test_runner::Config { failure_persistence: None, ..Default::default() })]

        /// Any `Host` header a client sends is judged, never a panic.
        #[test]
        fn any_host_header_is_judged(host in prop_oneof![any::<String>(), "\\[?[0-9a-fé:.\\]]{0,12}(:[0-9]{0,5})?"]) {
            let _ = host_allowed(Some(&host), &["status.example.com".to_string()]);
        }

        /// A name with a non-ASCII character is no address, localhost or
        /// allowed name (those are ASCII): refused, with or without a port.
        #[test]
        fn non_ascii_names_are_refused(name in "[a-z.]{0,5}[^\\x00-\\x7f][a-z.]{0,5}", port in prop::option::of(0u16..)) {
            let host = match port {
                Some(p) => format!("{name}:{p}"),
                None => name,
            };
            prop_assert!(!host_allowed(Some(&host), &["status.example.com".to_string()]), "{}", host);
        }
    }
}
