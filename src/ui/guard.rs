//! Who may drive the review page. It acts with the approver's own credentials, so only the
//! approver's browser may use it: a secret made fresh for each run, given once in the URL
//! printed to the approver and then kept in a cookie the page's scripts cannot read; the
//! `Host` header must name the loopback address served (against DNS rebinding); and a
//! POST must come from the page's own origin (against other local sites, which share the
//! cookie's site but not its port).

use std::net::SocketAddr;

/// The decision on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// The secret came in the URL: serve, and set the cookie (the page then takes the
    /// secret out of the address bar and the history).
    SetCookie,
    /// Refuse with this status and why.
    Deny(u16, &'static str),
}

/// What of a request the guard looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen<'a> {
    pub post: bool,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub cookie: Option<&'a str>,
    /// The `token` query parameter.
    pub token: Option<&'a str>,
}

/// The secret of one run and the address it serves on.
#[derive(Clone)]
pub struct Guard {
    token: String,
    address: SocketAddr,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Guard {
    pub fn new(token: String, address: SocketAddr) -> Self {
        Guard { token, address }
    }

    /// A guard with a fresh random secret (244 random bits from the system's generator).
    pub fn random(address: SocketAddr) -> Self {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Guard::new(token, address)
    }

    /// The page's origin, such as `http://127.0.0.1:8123`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The address to open: the origin with the secret.
    pub fn url(&self) -> String {
        format!("{}/?token={}", self.origin(), self.token)
    }

    /// The cookie's name: one per port, so that two runs do not overwrite each other's.
    pub fn cookie_name(&self) -> String {
        format!("decision-gate-ui-{}", self.address.port())
    }

    /// The `Set-Cookie` value: not readable by scripts, never sent along from another site.
    pub fn set_cookie(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name(),
            self.token
        )
    }

    /// Whether `host` (a `Host` header) names the address served: the IP literal, or
    /// `localhost`, with the port.
    pub fn host_ok(&self, host: Option<&str>) -> bool {
        let port = self.address.port();
        host.is_some_and(|h| h == self.address.to_string() || h == format!("localhost:{port}"))
    }

    /// Whether `origin` (an `Origin` header) is the page's own.
    pub fn origin_ok(&self, origin: Option<&str>) -> bool {
        origin.is_some_and(|o| {
            o == self.origin() || o == format!("http://localhost:{}", self.address.port())
        })
    }

    /// Whether `given` is the secret, compared in constant time.
    pub fn token_ok(&self, given: &str) -> bool {
        let (a, b) = (self.token.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// Whether a `Cookie` header carries the secret.
    pub fn cookie_ok(&self, cookie: Option<&str>) -> bool {
        let name = self.cookie_name();
        cookie.is_some_and(|header| {
            header
                .split(';')
                .filter_map(|pair| pair.trim().split_once('='))
                .any(|(n, v)| n == name && self.token_ok(v))
        })
    }

    /// Whether to serve a request.
    pub fn admit(&self, seen: &Seen<'_>) -> Verdict {
        if !self.host_ok(seen.host) {
            return Verdict::Deny(421, "this page is served for its loopback address only");
        }
        if seen.post && !self.origin_ok(seen.origin) {
            return Verdict::Deny(403, "a change must come from the review page itself");
        }
        if self.cookie_ok(seen.cookie) {
            return Verdict::Allow;
        }
        match seen.token {
            Some(t) if !seen.post && self.token_ok(t) => Verdict::SetCookie,
            _ => Verdict::Deny(
                401,
                "open the address that `kubectl decision ui` printed (it carries this run's secret)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new("s3cret".into(), "127.0.0.1:8123".parse().unwrap())
    }

    const COOKIE: &str = "other=1; decision-gate-ui-8123=s3cret";

    fn seen<'a>() -> Seen<'a> {
        Seen {
            host: Some("127.0.0.1:8123"),
            cookie: Some(COOKIE),
            ..Seen::default()
        }
    }

    #[test]
    fn the_secret_in_the_url_is_traded_for_a_cookie_once_then_the_cookie_is_enough() {
        let g = guard();
        assert_eq!(g.url(), "http://127.0.0.1:8123/?token=s3cret");
        let first = Seen {
            cookie: None,
            token: Some("s3cret"),
            ..seen()
        };
        assert_eq!(g.admit(&first), Verdict::SetCookie);
        assert_eq!(
            g.set_cookie(),
            "decision-gate-ui-8123=s3cret; Path=/; HttpOnly; SameSite=Strict"
        );
        assert_eq!(g.admit(&seen()), Verdict::Allow);
    }

    #[test]
    fn without_the_secret_nothing_is_served() {
        let g = guard();
        let none = Seen {
            cookie: None,
            ..seen()
        };
        assert!(matches!(g.admit(&none), Verdict::Deny(401, _)));
        for wrong in [
            "decision-gate-ui-8123=s3creT",
            "decision-gate-ui-8123=s3cret2",
            "decision-gate-ui-8123=",
            "decision-gate-ui-9999=s3cret",
            "s3cret",
        ] {
            let bad = Seen {
                cookie: Some(wrong),
                ..seen()
            };
            assert!(matches!(g.admit(&bad), Verdict::Deny(401, _)), "{wrong}");
        }
        let bad_token = Seen {
            cookie: None,
            token: Some("guess"),
            ..seen()
        };
        assert!(matches!(g.admit(&bad_token), Verdict::Deny(401, _)));
        // A POST cannot trade the secret for a cookie.
        let post_with_token = Seen {
            post: true,
            origin: Some("http://127.0.0.1:8123"),
            cookie: None,
            token: Some("s3cret"),
            ..seen()
        };
        assert!(matches!(g.admit(&post_with_token), Verdict::Deny(401, _)));
    }

    #[test]
    fn another_host_name_is_refused_even_with_the_secret() {
        let g = guard();
        for host in [
            None,
            Some("evil.example:8123"),
            Some("127.0.0.1:8124"),
            Some("127.0.0.1"),
        ] {
            let rebound = Seen { host, ..seen() };
            assert!(
                matches!(g.admit(&rebound), Verdict::Deny(421, _)),
                "{host:?}"
            );
        }
        let local = Seen {
            host: Some("localhost:8123"),
            ..seen()
        };
        assert_eq!(g.admit(&local), Verdict::Allow);
    }

    #[test]
    fn a_change_is_taken_only_from_the_page_own_origin() {
        let g = guard();
        let post = |origin| Seen {
            post: true,
            origin,
            ..seen()
        };
        assert_eq!(
            g.admit(&post(Some("http://127.0.0.1:8123"))),
            Verdict::Allow
        );
        assert_eq!(
            g.admit(&post(Some("http://localhost:8123"))),
            Verdict::Allow
        );
        for origin in [
            None,
            Some("null"),
            Some("http://127.0.0.1:3000"),
            Some("https://127.0.0.1:8123"),
            Some("http://evil.example"),
        ] {
            assert!(
                matches!(g.admit(&post(origin)), Verdict::Deny(403, _)),
                "{origin:?}"
            );
        }
    }

    #[test]
    fn an_ipv6_loopback_address_is_named_in_brackets() {
        let g = Guard::new("t".into(), "[::1]:8123".parse().unwrap());
        assert_eq!(g.origin(), "http://[::1]:8123");
        assert!(g.host_ok(Some("[::1]:8123")));
        assert!(g.origin_ok(Some("http://[::1]:8123")));
    }

    #[test]
    fn each_run_has_its_own_long_secret() {
        let address = "127.0.0.1:1".parse().unwrap();
        let (a, b) = (Guard::random(address), Guard::random(address));
        assert_ne!(a.url(), b.url());
        assert_eq!(a.token.len(), 64);
        assert!(!format!("{a:?}").contains(&a.token));
    }
}
