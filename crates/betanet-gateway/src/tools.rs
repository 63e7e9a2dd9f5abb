//! CLI helpers: site ticket keys and ready-to-use ticket examples.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use betanet_crypto::dh::X25519Public;
use betanet_ticket::ticket::RenderedCarrier;
use betanet_ticket::{Carrier, CarrierPolicy, SiteInfo, SiteTicketKey, TicketKeys, make_ticket};
use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::error::GatewayError;

/// A fresh site ticket key: `(secret_hex, ticket_pub_hex, key_id_hex)`. The secret goes into
/// the gateway config (`ticket.secret_hex`); the public key and key id are published.
pub fn new_site_ticket_key() -> Result<(Zeroizing<String>, String, String), GatewayError> {
    let mut secret = Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut OsRng, secret.as_mut());
    let key = SiteTicketKey::from_secret(betanet_crypto::dh::X25519Secret::from_bytes(*secret), {
        let mut id = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut id);
        id
    })?;
    let k = key.keys();
    Ok((
        Zeroizing::new(hex::encode(secret.as_ref())),
        hex::encode(k.ticket_pub.0),
        hex::encode(k.ticket_key_id),
    ))
}

fn parse_hex<const N: usize>(what: &'static str, s: &str) -> Result<[u8; N], GatewayError> {
    let b = hex::decode(s.trim()).map_err(|e| {
        GatewayError::config(
            what,
            format!("not hex ({e})"),
            "pass the value printed by ticket-keygen",
        )
    })?;
    <[u8; N]>::try_from(b.as_slice()).map_err(|_| {
        GatewayError::config(
            what,
            format!("expected {} hex chars", 2 * N),
            "pass the value printed by ticket-keygen",
        )
    })
}

/// The text printed by `betanet ticket <ticket_pub_hex> <ticket_key_id_hex> <site_name>`: one
/// fresh ticket per carrier (each usable once, valid for the current hour ±1) with ready
/// `curl` lines. `site_name` is a URL base such as `http://127.0.0.1:8080` or a host name.
pub fn ticket_examples(
    ticket_pub_hex: &str,
    key_id_hex: &str,
    site_name: &str,
) -> Result<String, GatewayError> {
    let ticket_pub = parse_hex::<32>("ticket_pub_hex", ticket_pub_hex)?;
    let key_id = parse_hex::<8>("ticket_key_id_hex", key_id_hex)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = if site_name.contains("://") {
        site_name.trim_end_matches('/').to_owned()
    } else {
        format!("https://{}", site_name.trim_end_matches('/'))
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# access tickets for {base} (key id {key_id_hex}); each ticket is single-use, valid this hour ±1"
    );
    for carrier in [Carrier::Cookie, Carrier::Query, Carrier::Body] {
        let site = SiteInfo {
            keys: TicketKeys {
                ticket_pub: X25519Public(ticket_pub),
                ticket_key_id: key_id,
            },
            policy: CarrierPolicy::only(carrier),
        };
        let t = make_ticket(&site, now, &mut OsRng)?;
        match t.render() {
            RenderedCarrier::Cookie(c) => {
                let _ = writeln!(out, "Cookie: {c}");
                let _ = writeln!(out, "  curl -H 'Cookie: {c}' {base}/");
            }
            RenderedCarrier::Query(q) => {
                let _ = writeln!(out, "Query: ?{q}");
                let _ = writeln!(out, "  curl '{base}/?{q}'");
            }
            RenderedCarrier::Body { content_type, body } => {
                let _ = writeln!(out, "Body ({content_type}): {body}");
                let _ = writeln!(
                    out,
                    "  curl -H 'Content-Type: {content_type}' --data '{body}' {base}/"
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_and_examples() {
        let (secret, pubhex, id) = new_site_ticket_key().unwrap();
        assert_eq!(secret.len(), 64);
        assert_eq!(pubhex.len(), 64);
        assert_eq!(id.len(), 16);
        let text = ticket_examples(&pubhex, &id, "http://127.0.0.1:1").unwrap();
        assert!(text.contains("Cookie: __Host-bn1="));
        assert!(text.contains("?bn1="));
        assert!(text.contains("--data 'bn1="));
        assert!(ticket_examples("zz", &id, "x").is_err());
        assert!(ticket_examples(&pubhex, "00", "x").is_err());
    }
}
