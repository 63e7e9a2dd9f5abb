//! Site configuration (TOML). Every error names the key and the fix.
//!
//! ```toml
//! site_name = "My Betanet site"
//! plugins = ["dashboard", "metrics"]          # plus "static"/"proxy", added automatically
//! templates = ["site/templates"]              # searched in order, reloaded on change
//! static = ["/static=site/static"]            # PREFIX=DIR
//! max_body_bytes = 16777216
//! stall_timeout_secs = 15
//! max_connections = 1024
//!
//! [proxy]                                     # forward unmatched paths to a local HTTP app
//! upstream = "http://127.0.0.1:3000"
//! prefix = "/"
//! strip_prefix = false
//! timeout_secs = 30
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::Limits;
use crate::error::AppError;

fn default_prefix() -> String {
    "/".to_owned()
}

fn default_proxy_timeout() -> u64 {
    30
}

/// The `[proxy]` table: forward requests to a local HTTP application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Base URL of the HTTP application, `http://host:port` (no TLS: local apps only).
    pub upstream: String,
    /// URL prefix forwarded (default `/`: everything no other route matches).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Remove the prefix before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Time allowed for the upstream's response head.
    #[serde(default = "default_proxy_timeout")]
    pub timeout_secs: u64,
}

/// Configuration of a site server (`betanet serve`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// Name shown on the dashboard.
    pub site_name: String,
    /// Plugins to install, by registry name (`dashboard`, `metrics`, `static`, `proxy`, or
    /// your own).
    pub plugins: Vec<String>,
    /// Template roots, searched in order.
    pub templates: Vec<PathBuf>,
    /// Static mounts `PREFIX=DIR`, e.g. `/static=site/static`.
    #[serde(rename = "static")]
    pub static_mounts: Vec<String>,
    /// Reverse proxy to a local HTTP app.
    pub proxy: Option<ProxyConfig>,
    /// Largest request body accepted.
    pub max_body_bytes: u64,
    /// Seconds without progress before a stalled peer gets 503 / is aborted (SPEC §10: 15).
    pub stall_timeout_secs: u64,
    /// Concurrent connections on the TCP BAR listener.
    pub max_connections: usize,
}

impl Default for AppConfig {
    fn default() -> Self {
        let l = Limits::default();
        AppConfig {
            site_name: "Betanet site".to_owned(),
            plugins: Vec::new(),
            templates: Vec::new(),
            static_mounts: Vec::new(),
            proxy: None,
            max_body_bytes: l.max_body,
            stall_timeout_secs: l.stall_timeout.as_secs(),
            max_connections: l.max_connections,
        }
    }
}

fn cfg_err(key: &str, problem: impl Into<String>, fix: impl Into<String>) -> AppError {
    AppError::Config {
        key: key.to_owned(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The backticked name after `marker` in a serde message (e.g. "unknown field `x`").
fn backticked_after<'a>(msg: &'a str, marker: &str) -> Option<&'a str> {
    let rest = msg.split(marker).nth(1)?;
    let rest = rest.strip_prefix('`')?;
    rest.split('`').next()
}

impl AppConfig {
    /// Parses and validates a TOML document holding these keys at top level.
    pub fn from_toml_str(text: &str) -> Result<Self, AppError> {
        let cfg: AppConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            let key = backticked_after(&msg, "unknown field ")
                .or_else(|| backticked_after(&msg, "missing field "))
                .map(str::to_owned)
                .or_else(|| {
                    let start = e.span()?.start;
                    let line_start = text.get(..start)?.rfind('\n').map_or(0, |i| i + 1);
                    let line = text.get(line_start..)?.lines().next()?;
                    Some(line.split('=').next()?.trim().to_owned())
                })
                .unwrap_or_else(|| "<document>".to_owned());
            cfg_err(
                &key,
                msg.trim().to_owned(),
                "see the example config in the betanet-app README (keys: site_name, plugins, templates, static, proxy.upstream, proxy.prefix, proxy.strip_prefix, proxy.timeout_secs, max_body_bytes, stall_timeout_secs, max_connections)",
            )
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Adds CLI choices (`--plugin`, `--templates`, `--static`, `--proxy`) on top; flags win.
    #[must_use]
    pub fn with_cli(
        mut self,
        plugins: &[String],
        templates: &[PathBuf],
        statics: &[String],
        proxy_upstream: Option<&str>,
    ) -> Self {
        for p in plugins {
            if !self.plugins.contains(p) {
                self.plugins.push(p.clone());
            }
        }
        for t in templates {
            if !self.templates.contains(t) {
                self.templates.push(t.clone());
            }
        }
        for s in statics {
            if !self.static_mounts.contains(s) {
                self.static_mounts.push(s.clone());
            }
        }
        if let Some(up) = proxy_upstream {
            match &mut self.proxy {
                Some(p) => p.upstream = up.to_owned(),
                None => {
                    self.proxy = Some(ProxyConfig {
                        upstream: up.to_owned(),
                        prefix: default_prefix(),
                        strip_prefix: false,
                        timeout_secs: default_proxy_timeout(),
                    });
                }
            }
        }
        self
    }

    /// Static mounts as `(prefix, dir)`.
    pub fn parsed_static_mounts(&self) -> Result<Vec<(String, PathBuf)>, AppError> {
        self.static_mounts
            .iter()
            .map(|m| {
                let (prefix, dir) = m.split_once('=').ok_or_else(|| {
                    cfg_err(
                        "static",
                        format!("entry `{m}` has no `=`"),
                        "write PREFIX=DIR, e.g. \"/static=site/static\"",
                    )
                })?;
                if !prefix.starts_with('/') || prefix.contains(['{', '}', '*']) {
                    return Err(cfg_err(
                        "static",
                        format!("prefix `{prefix}` must be a literal path starting with '/'"),
                        "write PREFIX=DIR, e.g. \"/static=site/static\"",
                    ));
                }
                if dir.is_empty() {
                    return Err(cfg_err(
                        "static",
                        format!("entry `{m}` has an empty directory"),
                        "write PREFIX=DIR with an existing directory",
                    ));
                }
                Ok((prefix.to_owned(), PathBuf::from(dir)))
            })
            .collect()
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), AppError> {
        self.parsed_static_mounts()?;
        if self.stall_timeout_secs == 0 {
            return Err(cfg_err(
                "stall_timeout_secs",
                "must be at least 1",
                "use 15 (SPEC §10)",
            ));
        }
        if self.max_connections == 0 {
            return Err(cfg_err(
                "max_connections",
                "must be at least 1",
                "use e.g. 1024",
            ));
        }
        if let Some(p) = &self.proxy {
            let ok = p
                .upstream
                .parse::<hyper::Uri>()
                .ok()
                .filter(|u| u.scheme_str() == Some("http") && u.authority().is_some());
            if ok.is_none() {
                return Err(cfg_err(
                    "proxy.upstream",
                    format!("`{}` is not an http://host:port URL", p.upstream),
                    "use e.g. \"http://127.0.0.1:3000\" (plain HTTP to a local app)",
                ));
            }
            if !p.prefix.starts_with('/') || p.prefix.contains(['{', '}', '*']) {
                return Err(cfg_err(
                    "proxy.prefix",
                    format!("`{}` must be a literal path starting with '/'", p.prefix),
                    "use \"/\" or e.g. \"/app\"",
                ));
            }
            if p.timeout_secs == 0 {
                return Err(cfg_err(
                    "proxy.timeout_secs",
                    "must be at least 1",
                    "use e.g. 30",
                ));
            }
        }
        Ok(())
    }

    /// The plugins to install: `plugins`, plus `static` when mounts are configured and `proxy`
    /// when `[proxy]` is set (each at most once).
    #[must_use]
    pub fn effective_plugins(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.plugins {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        if !self.static_mounts.is_empty() && !out.iter().any(|p| p == "static") {
            out.push("static".to_owned());
        }
        if self.proxy.is_some() && !out.iter().any(|p| p == "proxy") {
            out.push("proxy".to_owned());
        }
        out
    }

    /// Server limits from this config.
    #[must_use]
    pub fn limits(&self) -> Limits {
        Limits {
            max_body: self.max_body_bytes,
            stall_timeout: Duration::from_secs(self.stall_timeout_secs),
            max_connections: self.max_connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_example_and_defaults() {
        let cfg = AppConfig::from_toml_str(
            r#"
            site_name = "S"
            plugins = ["dashboard", "metrics"]
            templates = ["t"]
            static = ["/static=st"]
            [proxy]
            upstream = "http://127.0.0.1:3000"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.site_name, "S");
        assert_eq!(cfg.proxy.as_ref().unwrap().prefix, "/");
        assert_eq!(cfg.stall_timeout_secs, 15);
        assert_eq!(
            cfg.effective_plugins(),
            vec!["dashboard", "metrics", "static", "proxy"]
        );
        assert_eq!(
            cfg.parsed_static_mounts().unwrap(),
            vec![("/static".to_owned(), PathBuf::from("st"))]
        );
        assert_eq!(AppConfig::from_toml_str("").unwrap(), AppConfig::default());
    }

    #[test]
    fn errors_name_the_key() {
        let key = |text: &str| match AppConfig::from_toml_str(text).unwrap_err() {
            AppError::Config { key, .. } => key,
            e => panic!("{e}"),
        };
        assert_eq!(key("plugin = [\"x\"]"), "plugin");
        assert_eq!(key("stall_timeout_secs = \"x\""), "stall_timeout_secs");
        assert_eq!(key("static = [\"nodir\"]"), "static");
        assert_eq!(key("stall_timeout_secs = 0"), "stall_timeout_secs");
        assert_eq!(key("[proxy]\nupstream = \"ftp://x\""), "proxy.upstream");
        assert_eq!(key("[proxy]\nprefix = \"/\""), "upstream");
        let msg = AppConfig::from_toml_str("static = [\"nodir\"]")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("fix: write PREFIX=DIR"), "{msg}");
    }

    #[test]
    fn cli_overrides() {
        let cfg = AppConfig::default().with_cli(
            &["metrics".into(), "metrics".into()],
            &[PathBuf::from("a")],
            &["/s=d".into()],
            Some("http://127.0.0.1:9"),
        );
        assert_eq!(cfg.plugins, vec!["metrics"]);
        assert_eq!(cfg.proxy.unwrap().upstream, "http://127.0.0.1:9");
    }
}
