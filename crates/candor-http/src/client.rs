//! Who is on the other end: the TCP peer, or — when the peer is a proxy the operator trusts
//! (`[server] trusted_proxies`) — the nearest address in `X-Forwarded-For` that is not one of
//! those proxies. A client cannot choose its address by sending the header itself: it is read
//! only when a trusted proxy delivered the request, and only as far as trusted hops reach.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use super::AppState;

/// The client's address, as [`client_address`] found it (unspecified without a TCP peer).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<ClientIp>().copied().unwrap_or(ClientIp(IpAddr::from([0, 0, 0, 0]))))
    }
}

/// Middleware: works out the client's address once per request and keeps it as [`ClientIp`].
pub async fn remember_client(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if let Some(peer) = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip()) {
        // The header is read only when a proxy is trusted at all (most requests: no allocation).
        let client = if state.trusted_proxies.is_empty() {
            peer.to_canonical()
        } else {
            let forwarded: Vec<&str> =
                request.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
            client_address(peer, &forwarded, &state.trusted_proxies)
        };
        request.extensions_mut().insert(ClientIp(client));
    }
    next.run(request).await
}

/// The client's address: `peer` unless it is a trusted proxy; then the `X-Forwarded-For` hops
/// (values in order, each `client, proxy1, …`) are walked from the right past trusted proxies.
/// A malformed hop stops the walk at the last trusted address.
pub fn client_address(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |a: &IpAddr| trusted.iter().any(|n| n.contains(a));
    let mut current = peer.to_canonical();
    if !is_trusted(&current) {
        return current;
    }
    for hop in forwarded_for.iter().flat_map(|v| v.split(',')).rev() {
        let Ok(address) = hop.trim().parse::<IpAddr>() else { return current };
        current = address.to_canonical();
        if !is_trusted(&current) {
            return current;
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()];
        // Straight from the internet: the header is the client's own claim, ignored.
        assert_eq!(client_address(ip("203.0.113.9"), &["198.51.100.1"], &trusted), ip("203.0.113.9"));
        // Through our proxy: the nearest untrusted hop, not a spoofed one further left.
        assert_eq!(client_address(ip("10.1.2.3"), &["6.6.6.6, 203.0.113.9"], &trusted), ip("203.0.113.9"));
        assert_eq!(client_address(ip("10.1.2.3"), &["6.6.6.6", "203.0.113.9, 10.0.0.7"], &trusted), ip("203.0.113.9"));
        // No header, or garbage: the proxy's own address.
        assert_eq!(client_address(ip("10.1.2.3"), &[], &trusted), ip("10.1.2.3"));
        assert_eq!(client_address(ip("10.1.2.3"), &["not-an-address"], &trusted), ip("10.1.2.3"));
        // IPv4 seen through an IPv6 socket is the IPv4 address.
        assert_eq!(client_address(ip("::ffff:203.0.113.9"), &[], &[]), ip("203.0.113.9"));
        assert_eq!(client_address(ip("::ffff:127.0.0.1"), &["2001:db8::1"], &trusted), ip("2001:db8::1"));
    }
}
