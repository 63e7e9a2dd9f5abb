//! Route patterns: literal segments, `{param}` segments and a trailing wildcard `{*rest}`.
//!
//! Matching is by specificity, not registration order: at the first segment where two matching
//! patterns differ, a literal beats a `{param}`, which beats a wildcard; a tie goes to the route
//! registered first. Empty segments are ignored, so `/a/` and `/a` are the same path.

use crate::error::AppError;
use crate::request::percent_decode;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
    Wild(String),
}

impl Seg {
    fn rank(&self) -> u8 {
        match self {
            Seg::Lit(_) => 0,
            Seg::Param(_) => 1,
            Seg::Wild(_) => 2,
        }
    }
}

/// A parsed route pattern such as `/users/{id}/files/{*path}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    raw: String,
    segs: Vec<Seg>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Pattern {
    /// Parses a pattern. It must start with `/`; `{name}` captures one segment; `{*name}` (or a
    /// bare `*`, captured as `path`) captures the rest and must be last.
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let err = |reason| AppError::Pattern {
            pattern: raw.to_owned(),
            reason,
        };
        if !raw.starts_with('/') {
            return Err(err("must start with '/'"));
        }
        let parts: Vec<&str> = raw.split('/').filter(|s| !s.is_empty()).collect();
        let mut segs = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let seg = if *part == "*" {
                Seg::Wild("path".to_owned())
            } else if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if let Some(name) = inner.strip_prefix('*') {
                    if !valid_name(name) {
                        return Err(err("wildcard name must be [A-Za-z0-9_]+"));
                    }
                    Seg::Wild(name.to_owned())
                } else {
                    if !valid_name(inner) {
                        return Err(err("parameter name must be [A-Za-z0-9_]+"));
                    }
                    Seg::Param(inner.to_owned())
                }
            } else if part.contains(['{', '}', '*']) {
                return Err(err("'{', '}' and '*' only as whole segments"));
            } else {
                Seg::Lit(part.to_string())
            };
            if matches!(seg, Seg::Wild(_)) && !last {
                return Err(err("a wildcard must be the last segment"));
            }
            segs.push(seg);
        }
        let mut names: Vec<&str> = segs
            .iter()
            .filter_map(|s| match s {
                Seg::Param(n) | Seg::Wild(n) => Some(n.as_str()),
                Seg::Lit(_) => None,
            })
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        if names.len() != n {
            return Err(err("duplicate parameter name"));
        }
        Ok(Pattern {
            raw: raw.to_owned(),
            segs,
        })
    }

    /// The pattern text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// A pattern with `prefix` (a path such as `/api`, may hold `{param}`s) in front.
    pub fn prefixed(&self, prefix: &str) -> Result<Self, AppError> {
        let p = prefix.trim_end_matches('/');
        if p.is_empty() {
            return Ok(self.clone());
        }
        if self.segs.is_empty() {
            return Pattern::parse(p);
        }
        Pattern::parse(&format!("{p}{}", self.raw))
    }

    /// Matches a raw (percent-encoded) path; returns the decoded captures.
    #[must_use]
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut caps = Vec::new();
        for (i, seg) in self.segs.iter().enumerate() {
            match seg {
                Seg::Lit(l) => {
                    let p = parts.get(i)?;
                    if *p != l.as_str() && percent_decode(p, false) != *l {
                        return None;
                    }
                }
                Seg::Param(n) => {
                    let p = parts.get(i)?;
                    caps.push((n.clone(), percent_decode(p, false)));
                }
                Seg::Wild(n) => {
                    let rest: Vec<String> = parts
                        .get(i..)
                        .unwrap_or(&[])
                        .iter()
                        .map(|p| percent_decode(p, false))
                        .collect();
                    caps.push((n.clone(), rest.join("/")));
                    return Some(caps);
                }
            }
        }
        (parts.len() == self.segs.len()).then_some(caps)
    }

    /// Specificity key: lexicographically smaller is more specific.
    pub(crate) fn rank(&self) -> Vec<u8> {
        let mut r: Vec<u8> = self.segs.iter().map(Seg::rank).collect();
        // A shorter pattern that is a prefix of a longer one is never both matching unless the
        // longer ends in a wildcard; the wildcard (2) already sorts after any literal/param, and
        // an end marker (3) keeps "exact length" patterns ahead of "anything longer".
        r.push(3);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let p = Pattern::parse("/hello/{name}").unwrap();
        assert_eq!(
            p.matches("/hello/rust"),
            Some(vec![("name".into(), "rust".into())])
        );
        assert_eq!(
            p.matches("/hello/a%20b/"),
            Some(vec![("name".into(), "a b".into())])
        );
        assert_eq!(p.matches("/hello"), None);
        assert_eq!(p.matches("/hello/a/b"), None);
        let w = Pattern::parse("/static/{*path}").unwrap();
        assert_eq!(
            w.matches("/static/css/site.css"),
            Some(vec![("path".into(), "css/site.css".into())])
        );
        assert_eq!(
            w.matches("/static"),
            Some(vec![("path".into(), String::new())])
        );
        let root = Pattern::parse("/").unwrap();
        assert_eq!(root.matches("/"), Some(vec![]));
        assert_eq!(root.matches("/x"), None);
        let star = Pattern::parse("/files/*").unwrap();
        assert_eq!(
            star.matches("/files/a/b"),
            Some(vec![("path".into(), "a/b".into())])
        );
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["hello", "/{*rest}/x", "/{}", "/a{b}", "/{a}/{a}", "/{a-b}"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixing() {
        let p = Pattern::parse("/info").unwrap().prefixed("/api/").unwrap();
        assert_eq!(p.as_str(), "/api/info");
        let p = Pattern::parse("/").unwrap().prefixed("/api").unwrap();
        assert_eq!(p.as_str(), "/api");
        assert!(p.matches("/api").is_some());
    }

    #[test]
    fn ranking_prefers_literals() {
        let lit = Pattern::parse("/a/b").unwrap().rank();
        let par = Pattern::parse("/a/{x}").unwrap().rank();
        let wild = Pattern::parse("/a/{*x}").unwrap().rank();
        let root_wild = Pattern::parse("/{*x}").unwrap().rank();
        assert!(lit < par && par < wild && wild < root_wild);
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn param_captures_any_segment(seg in "[^/?]{1,20}") {
            let p = Pattern::parse("/x/{v}").unwrap();
            let m = p.matches(&format!("/x/{seg}")).unwrap();
            prop_assert_eq!(&m[0].1, &percent_decode(&seg, false));
        }

        #[test]
        fn matching_never_panics(path in ".{0,64}") {
            for pat in ["/", "/a/{b}", "/s/{*rest}", "/{x}/{y}/{*z}"] {
                let _ = Pattern::parse(pat).unwrap().matches(&path);
            }
        }
    }
}
