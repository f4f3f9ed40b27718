//! The client's address: the socket peer, or what a trusted proxy reports.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// Resolves the client address from the socket peer and, for trusted proxies, their headers.
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted_proxies: Vec<IpNet>,
    /// A single-address header such as `cf-connecting-ip`, used instead of `X-Forwarded-For`.
    header: Option<HeaderName>,
}

impl ClientIpResolver {
    /// # Errors
    /// An invalid header name.
    pub fn new(trusted_proxies: Vec<IpNet>, header: Option<&str>) -> Result<Self, String> {
        let header = header
            .map(|name| HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| format!("invalid header name {name:?}")))
            .transpose()?;
        Ok(Self { trusted_proxies, header })
    }

    /// Returns the socket peer, unless the peer is a trusted proxy: then the configured header's address,
    /// or the rightmost `X-Forwarded-For` address that is not itself a trusted proxy. Headers from
    /// untrusted peers are ignored, so a client cannot choose its own address.
    pub fn resolve(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer.ip());
        if !self.is_trusted(peer) {
            return peer;
        }

        if let Some(name) = &self.header {
            return headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.trim().parse::<IpAddr>().ok())
                .map(canonical)
                .unwrap_or(peer);
        }

        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|line| line.split(','))
            .filter_map(|item| item.trim().parse::<IpAddr>().ok())
            .map(canonical)
            .collect();
        forwarded
            .iter()
            .rev()
            .find(|address| !self.is_trusted(**address))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer)
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|network| network.contains(&address))
    }
}

/// IPv4 addresses that arrive mapped into IPv6 (`::ffff:a.b.c.d`) are treated as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(address),
        IpAddr::V4(_) => address,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn resolver(proxies: &[&str], header: Option<&str>) -> ClientIpResolver {
        ClientIpResolver::new(proxies.iter().map(|p| p.parse().unwrap()).collect(), header).unwrap()
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        headers
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 4000)
    }

    #[test]
    fn untrusted_peer_header_is_ignored() {
        let resolver = resolver(&["10.0.0.0/8"], None);
        let ip = resolver.resolve(peer("203.0.113.9"), &forwarded("1.2.3.4"));
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_peer_yields_rightmost_untrusted_address() {
        let resolver = resolver(&["10.0.0.0/8"], None);
        let ip = resolver.resolve(peer("10.0.0.2"), &forwarded("6.6.6.6, 198.51.100.7, 10.0.0.5"));
        assert_eq!(ip, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        let resolver = resolver(&["10.0.0.0/8"], None);
        assert_eq!(resolver.resolve(peer("10.0.0.2"), &HeaderMap::new()), "10.0.0.2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn configured_header_replaces_forwarded_for() {
        let resolver = resolver(&["10.0.0.0/8"], Some("cf-connecting-ip"));
        let mut headers = forwarded("6.6.6.6");
        headers.insert("cf-connecting-ip", HeaderValue::from_static("2001:db8::1"));
        assert_eq!(resolver.resolve(peer("10.1.1.1"), &headers), "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn mapped_ipv4_peer_is_ipv4() {
        let resolver = resolver(&[], None);
        assert_eq!(resolver.resolve(peer("::ffff:192.0.2.1"), &HeaderMap::new()), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
