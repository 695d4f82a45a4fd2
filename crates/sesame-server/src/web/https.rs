//! Plain HTTP at a real host name. Sesame's cookies are `__Host-` cookies, so Secure: browsers
//! keep them only over HTTPS, or at localhost, which they count as secure. Served over plain
//! HTTP at any other name, every form would fail its CSRF check; the pages say that Sesame
//! needs HTTPS there and how to set it up, instead of a puzzling "this form has expired".

use crate::serve::Scheme;
use crate::{AppState, ServerConfig};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use std::net::{IpAddr, SocketAddr};

/// Whether the page is going to a browser that keeps no Secure cookies for this address
/// (see [`https_needed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsNeeded(pub bool);

impl FromRequestParts<AppState> for HttpsNeeded {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(HttpsNeeded(request_needs_https(parts, &state.config)))
    }
}

/// [`https_needed`] for a request as the server received it.
pub fn request_needs_https(parts: &Parts, config: &ServerConfig) -> bool {
    // Requests without the connection's scheme never came through `serve` (router tests):
    // plain HTTP, as far as anyone knows.
    let scheme = parts
        .extensions
        .get::<Scheme>()
        .copied()
        .unwrap_or(Scheme::Http);
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    https_needed(scheme, peer, &parts.headers, config)
}

/// Whether the browser reached Sesame over plain HTTP at a name other than localhost,
/// `127.x.y.z` or `::1`. TLS at Sesame is HTTPS; so is a trusted proxy's
/// `X-Forwarded-Proto: https` (anyone else's is ignored, as for `X-Forwarded-For`), and a
/// trusted proxy that sends no such header while `public_base_url` is `https://` is believed
/// to be that address. A request without a `Host` header is no browser's: nothing to say.
pub fn https_needed(
    scheme: Scheme,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    config: &ServerConfig,
) -> bool {
    if scheme == Scheme::Https {
        return false;
    }
    // Compared in canonical form: a dual-stack listener sees a v4 proxy as ::ffff:a.b.c.d.
    let from_proxy = peer.is_some_and(|p| {
        let p = p.to_canonical();
        config.trusted_proxies.iter().any(|t| t.to_canonical() == p)
    });
    let mut host = first_value(headers, header::HOST.as_str());
    if from_proxy {
        match first_value(headers, "x-forwarded-proto") {
            Some(proto) if proto.eq_ignore_ascii_case("https") => return false,
            Some(_) => {}
            None if config
                .public_base_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")) =>
            {
                return false
            }
            None => {}
        }
        // The name the browser used, where the proxy passes it on.
        if let Some(forwarded) = first_value(headers, "x-forwarded-host") {
            host = Some(forwarded);
        }
    }
    host.is_some_and(|h| !is_local_name(h))
}

/// The first value of a header that proxies may extend with commas (the browser's side).
fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let v = headers.get(name)?.to_str().ok()?;
    let first = v.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// Whether browsers treat `host` (with or without a port) as a secure context over plain
/// HTTP: localhost, `*.localhost` and loopback addresses.
fn is_local_name(host: &str) -> bool {
    let Ok(url) = url::Url::parse(&format!("http://{host}/")) else {
        // Not a name a browser would send: no browser to warn.
        return true;
    };
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.');
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_loopback_names_are_secure_over_plain_http() {
        for local in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "app.localhost",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
        ] {
            assert!(is_local_name(local), "{local}");
        }
        for remote in [
            "sesame.example.com",
            "sesame.example.com:8080",
            "192.168.1.10:8080",
            "[2001:db8::1]",
            "localhost.example.com",
        ] {
            assert!(!is_local_name(remote), "{remote}");
        }
    }

    #[test]
    fn only_a_trusted_proxy_can_say_the_browser_used_https() {
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let stranger: IpAddr = [10, 0, 0, 2].into();
        let config = ServerConfig {
            trusted_proxies: vec![proxy],
            ..ServerConfig::default()
        };
        let forwarded = headers(&[
            ("host", "sesame.example.com"),
            ("x-forwarded-proto", "https"),
        ]);
        assert!(!https_needed(
            Scheme::Http,
            Some(proxy),
            &forwarded,
            &config
        ));
        assert!(https_needed(
            Scheme::Http,
            Some(stranger),
            &forwarded,
            &config
        ));
        assert!(!https_needed(
            Scheme::Https,
            Some(stranger),
            &forwarded,
            &config
        ));
        let plain = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "sesame.example.com"),
        ]);
        assert!(
            https_needed(Scheme::Http, Some(proxy), &plain, &config),
            "the proxy's plain HTTP at the browser's name"
        );
        assert!(
            !https_needed(Scheme::Http, Some(stranger), &plain, &config),
            "a stranger's forwarded host is ignored"
        );
        let silent = headers(&[("host", "sesame.example.com")]);
        assert!(https_needed(Scheme::Http, Some(proxy), &silent, &config));
        let behind_https = ServerConfig {
            public_base_url: Some("https://sesame.example.com".into()),
            ..config.clone()
        };
        assert!(!https_needed(
            Scheme::Http,
            Some(proxy),
            &silent,
            &behind_https
        ));
        assert!(https_needed(
            Scheme::Http,
            Some(stranger),
            &silent,
            &behind_https
        ));
        assert!(!https_needed(
            Scheme::Http,
            None,
            &HeaderMap::new(),
            &config
        ));
    }
}
