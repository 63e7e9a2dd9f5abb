//! Sans-IO SOCKS5 (RFC 1928) parsing and protocol detection. Every parser takes the bytes
//! read so far and returns `Ok(None)` when more are needed, `Ok(Some((value, consumed)))` when
//! a whole message is there, or a typed error; none of them panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ProxyError;

/// SOCKS protocol version 5.
pub const VERSION: u8 = 5;
/// The "no authentication required" method.
pub const METHOD_NO_AUTH: u8 = 0x00;
/// "No acceptable methods".
pub const METHOD_NONE_ACCEPTABLE: u8 = 0xFF;
/// The CONNECT command.
pub const CMD_CONNECT: u8 = 1;

/// What the first byte of a connection says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// No bytes yet.
    NeedMore,
    /// SOCKS5 (first byte 0x05).
    Socks5,
    /// Looks like an HTTP/1.x request line (first byte an ASCII uppercase letter).
    Http,
    /// Neither (e.g. SOCKS4 or a TLS ClientHello): the connection is closed.
    Other,
}

/// Tells SOCKS5 from HTTP by the first byte.
pub fn detect(buf: &[u8]) -> Detected {
    match buf.first() {
        None => Detected::NeedMore,
        Some(&VERSION) => Detected::Socks5,
        Some(b) if b.is_ascii_uppercase() => Detected::Http,
        Some(_) => Detected::Other,
    }
}

/// The client's method-selection message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// The offered authentication methods.
    pub methods: Vec<u8>,
}

impl Greeting {
    /// Whether "no authentication" is offered (the only method this proxy accepts).
    pub fn offers_no_auth(&self) -> bool {
        self.methods.contains(&METHOD_NO_AUTH)
    }
}

/// Parses `VER NMETHODS METHODS...`.
pub fn parse_greeting(buf: &[u8]) -> Result<Option<(Greeting, usize)>, ProxyError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(ProxyError::SocksVersion(ver));
    }
    let Some(&n) = buf.get(1) else {
        return Ok(None);
    };
    if n == 0 {
        return Err(ProxyError::SocksNoMethods);
    }
    let end = 2 + usize::from(n);
    match buf.get(2..end) {
        Some(m) => Ok(Some((
            Greeting {
                methods: m.to_vec(),
            },
            end,
        ))),
        None => Ok(None),
    }
}

/// The destination of a SOCKS5 request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A host name (address type 3), as sent (`--socks5-hostname`).
    Domain(String),
    /// An IP address (address types 1 and 4).
    Ip(IpAddr),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Domain(d) => f.write_str(d),
            Target::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A SOCKS5 CONNECT request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Where to connect.
    pub target: Target,
    /// The destination port.
    pub port: u16,
}

/// Parses `VER CMD RSV ATYP DST.ADDR DST.PORT`. A complete request with a command other
/// than CONNECT is [`ProxyError::SocksCommand`] (answer [`Reply::CommandNotSupported`]); an
/// unknown address type is [`ProxyError::SocksAddressType`] (answer
/// [`Reply::AddressTypeNotSupported`]).
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ProxyError> {
    let Some(&ver) = buf.first() else {
        return Ok(None);
    };
    if ver != VERSION {
        return Err(ProxyError::SocksVersion(ver));
    }
    let (Some(&cmd), Some(&rsv), Some(&atyp)) = (buf.get(1), buf.get(2), buf.get(3)) else {
        return Ok(None);
    };
    if rsv != 0 {
        return Err(ProxyError::SocksReserved(rsv));
    }
    let (target, addr_end) = match atyp {
        1 => {
            let Some(b) = buf.get(4..8) else {
                return Ok(None);
            };
            let mut a = [0u8; 4];
            a.copy_from_slice(b);
            (Target::Ip(IpAddr::V4(Ipv4Addr::from(a))), 8)
        }
        4 => {
            let Some(b) = buf.get(4..20) else {
                return Ok(None);
            };
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            (Target::Ip(IpAddr::V6(Ipv6Addr::from(a))), 20)
        }
        3 => {
            let Some(&len) = buf.get(4) else {
                return Ok(None);
            };
            let end = 5 + usize::from(len);
            let Some(b) = buf.get(5..end) else {
                return Ok(None);
            };
            let name = std::str::from_utf8(b).map_err(|_| ProxyError::SocksDomain)?;
            if !valid_host(name) {
                return Err(ProxyError::SocksDomain);
            }
            (Target::Domain(name.to_owned()), end)
        }
        other => return Err(ProxyError::SocksAddressType(other)),
    };
    let Some(p) = buf.get(addr_end..addr_end + 2) else {
        return Ok(None);
    };
    let port = u16::from_be_bytes([
        p.first().copied().unwrap_or(0),
        p.get(1).copied().unwrap_or(0),
    ]);
    if cmd != CMD_CONNECT {
        return Err(ProxyError::SocksCommand(cmd));
    }
    Ok(Some((Request { target, port }, addr_end + 2)))
}

impl Request {
    /// The client's encoding of this CONNECT request (domain names longer than 255 bytes
    /// are cut to 255).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, CMD_CONNECT, 0];
        match &self.target {
            Target::Ip(IpAddr::V4(a)) => {
                out.push(1);
                out.extend_from_slice(&a.octets());
            }
            Target::Ip(IpAddr::V6(a)) => {
                out.push(4);
                out.extend_from_slice(&a.octets());
            }
            Target::Domain(d) => {
                let b = d.as_bytes();
                let b = b.get(..255).unwrap_or(b);
                out.push(3);
                out.push(u8::try_from(b.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(b);
            }
        }
        out.extend_from_slice(&self.port.to_be_bytes());
        out
    }
}

/// Whether `name` is a plausible host name: 1..=255 bytes of letters, digits, `-`, `.`, `_`.
pub fn valid_host(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// SOCKS5 reply codes used by the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reply {
    /// 0x00: succeeded.
    Succeeded = 0x00,
    /// 0x01: general failure (the site could not be reached).
    GeneralFailure = 0x01,
    /// 0x02: connection not allowed by ruleset (not a configured Betanet site).
    NotAllowed = 0x02,
    /// 0x07: command not supported.
    CommandNotSupported = 0x07,
    /// 0x08: address type not supported.
    AddressTypeNotSupported = 0x08,
}

/// The reply message `VER REP RSV ATYP=1 0.0.0.0:0`.
pub fn reply(code: Reply) -> [u8; 10] {
    [VERSION, code as u8, 0, 1, 0, 0, 0, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting() {
        assert!(parse_greeting(b"").unwrap().is_none());
        assert!(parse_greeting(b"\x05").unwrap().is_none());
        assert!(parse_greeting(b"\x05\x02\x00").unwrap().is_none());
        let (g, n) = parse_greeting(b"\x05\x02\x00\x02rest").unwrap().unwrap();
        assert_eq!(n, 4);
        assert_eq!(g.methods, vec![0, 2]);
        assert!(g.offers_no_auth());
        let (g, _) = parse_greeting(b"\x05\x01\x02").unwrap().unwrap();
        assert!(!g.offers_no_auth());
        assert!(matches!(
            parse_greeting(b"\x04\x01\x00"),
            Err(ProxyError::SocksVersion(4))
        ));
        assert!(matches!(
            parse_greeting(b"\x05\x00"),
            Err(ProxyError::SocksNoMethods)
        ));
    }

    #[test]
    fn requests() {
        let mut domain = b"\x05\x01\x00\x03\x07demo.bn".to_vec();
        assert!(parse_request(&domain).unwrap().is_none());
        domain.extend_from_slice(&80u16.to_be_bytes());
        for cut in 0..domain.len() {
            assert!(
                parse_request(&domain[..cut]).unwrap().is_none(),
                "cut {cut}"
            );
        }
        let (r, n) = parse_request(&domain).unwrap().unwrap();
        assert_eq!(n, domain.len());
        assert_eq!(r.target, Target::Domain("demo.bn".into()));
        assert_eq!(r.port, 80);
        let v4 = b"\x05\x01\x00\x01\x7f\x00\x00\x01\x1f\x90";
        let (r, n) = parse_request(v4).unwrap().unwrap();
        assert_eq!(
            (r.target.to_string(), r.port, n),
            ("127.0.0.1".into(), 8080, 10)
        );
        let mut v6 = b"\x05\x01\x00\x04".to_vec();
        v6.extend_from_slice(&[0; 15]);
        v6.extend_from_slice(&[1, 0, 80]);
        let (r, n) = parse_request(&v6).unwrap().unwrap();
        assert_eq!((r.target.to_string(), r.port, n), ("::1".into(), 80, 22));
        assert!(matches!(
            parse_request(b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50"),
            Err(ProxyError::SocksCommand(2))
        ));
        assert!(matches!(
            parse_request(b"\x05\x01\x00\x09"),
            Err(ProxyError::SocksAddressType(9))
        ));
        assert!(matches!(
            parse_request(b"\x05\x01\x01\x01"),
            Err(ProxyError::SocksReserved(1))
        ));
        assert!(matches!(
            parse_request(b"\x05\x01\x00\x03\x03a b\x00\x50"),
            Err(ProxyError::SocksDomain)
        ));
        assert!(matches!(
            parse_request(b"\x05\x01\x00\x03\x00\x00\x50"),
            Err(ProxyError::SocksDomain)
        ));
    }

    #[test]
    fn detection_and_reply() {
        assert_eq!(detect(b""), Detected::NeedMore);
        assert_eq!(detect(b"\x05\x01\x00"), Detected::Socks5);
        assert_eq!(detect(b"GET http://demo.bn/ HTTP/1.1"), Detected::Http);
        assert_eq!(detect(b"CONNECT demo.bn:80 HTTP/1.1"), Detected::Http);
        assert_eq!(detect(b"\x16\x03\x01"), Detected::Other);
        assert_eq!(detect(b"\x04\x01"), Detected::Other);
        assert_eq!(reply(Reply::NotAllowed), [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = detect(&bytes);
            if let Ok(Some((_, n))) = parse_greeting(&bytes) {
                proptest::prop_assert!(n <= bytes.len());
            }
            if let Ok(Some((_, n))) = parse_request(&bytes) {
                proptest::prop_assert!(n <= bytes.len());
            }
        }

        #[test]
        fn ip_requests_roundtrip(v4 in proptest::num::u32::ANY, v6 in proptest::num::u128::ANY, port in proptest::num::u16::ANY) {
            for ip in [IpAddr::V4(Ipv4Addr::from(v4)), IpAddr::V6(Ipv6Addr::from(v6))] {
                let r = Request { target: Target::Ip(ip), port };
                let b = r.encode();
                let (back, n) = parse_request(&b).unwrap().unwrap();
                proptest::prop_assert_eq!(n, b.len());
                proptest::prop_assert_eq!(back, r);
            }
        }

        #[test]
        fn domain_requests_roundtrip(name in "[a-z0-9][a-z0-9.-]{0,60}", port in proptest::num::u16::ANY) {
            let mut b = vec![5, 1, 0, 3, name.len() as u8];
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&port.to_be_bytes());
            let (r, n) = parse_request(&b).unwrap().unwrap();
            proptest::prop_assert_eq!(n, b.len());
            proptest::prop_assert_eq!(r.target, Target::Domain(name));
            proptest::prop_assert_eq!(r.port, port);
        }
    }
}
