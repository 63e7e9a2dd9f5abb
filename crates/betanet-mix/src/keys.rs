//! The mixnode's key ring: one X25519 key per key epoch, the current and the previous one,
//! persisted as `key-<epoch>.x25519` (mode 0600) so a restart keeps accepting packets built for
//! the advertised keys, and so the replay window stays closed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rand_core::{CryptoRng, RngCore};

use crate::crypto::{MixPublicKey, MixSecretKey};
use crate::error::MixError;

/// Current and previous mix keys.
#[derive(Debug)]
pub struct KeyRing {
    dir: Option<PathBuf>,
    keys: BTreeMap<u32, MixSecretKey>,
}

fn key_path(dir: &Path, epoch: u32) -> PathBuf {
    dir.join(format!("key-{epoch}.x25519"))
}

pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), MixError> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| MixError::io(&tmp, e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| MixError::io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| MixError::io(path, e))
}

impl KeyRing {
    /// A ring that lives only in memory (tests, ephemeral nodes).
    pub fn in_memory(epoch: u32, key: MixSecretKey) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(epoch, key);
        KeyRing { dir: None, keys }
    }

    /// Loads the keys in `dir`, or creates a key for `initial_epoch` if there is none.
    pub fn open_or_create(
        dir: &Path,
        initial_epoch: u32,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, MixError> {
        fs::create_dir_all(dir).map_err(|e| MixError::io(dir, e))?;
        let mut keys = BTreeMap::new();
        let rd = fs::read_dir(dir).map_err(|e| MixError::io(dir, e))?;
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(e) = name
                .strip_prefix("key-")
                .and_then(|r| r.strip_suffix(".x25519"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let p = ent.path();
            let bytes = zeroize::Zeroizing::new(fs::read(&p).map_err(|x| MixError::io(&p, x))?);
            let arr: [u8; 32] =
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| MixError::CorruptState {
                        path: p.clone(),
                        what: "mix key file is not 32 bytes",
                    })?;
            let arr = zeroize::Zeroizing::new(arr);
            keys.insert(e, MixSecretKey::from_bytes(&arr)?);
        }
        let mut ring = KeyRing {
            dir: Some(dir.to_path_buf()),
            keys,
        };
        if ring.keys.is_empty() {
            let k = MixSecretKey::generate(rng)?;
            write_secret(&key_path(dir, initial_epoch), k.to_bytes().as_ref())?;
            ring.keys.insert(initial_epoch, k);
        }
        ring.prune()?;
        Ok(ring)
    }

    fn prune(&mut self) -> Result<Vec<u32>, MixError> {
        let mut dropped = Vec::new();
        while self.keys.len() > 2 {
            if let Some((&e, _)) = self.keys.iter().next() {
                self.keys.remove(&e);
                if let Some(d) = &self.dir {
                    let p = key_path(d, e);
                    if p.exists() {
                        fs::remove_file(&p).map_err(|x| MixError::io(&p, x))?;
                    }
                }
                dropped.push(e);
            }
        }
        Ok(dropped)
    }

    /// The newest epoch.
    pub fn current_epoch(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(0)
    }

    /// The newest public key and its epoch.
    pub fn current_public(&self) -> Option<(u32, MixPublicKey)> {
        self.keys.iter().next_back().map(|(e, k)| (*e, k.public()))
    }

    /// The key for `epoch`, if still held.
    pub fn get(&self, epoch: u32) -> Option<&MixSecretKey> {
        self.keys.get(&epoch)
    }

    /// Epochs held (at most two).
    pub fn epochs(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// Adds a fresh key for the next epoch; keeps the previous one; forgets older ones.
    /// Returns the new epoch and the dropped epochs.
    pub fn rotate(
        &mut self,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(u32, Vec<u32>), MixError> {
        let next = self.current_epoch().wrapping_add(1);
        let k = MixSecretKey::generate(rng)?;
        if let Some(d) = &self.dir {
            write_secret(&key_path(d, next), k.to_bytes().as_ref())?;
        }
        self.keys.insert(next, k);
        let dropped = self.prune()?;
        Ok((next, dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn persist_reload_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let pk1 = {
            let r = KeyRing::open_or_create(dir.path(), 10, &mut rng).unwrap();
            r.current_public().unwrap()
        };
        let mut r = KeyRing::open_or_create(dir.path(), 99, &mut rng).unwrap();
        assert_eq!(r.current_public().unwrap(), pk1);
        assert_eq!(r.rotate(&mut rng).unwrap(), (11, vec![]));
        assert_eq!(r.epochs(), vec![10, 11]);
        assert_eq!(r.rotate(&mut rng).unwrap(), (12, vec![10]));
        assert!(!key_path(dir.path(), 10).exists());
        let r2 = KeyRing::open_or_create(dir.path(), 0, &mut rng).unwrap();
        assert_eq!(r2.epochs(), vec![11, 12]);
        assert_eq!(r2.get(12).unwrap().public(), r.get(12).unwrap().public());
    }
}
