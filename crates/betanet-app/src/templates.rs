//! Templates (minijinja) over several roots, reloaded when a file changes.
//!
//! * `{{ var }}` is HTML-escaped in `.html`/`.htm`/`.xml` templates; `{{ var | safe }}` is raw.
//! * Roots are searched in the order they were added; a name not found in any root falls back
//!   to the built-in templates (`betanet/dashboard.html`), so a root can override them.
//! * Every lookup re-checks which file the name resolves to and its (mtime, size) stamp; a
//!   changed, added or removed file is reloaded without a restart (one `stat` per root).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use minijinja::value::{Serde, Value};
use minijinja::{Environment, ErrorKind, TemplateSource};

use crate::error::AppError;
use crate::response::Response;

/// Built-in templates, overridable from any root.
const BUILTINS: &[(&str, &str)] = &[(
    "betanet/dashboard.html",
    include_str!("../templates/dashboard.html"),
)];

type Stamp = (SystemTime, u64);
type Roots = Arc<RwLock<Vec<PathBuf>>>;

/// The template environment; cheap to clone (shared).
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    roots: Roots,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("roots", &self.roots())
            .finish()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

/// Joins a template name onto a root, refusing `..`, hidden segments and backslashes.
fn safe_join(root: &Path, name: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for seg in name.split('/') {
        if seg.is_empty() {
            continue;
        }
        if seg.starts_with('.') || seg.contains(['\\', '\0', ':']) {
            return None;
        }
        p.push(seg);
    }
    Some(p)
}

fn stamp(p: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(p).ok()?;
    if !m.is_file() {
        return None;
    }
    Some((m.modified().ok()?, m.len()))
}

fn resolve(roots: &Roots, name: &str) -> Option<(PathBuf, Stamp)> {
    let roots = roots.read().unwrap_or_else(PoisonError::into_inner);
    roots.iter().find_map(|r| {
        let p = safe_join(r, name)?;
        let s = stamp(&p)?;
        Some((p, s))
    })
}

fn load(roots: &Roots, name: &str) -> Result<Option<TemplateSource>, minijinja::Error> {
    if let Some((path, st)) = resolve(roots, name) {
        let src = std::fs::read_to_string(&path).map_err(|e| {
            minijinja::Error::new(ErrorKind::InvalidOperation, "could not read template")
                .with_source(e)
        })?;
        let roots = roots.clone();
        let name = name.to_owned();
        return Ok(Some(TemplateSource::new(src).with_uptodate_check(
            move || matches!(resolve(&roots, &name), Some((p, s)) if p == path && s == st),
        )));
    }
    if let Some((_, src)) = BUILTINS.iter().find(|(n, _)| *n == name) {
        let roots = roots.clone();
        let name = name.to_owned();
        return Ok(Some(
            TemplateSource::new(*src).with_uptodate_check(move || resolve(&roots, &name).is_none()),
        ));
    }
    Ok(None)
}

impl Templates {
    /// An environment with no roots (only the built-ins).
    #[must_use]
    pub fn new() -> Self {
        let roots: Roots = Arc::new(RwLock::new(Vec::new()));
        let mut env = Environment::new();
        env.set_auto_reload(true);
        let r = roots.clone();
        env.set_loader(move |name| load(&r, name));
        Templates {
            env: Arc::new(env),
            roots,
        }
    }

    /// Adds a root (searched after the existing ones).
    pub fn add_root(&self, dir: &Path) {
        let mut roots = self.roots.write().unwrap_or_else(PoisonError::into_inner);
        if !roots.iter().any(|r| r == dir) {
            roots.push(dir.to_path_buf());
        }
    }

    /// The roots in search order.
    #[must_use]
    pub fn roots(&self) -> Vec<PathBuf> {
        self.roots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Renders `name` with a serializable context.
    pub fn render<T: serde::Serialize>(&self, name: &str, ctx: T) -> Result<String, AppError> {
        let t = self.env.get_template(name)?;
        Ok(t.render(Value::from(Serde(ctx)))?)
    }

    /// Renders into a 200 response typed by the template's extension; a missing template or a
    /// render error gives a 500 (logged without the context).
    #[must_use]
    pub fn render_response<T: serde::Serialize>(&self, name: &str, ctx: T) -> Response {
        match self.render(name, ctx) {
            Ok(s) => {
                let ct = match name.rsplit('.').next() {
                    Some("html" | "htm") => "text/html; charset=utf-8",
                    Some("json") => "application/json",
                    Some("xml") => "application/xml",
                    _ => "text/plain; charset=utf-8",
                };
                Response::with_body(ct, s)
            }
            Err(e) => {
                tracing::error!(template = name, error = %e, "template failed");
                Response::error(500, "template error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_safe_and_roots_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("x.html"), "A {{ v }} {{ v | safe }}").unwrap();
        std::fs::write(b.path().join("x.html"), "B").unwrap();
        std::fs::write(b.path().join("y.txt"), "{{ v }}").unwrap();
        let t = Templates::new();
        t.add_root(a.path());
        t.add_root(b.path());
        let ctx = serde_json::json!({"v": "<b>&"});
        assert_eq!(t.render("x.html", &ctx).unwrap(), "A &lt;b&gt;&amp; <b>&");
        assert_eq!(t.render("y.txt", &ctx).unwrap(), "<b>&");
        assert!(t.render("missing.html", &ctx).is_err());
        assert!(t.render("../x.html", &ctx).is_err());
        assert_eq!(t.render_response("nope.html", &ctx).status, 500);
    }

    #[test]
    fn reload_on_change_and_builtin_override() {
        let a = tempfile::tempdir().unwrap();
        let p = a.path().join("page.html");
        std::fs::write(&p, "v1 {{ n }}").unwrap();
        let t = Templates::new();
        t.add_root(a.path());
        assert_eq!(
            t.render("page.html", serde_json::json!({"n": 1})).unwrap(),
            "v1 1"
        );
        std::fs::write(&p, "version2 {{ n }}").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        drop(f);
        assert_eq!(
            t.render("page.html", serde_json::json!({"n": 2})).unwrap(),
            "version2 2"
        );
        // Built-in until a root provides the same name.
        let snap = crate::stats::NodeStats::new().snapshot();
        let ctx = serde_json::json!({"site_name": "S", "snapshot_json": "{}", "snapshot": snap, "info": crate::app::SiteInfo::default()});
        assert!(
            t.render("betanet/dashboard.html", &ctx)
                .unwrap()
                .contains("<html")
        );
        std::fs::create_dir(a.path().join("betanet")).unwrap();
        std::fs::write(a.path().join("betanet/dashboard.html"), "mine").unwrap();
        assert_eq!(t.render("betanet/dashboard.html", &ctx).unwrap(), "mine");
    }
}
