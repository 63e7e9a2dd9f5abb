//! The node key file: an Ed25519 seed in a small text format, written with mode 0600.
//!
//! ```text
//! # Betanet node key (Ed25519 seed). Keep this file secret.
//! betanet-ed25519-seed-v1 <64 hex digits>
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use betanet_crypto::sign::SigningKey;
use zeroize::Zeroizing;

/// The default data directory: `$BETANET_DATA_DIR`, else `$XDG_DATA_HOME/betanet`, else
/// `~/.local/share/betanet`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BETANET_DATA_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("betanet");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/betanet"),
        None => PathBuf::from(".betanet"),
    }
}

/// The default key path inside the data directory.
pub fn default_key_path() -> PathBuf {
    default_data_dir().join("node.key")
}

/// Writes a new key file; refuses to overwrite unless `force`.
pub fn write_key(path: &Path, key: &SigningKey, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!(
            "{} already exists; refusing to overwrite a node key (pass --force to replace it, \
             which changes this node's identity)",
            path.display()
        );
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    let body = betanet_crypto::keyfile::encode(key);
    let tmp = path.with_extension("key.tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(body.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot move key into {}", path.display()))?;
    Ok(())
}

/// Reads a key file, with errors that say what is wrong and how to fix it.
pub fn read_key(path: &Path) -> Result<SigningKey> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "no node key at {}; create one with `betanet keygen --out {}`",
                path.display(),
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot read node key {}: {e}", path.display())
        }
    })?);
    betanet_crypto::keyfile::decode(&text).map_err(|e| anyhow::anyhow!("{} {e}", path.display()))
}
