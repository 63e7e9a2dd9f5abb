//! Capability messages and the per-layer selection (SPEC §4.5, PD-4, PD-7).
//!
//! A [`CapMsg`] lists, per layer L2..L5, the protocol ids a node speaks (e.g.
//! `betanet/htx/1.2.0`) plus named feature flags. Both ends of a handshake compute the same
//! [`Selection`] from the two messages with [`select`]: per layer, the highest id present in
//! both sets, where ids rank by their trailing numeric `x.y.z` (compared as numbers), then by
//! bytes, and ids without a version rank lowest. [`inner_ctx`] builds the det-CBOR `ctx` that
//! the key schedule binds.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::cbor::{self, CborError, Value};

/// The L2 id of HTX 1.2.
pub const HTX_1_2: &str = "betanet/htx/1.2.0";
/// The L2 id of legacy HTX 1.1 framing.
pub const HTX_1_1: &str = "betanet/htx/1.1.0";
/// The L3 id of the overlay mesh.
pub const MESH_1_2: &str = "betanet/mesh/1.2.0";
/// The L4 id of the mixnet.
pub const MIX_1_2: &str = "betanet/mix/1.2.0";
/// The L5 id of naming.
pub const NAMING_1_2: &str = "betanet/naming/1.2.0";

/// Why a capability message is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapsError {
    /// Not deterministic CBOR.
    #[error("capability message is not deterministic CBOR: {0}")]
    Cbor(#[from] CborError),
    /// Not a map.
    #[error("capability message is not a map")]
    NotAMap,
    /// A required layer list (`l2`..`l5`) is missing.
    #[error("capability message lacks layer {0}")]
    MissingLayer(&'static str),
    /// A layer list or an id in it has the wrong type.
    #[error("capability layer {0} is not an array of text ids")]
    BadLayer(&'static str),
    /// `features` is not a map of text to bool.
    #[error("capability features are not a map of text to bool")]
    BadFeatures,
}

/// A capability message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapMsg {
    /// L2 (transport) ids.
    pub l2: Vec<String>,
    /// L3 (overlay) ids.
    pub l3: Vec<String>,
    /// L4 (privacy hop) ids.
    pub l4: Vec<String>,
    /// L5 (naming) ids.
    pub l5: Vec<String>,
    /// Named feature flags.
    pub features: BTreeMap<String, bool>,
}

const LAYERS: [&str; 4] = ["l2", "l3", "l4", "l5"];

impl CapMsg {
    /// The capabilities of this implementation: HTX 1.2 (and 1.1 when `legacy` is set), mesh,
    /// mix and naming 1.2.
    pub fn betanet_default(legacy: bool) -> Self {
        let mut l2 = vec![HTX_1_2.to_owned()];
        if legacy {
            l2.push(HTX_1_1.to_owned());
        }
        CapMsg {
            l2,
            l3: vec![MESH_1_2.to_owned()],
            l4: vec![MIX_1_2.to_owned()],
            l5: vec![NAMING_1_2.to_owned()],
            features: BTreeMap::new(),
        }
    }

    fn layer(&self, i: usize) -> &[String] {
        match i {
            0 => &self.l2,
            1 => &self.l3,
            2 => &self.l4,
            _ => &self.l5,
        }
    }

    /// The message as a CBOR map.
    pub fn to_value(&self) -> Value {
        let list =
            |ids: &[String]| Value::Array(ids.iter().map(|s| Value::text(s.as_str())).collect());
        Value::map([
            ("l2", list(&self.l2)),
            ("l3", list(&self.l3)),
            ("l4", list(&self.l4)),
            ("l5", list(&self.l5)),
            (
                "features",
                Value::Map(
                    self.features
                        .iter()
                        .map(|(k, v)| (Value::text(k.as_str()), Value::Bool(*v)))
                        .collect(),
                ),
            ),
        ])
    }

    /// Reads a capability message from a CBOR map. Unknown keys are ignored; `features` is
    /// optional.
    pub fn from_value(v: &Value) -> Result<Self, CapsError> {
        if v.as_map().is_none() {
            return Err(CapsError::NotAMap);
        }
        let mut out = CapMsg::default();
        for (i, name) in LAYERS.iter().enumerate() {
            let items = v
                .get(name)
                .ok_or(CapsError::MissingLayer(name))?
                .as_array()
                .ok_or(CapsError::BadLayer(name))?;
            let ids = items
                .iter()
                .map(|it| {
                    it.as_text()
                        .map(str::to_owned)
                        .ok_or(CapsError::BadLayer(name))
                })
                .collect::<Result<Vec<_>, _>>()?;
            match i {
                0 => out.l2 = ids,
                1 => out.l3 = ids,
                2 => out.l4 = ids,
                _ => out.l5 = ids,
            }
        }
        if let Some(f) = v.get("features") {
            let m = f.as_map().ok_or(CapsError::BadFeatures)?;
            for (k, val) in m {
                let k = k.as_text().ok_or(CapsError::BadFeatures)?;
                let b = val.as_bool().ok_or(CapsError::BadFeatures)?;
                out.features.insert(k.to_owned(), b);
            }
        }
        Ok(out)
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        // A CapMsg map has five distinct text keys, so encoding cannot fail.
        cbor::encode(&self.to_value()).unwrap_or_default()
    }

    /// Strict decoding.
    pub fn decode(bytes: &[u8]) -> Result<Self, CapsError> {
        Self::from_value(&cbor::decode(bytes)?)
    }
}

/// The ids both sides selected, one per layer (`""` where nothing is common).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Selected L2 id.
    pub l2: String,
    /// Selected L3 id.
    pub l3: String,
    /// Selected L4 id.
    pub l4: String,
    /// Selected L5 id.
    pub l5: String,
}

impl Selection {
    /// Whether an L2 id was agreed (otherwise the connection fails with
    /// `VERSION_NEGOTIATION_FAILED`).
    pub fn has_l2(&self) -> bool {
        !self.l2.is_empty()
    }
}

/// The trailing `x.y.z` (any number of numeric dot-separated components) of an id.
fn version_of(id: &str) -> Option<Vec<u64>> {
    let tail = id.rsplit('/').next()?;
    let parts: Option<Vec<u64>> = tail
        .split('.')
        .map(|p| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                p.parse::<u64>().ok()
            }
        })
        .collect();
    parts.filter(|p| !p.is_empty())
}

/// The PD-7 ranking of two ids: by version (numerically), then by bytes; versionless lowest.
pub fn rank(a: &str, b: &str) -> Ordering {
    match (version_of(a), version_of(b)) {
        (Some(va), Some(vb)) => va.cmp(&vb).then_with(|| a.as_bytes().cmp(b.as_bytes())),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// Per layer, the highest-ranked id present in both messages.
pub fn select(a: &CapMsg, b: &CapMsg) -> Selection {
    let pick = |i: usize| -> String {
        a.layer(i)
            .iter()
            .filter(|id| b.layer(i).contains(id))
            .max_by(|x, y| rank(x, y))
            .cloned()
            .unwrap_or_default()
    };
    Selection {
        l2: pick(0),
        l3: pick(1),
        l4: pick(2),
        l5: pick(3),
    }
}

/// The det-CBOR `ctx` of SPEC §4.5: chosen ids, both capability maps (nested, exactly as sent)
/// and the TemplateID (32 zero bytes without calibration).
pub fn inner_ctx(
    sel: &Selection,
    caps_client: &Value,
    caps_server: &Value,
    template: &[u8; 32],
) -> Result<Vec<u8>, CborError> {
    cbor::encode(&Value::map([
        ("l2", Value::text(sel.l2.as_str())),
        ("l3", Value::text(sel.l3.as_str())),
        ("l4", Value::text(sel.l4.as_str())),
        ("l5", Value::text(sel.l5.as_str())),
        ("caps_client", caps_client.clone()),
        ("caps_server", caps_server.clone()),
        ("template", Value::bytes(template.to_vec())),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(l2: &[&str]) -> CapMsg {
        CapMsg {
            l2: l2.iter().map(|s| s.to_string()).collect(),
            ..CapMsg::default()
        }
    }

    #[test]
    fn ranking() {
        assert_eq!(
            rank("betanet/htx/1.10.0", "betanet/htx/1.9.0"),
            Ordering::Greater
        );
        assert_eq!(
            rank("betanet/htx/1.2.0", "betanet/htx/1.2.0"),
            Ordering::Equal
        );
        assert_eq!(rank("x/2.0.0", "betanet/htx/1.2.0"), Ordering::Greater);
        assert_eq!(rank("betanet/htx", "betanet/htx/0.0.1"), Ordering::Less);
        assert_eq!(rank("a/1.0.0", "b/1.0.0"), Ordering::Less);
        assert_eq!(
            rank("betanet/htx/1.2.0-rc", "betanet/htx/0.1"),
            Ordering::Less
        );
    }

    #[test]
    fn selection_is_symmetric_and_highest_common() {
        let a = caps(&[HTX_1_1, HTX_1_2, "betanet/htx/1.3.0"]);
        let b = caps(&[HTX_1_2, HTX_1_1]);
        let s = select(&a, &b);
        assert_eq!(s.l2, HTX_1_2);
        assert_eq!(select(&b, &a), s);
        assert_eq!(s.l3, "");
        assert!(!select(&caps(&[HTX_1_1]), &caps(&[HTX_1_2])).has_l2());
    }

    #[test]
    fn encode_decode_and_bytes() {
        let c = CapMsg::betanet_default(false);
        let bytes = c.encode();
        assert_eq!(CapMsg::decode(&bytes).unwrap(), c);
        // Keys sorted by encoded bytes: "l2".."l5" (3 bytes each) before "features" (9 bytes).
        assert_eq!(bytes[0], 0xa5);
        assert_eq!(&bytes[1..4], b"\x62l2");
    }

    #[test]
    fn rejects_missing_layer_and_bad_types() {
        let v = Value::map([("l2", Value::Array(vec![]))]);
        assert_eq!(CapMsg::from_value(&v), Err(CapsError::MissingLayer("l3")));
        let v = Value::map([
            ("l2", Value::Array(vec![Value::Uint(1)])),
            ("l3", Value::Array(vec![])),
            ("l4", Value::Array(vec![])),
            ("l5", Value::Array(vec![])),
        ]);
        assert_eq!(CapMsg::from_value(&v), Err(CapsError::BadLayer("l2")));
        assert_eq!(CapMsg::from_value(&Value::Null), Err(CapsError::NotAMap));
    }

    #[test]
    fn ctx_nests_maps() {
        let c = CapMsg::betanet_default(false);
        let s = select(&c, &c);
        let ctx = inner_ctx(&s, &c.to_value(), &c.to_value(), &[0; 32]).unwrap();
        let v = cbor::decode(&ctx).unwrap();
        assert_eq!(v.get("caps_client"), Some(&c.to_value()));
        assert_eq!(v.get("l2").and_then(Value::as_text), Some(HTX_1_2));
        assert_eq!(
            v.get("template").and_then(Value::as_bytes),
            Some(&[0u8; 32][..])
        );
    }
}
