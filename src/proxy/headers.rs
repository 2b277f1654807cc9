//! Header hygiene at the upstream edge: hop-by-hop removal and `X-Forwarded-*`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers: those of RFC 9110 §7.6.1 (`Connection`, `Proxy-Connection`,
/// `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`), the proxy-authentication
/// pair, which concerns this hop only (RFC 9110 §11.7), and `Trailer`, since
/// trailers are not forwarded. They are never passed on.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Where `Transfer-Encoding` is in [`HOP_BY_HOP`].
const TRANSFER_ENCODING_BIT: usize = 7;

/// `x-forwarded-for`
pub(super) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`
pub(super) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`
pub(super) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including every header named in `Connection`.
///
/// With `Transfer-Encoding`, `Content-Length` goes too: the message was
/// framed by its transfer coding, and the length, if any, is not its body's
/// (RFC 9112 §6.3: a proxy must drop it before forwarding). Kept, it would
/// cut the forwarded body short or leave the receiver waiting for more.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names present (not their values), rather than a
    // hashed removal per hop-by-hop name. Most messages carry none of them,
    // or `Connection: keep-alive`/`close`, whose tokens name no further
    // header: those cases allocate nothing.
    let mut present = 0u16; // bit i: HOP_BY_HOP[i] is present
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name.as_str().as_bytes()) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    let mut named: Vec<HeaderName> = Vec::new();
    if present & 1 != 0 {
        if let header::Entry::Occupied(connection) = headers.entry(header::CONNECTION) {
            // Read and removed in one lookup.
            present &= !1;
            let (_, values) = connection.remove_entry_mult();
            for value in values {
                let Ok(value) = value.to_str() else { continue };
                for token in value.split(',').map(str::trim) {
                    if let Some(other) = named_by_connection(token) {
                        if !named.contains(&other) {
                            named.push(other);
                        }
                    }
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & (1 << TRANSFER_ENCODING_BIT) != 0 {
        headers.remove(header::CONTENT_LENGTH);
    }
    for name in named {
        headers.remove(name);
    }
}

/// The further header a `Connection` token names, if it names one that is
/// not a hop-by-hop header already (removed anyway) or `close`.
fn named_by_connection(token: &str) -> Option<HeaderName> {
    if token.is_empty() {
        return None;
    }
    let mut lower = [0u8; 24];
    if token.len() <= lower.len() {
        let lower = &mut lower[..token.len()];
        lower.copy_from_slice(token.as_bytes());
        lower.make_ascii_lowercase();
        if lower == b"close" || hop_by_hop_index(lower).is_some() {
            return None;
        }
    }
    HeaderName::from_bytes(token.as_bytes()).ok()
}

/// Where a lower-case name is in [`HOP_BY_HOP`]: a match on the bytes, which
/// is cheaper than comparing `HeaderName`s one by one.
fn hop_by_hop_index(lower: &[u8]) -> Option<usize> {
    Some(match lower {
        b"connection" => 0,
        b"keep-alive" => 1,
        b"proxy-connection" => 2,
        b"proxy-authenticate" => 3,
        b"proxy-authorization" => 4,
        b"te" => 5,
        b"trailer" => 6,
        b"transfer-encoding" => 7,
        b"upgrade" => 8,
        _ => return None,
    })
}

/// Adds the client to `X-Forwarded-For` (appending to a chain the app's own proxy
/// started) and sets `X-Forwarded-Proto` / `X-Forwarded-Host` unless an earlier
/// proxy already did.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: Option<&HeaderValue>,
    host: Option<HeaderValue>,
) {
    // One lookup per header through the entry API: each lookup hashes the
    // name byte by byte.
    if let Some(ip) = client {
        match headers.entry(&X_FORWARDED_FOR) {
            header::Entry::Vacant(entry) => {
                entry.insert(ip.clone());
            }
            header::Entry::Occupied(mut entry) => {
                // The chain may arrive split over several header lines.
                let mut chain = Vec::new();
                for earlier in entry.iter() {
                    chain.extend_from_slice(earlier.as_bytes());
                    chain.extend_from_slice(b", ");
                }
                chain.extend_from_slice(ip.as_bytes());
                if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(chain)) {
                    // Replaces every earlier line with the one chain.
                    entry.insert(value);
                }
            }
        }
    }
    // The client side of leanproxy speaks plain HTTP (h1 or h2c).
    headers
        .entry(&X_FORWARDED_PROTO)
        .or_insert(HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.entry(&X_FORWARDED_HOST).or_insert(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_standard_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "Keep-Alive, X-Secret-Hop, close, ,TE"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("x-other", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("content-type", "application/json"),
            ("lean-correlation-id", "abc"),
        ]);
        remove_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "lean-correlation-id"]);
    }

    #[test]
    fn hop_by_hop_index_matches_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(
                hop_by_hop_index(name.as_str().as_bytes()),
                Some(i),
                "{name}"
            );
        }
        assert_eq!(hop_by_hop_index(b"content-type"), None);
    }

    #[test]
    fn forwarded_for_appends_to_an_existing_chain() {
        let mut h = map(&[("x-forwarded-for", "10.0.0.1")]);
        add_forwarded(&mut h, Some(&HeaderValue::from_static("127.0.0.1")), None);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn forwarded_for_keeps_every_line_of_the_chain() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        add_forwarded(&mut h, Some(&HeaderValue::from_static("127.0.0.1")), None);
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2, 127.0.0.1");
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
    }

    #[test]
    fn transfer_encoding_takes_content_length_with_it() {
        let mut h = map(&[
            ("content-length", "3"),
            ("transfer-encoding", "chunked"),
            ("content-type", "text/plain"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        let mut alone = map(&[("content-length", "3"), ("connection", "close")]);
        remove_hop_by_hop(&mut alone);
        assert_eq!(alone["content-length"], "3");
        assert_eq!(HOP_BY_HOP[TRANSFER_ENCODING_BIT], header::TRANSFER_ENCODING);
    }

    #[test]
    fn forwarded_host_keeps_an_earlier_proxys_value() {
        let mut h = map(&[("x-forwarded-host", "app.example")]);
        add_forwarded(
            &mut h,
            None,
            Some(HeaderValue::from_static("127.0.0.1:7070")),
        );
        assert_eq!(h[&X_FORWARDED_HOST], "app.example");
    }
}
