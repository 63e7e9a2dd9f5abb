//! Plugins: a `Plugin` trait and a registry that maps names (`--plugin NAME`, `plugins = [..]`
//! in the config) to factories.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::app::App;
use crate::config::AppConfig;
use crate::error::AppError;
use crate::plugins;
use crate::stats::NodeStats;

/// A unit of site functionality that adds routes, hooks, templates roots, ….
pub trait Plugin: Send + Sync {
    /// The registry name.
    fn name(&self) -> &str;
    /// Adds the plugin's routes and hooks to `app`.
    fn register(&self, app: &mut App) -> Result<(), AppError>;
}

type Factory = Arc<dyn Fn(&AppConfig) -> Result<Box<dyn Plugin>, AppError> + Send + Sync>;

/// Name → plugin factory. Cheap to clone.
#[derive(Clone, Default)]
pub struct PluginRegistry {
    factories: BTreeMap<String, Factory>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("names", &self.names())
            .finish()
    }
}

impl PluginRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        PluginRegistry::default()
    }

    /// The built-ins: `dashboard`, `metrics`, `static`, `proxy`.
    #[must_use]
    pub fn with_builtins() -> Self {
        let mut r = PluginRegistry::new();
        r.register_plugin(plugins::DashboardPlugin);
        r.register_plugin(plugins::MetricsPlugin);
        r.register("static", |cfg| {
            Ok(Box::new(plugins::StaticPlugin::from_config(cfg)?) as Box<dyn Plugin>)
        });
        r.register("proxy", |cfg| {
            Ok(Box::new(plugins::ProxyPlugin::from_config(cfg)?) as Box<dyn Plugin>)
        });
        r
    }

    /// Registers a factory that builds the plugin from the config (replaces a same-named one).
    pub fn register<F>(&mut self, name: &str, factory: F) -> &mut Self
    where
        F: Fn(&AppConfig) -> Result<Box<dyn Plugin>, AppError> + Send + Sync + 'static,
    {
        self.factories.insert(name.to_owned(), Arc::new(factory));
        self
    }

    /// Registers a ready plugin value under its own name (cloned for every app).
    pub fn register_plugin<P: Plugin + Clone + 'static>(&mut self, plugin: P) -> &mut Self {
        let name = plugin.name().to_owned();
        self.register(&name, move |_| {
            Ok(Box::new(plugin.clone()) as Box<dyn Plugin>)
        })
    }

    /// Known names, sorted.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.factories.keys().cloned().collect()
    }

    /// Builds plugin `name` for `cfg`.
    pub fn create(&self, name: &str, cfg: &AppConfig) -> Result<Box<dyn Plugin>, AppError> {
        let f = self
            .factories
            .get(name)
            .ok_or_else(|| AppError::UnknownPlugin {
                name: name.to_owned(),
                known: self.names().join(", "),
            })?;
        f(cfg)
    }

    /// Builds and registers plugin `name` into `app`.
    pub fn install(&self, app: &mut App, name: &str, cfg: &AppConfig) -> Result<(), AppError> {
        let plugin = self.create(name, cfg)?;
        plugin.register(app)?;
        app.note_plugin(plugin.name());
        Ok(())
    }
}

impl App {
    /// Builds an app from a config: limits, site name, template roots, then every plugin of
    /// [`AppConfig::effective_plugins`] from `registry` (unknown names fail, naming the key).
    pub fn from_config(
        cfg: &AppConfig,
        registry: &PluginRegistry,
        stats: Arc<NodeStats>,
    ) -> Result<App, AppError> {
        cfg.validate()?;
        let mut app = App::with_stats(stats);
        app.set_site_name(&cfg.site_name);
        app.limits = cfg.limits();
        for t in &cfg.templates {
            if !t.is_dir() {
                return Err(AppError::Config {
                    key: "templates".to_owned(),
                    problem: format!("`{}` is not a directory", t.display()),
                    fix: "create the directory or remove it from `templates`".to_owned(),
                });
            }
            app.add_template_root(t);
        }
        let names = cfg.effective_plugins();
        // Check every name first so one error lists the problem before anything registers.
        for n in &names {
            if !registry.factories.contains_key(n) {
                return Err(AppError::UnknownPlugin {
                    name: n.clone(),
                    known: registry.names().join(", "),
                });
            }
        }
        for n in &names {
            registry.install(&mut app, n, cfg)?;
        }
        Ok(app)
    }
}
