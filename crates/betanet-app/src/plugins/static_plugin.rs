//! `static`: mounts every `PREFIX=DIR` of the config's `static` list.

use std::path::PathBuf;

use crate::app::App;
use crate::config::AppConfig;
use crate::error::AppError;
use crate::plugin::Plugin;

/// Static directories from the config.
#[derive(Debug, Clone)]
pub struct StaticPlugin {
    mounts: Vec<(String, PathBuf)>,
}

impl StaticPlugin {
    /// Reads the mounts from `cfg` (`static = ["/static=site/static"]`).
    pub fn from_config(cfg: &AppConfig) -> Result<Self, AppError> {
        Ok(StaticPlugin {
            mounts: cfg.parsed_static_mounts()?,
        })
    }

    /// Explicit mounts.
    #[must_use]
    pub fn new(mounts: Vec<(String, PathBuf)>) -> Self {
        StaticPlugin { mounts }
    }
}

impl Plugin for StaticPlugin {
    fn name(&self) -> &str {
        "static"
    }

    fn register(&self, app: &mut App) -> Result<(), AppError> {
        for (prefix, dir) in &self.mounts {
            app.add_static(prefix, dir)?;
        }
        Ok(())
    }
}
