//! Replay protection: one Bloom filter per mix-key epoch, persisted so a restart does not
//! reopen the replay window, rotated together with the mix key (the previous epoch is kept
//! while its key is kept).
//!
//! [`ReplayFilter`] is the pure in-memory structure; [`PersistentReplayFilter`] adds a snapshot
//! file plus an append-only log of tags per epoch. Tags of a batch are appended and flushed
//! before the batch is forwarded, so a crash or restart never forgets a forwarded packet
//! (with `sync = true` the log is also fsynced, which survives power loss).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::MixError;
use crate::packet::ReplayTag;

const MAGIC: &[u8; 8] = b"BNMXRF1\0";

/// A Bloom filter over 16-byte pseudorandom replay tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u64>,
    m: u64,
    k: u32,
    count: u64,
}

impl Bloom {
    /// Sized for `capacity` items at false-positive rate `fp` (clamped to sane values).
    pub fn new(capacity: u64, fp: f64) -> Self {
        let n = capacity.max(1) as f64;
        let p = fp.clamp(1e-12, 0.5);
        let ln2 = std::f64::consts::LN_2;
        let m = ((-n * p.ln()) / (ln2 * ln2)).ceil().max(64.0) as u64;
        let m = m.div_ceil(64) * 64;
        let k = ((m as f64 / n) * ln2).round().clamp(1.0, 32.0) as u32;
        Bloom {
            bits: vec![0; (m / 64) as usize],
            m,
            k,
            count: 0,
        }
    }

    fn indexes(&self, tag: &ReplayTag) -> impl Iterator<Item = u64> + use<> {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&tag[..8]);
        b.copy_from_slice(&tag[8..16]);
        let h1 = u64::from_le_bytes(a);
        let h2 = u64::from_le_bytes(b) | 1;
        let m = self.m;
        (0..u64::from(self.k)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
    }

    /// Inserts `tag`; returns `true` if it was (probably) new, `false` if already present.
    pub fn insert(&mut self, tag: &ReplayTag) -> bool {
        let mut new = false;
        for idx in self.indexes(tag) {
            let (w, b) = ((idx / 64) as usize, idx % 64);
            if let Some(word) = self.bits.get_mut(w)
                && *word & (1 << b) == 0
            {
                new = true;
                *word |= 1 << b;
            }
        }
        if new {
            self.count += 1;
        }
        new
    }

    /// Membership test without inserting.
    pub fn contains(&self, tag: &ReplayTag) -> bool {
        self.indexes(tag).all(|idx| {
            self.bits
                .get((idx / 64) as usize)
                .is_some_and(|w| w & (1 << (idx % 64)) != 0)
        })
    }

    /// Number of distinct insertions.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Size in bits.
    pub fn bits(&self) -> u64 {
        self.m
    }

    fn encode(&self, epoch: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity(40 + self.bits.len() * 8);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&epoch.to_be_bytes());
        v.extend_from_slice(&self.k.to_be_bytes());
        v.extend_from_slice(&self.m.to_be_bytes());
        v.extend_from_slice(&self.count.to_be_bytes());
        for w in &self.bits {
            v.extend_from_slice(&w.to_le_bytes());
        }
        let sum = sha256(&v);
        v.extend_from_slice(&sum);
        v
    }

    fn decode(b: &[u8], path: &Path) -> Result<(u32, Bloom), MixError> {
        let bad = |what| MixError::CorruptState {
            path: path.to_path_buf(),
            what,
        };
        if b.len() < 32 + 32 {
            return Err(bad("snapshot too short"));
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if sha256(body) != sum {
            return Err(bad("snapshot checksum mismatch"));
        }
        if body.get(..8) != Some(MAGIC.as_slice()) {
            return Err(bad("bad snapshot magic"));
        }
        let u32_at = |o: usize| {
            body.get(o..o + 4)
                .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        };
        let u64_at = |o: usize| {
            body.get(o..o + 8).map(|s| {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_be_bytes(a)
            })
        };
        let epoch = u32_at(8).ok_or(bad("truncated"))?;
        let k = u32_at(12).ok_or(bad("truncated"))?;
        let m = u64_at(16).ok_or(bad("truncated"))?;
        let count = u64_at(24).ok_or(bad("truncated"))?;
        let words = body.get(32..).ok_or(bad("truncated"))?;
        if m % 64 != 0 || words.len() as u64 * 8 != m || k == 0 || k > 32 {
            return Err(bad("inconsistent snapshot parameters"));
        }
        let bits = words
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                u64::from_le_bytes(a)
            })
            .collect();
        Ok((epoch, Bloom { bits, m, k, count }))
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// Filter sizing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplayConfig {
    /// Expected packets per key epoch.
    pub capacity: u64,
    /// Target false-positive rate at capacity (a false positive drops one honest packet).
    pub fp_rate: f64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            capacity: 4_000_000,
            fp_rate: 1e-6,
        }
    }
}

/// In-memory replay filter: one Bloom per tracked key epoch (at most the current and the
/// previous one).
#[derive(Clone, Debug)]
pub struct ReplayFilter {
    cfg: ReplayConfig,
    epochs: BTreeMap<u32, Bloom>,
}

impl ReplayFilter {
    /// An empty filter tracking `epochs`.
    pub fn new(cfg: ReplayConfig, epochs: &[u32]) -> Self {
        let epochs = epochs
            .iter()
            .map(|&e| (e, Bloom::new(cfg.capacity, cfg.fp_rate)))
            .collect();
        ReplayFilter { cfg, epochs }
    }

    /// Records `tag` under `epoch`. `Ok(true)`: new packet; `Ok(false)`: replay.
    pub fn check_and_insert(&mut self, epoch: u32, tag: &ReplayTag) -> Result<bool, MixError> {
        self.epochs
            .get_mut(&epoch)
            .map(|b| b.insert(tag))
            .ok_or(MixError::UnknownEpoch(epoch))
    }

    /// Starts tracking `new_epoch` and forgets every epoch older than the previous newest one.
    /// Returns the epochs dropped.
    pub fn rotate(&mut self, new_epoch: u32) -> Vec<u32> {
        let prev = self.epochs.keys().next_back().copied();
        self.epochs
            .entry(new_epoch)
            .or_insert_with(|| Bloom::new(self.cfg.capacity, self.cfg.fp_rate));
        let keep_from = prev.map_or(new_epoch, |p| p.min(new_epoch));
        let dropped: Vec<u32> = self
            .epochs
            .keys()
            .copied()
            .filter(|&e| e < keep_from)
            .collect();
        for e in &dropped {
            self.epochs.remove(e);
        }
        dropped
    }

    /// Epochs currently tracked.
    pub fn epochs(&self) -> Vec<u32> {
        self.epochs.keys().copied().collect()
    }

    /// Items recorded in `epoch`.
    pub fn count(&self, epoch: u32) -> Option<u64> {
        self.epochs.get(&epoch).map(Bloom::count)
    }
}

/// A [`ReplayFilter`] backed by files in one directory: `epoch-<E>.bloom` snapshots and
/// `epoch-<E>.log` append-only tag logs.
pub struct PersistentReplayFilter {
    dir: PathBuf,
    sync: bool,
    filter: ReplayFilter,
    logs: BTreeMap<u32, BufWriter<File>>,
    snapshot_every: u64,
    since_snapshot: u64,
}

impl std::fmt::Debug for PersistentReplayFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentReplayFilter")
            .field("dir", &self.dir)
            .field("epochs", &self.filter.epochs())
            .finish_non_exhaustive()
    }
}

impl PersistentReplayFilter {
    /// Opens (or creates) the filter state for `epochs` in `dir`, replaying snapshots and logs.
    /// Files of other epochs are deleted.
    pub fn open(
        dir: &Path,
        cfg: ReplayConfig,
        epochs: &[u32],
        sync: bool,
    ) -> Result<Self, MixError> {
        fs::create_dir_all(dir).map_err(|e| MixError::io(dir, e))?;
        let mut filter = ReplayFilter::new(cfg, epochs);
        let mut logs = BTreeMap::new();
        for &e in epochs {
            let snap = dir.join(format!("epoch-{e}.bloom"));
            if snap.exists() {
                let bytes = fs::read(&snap).map_err(|x| MixError::io(&snap, x))?;
                let (se, bloom) = Bloom::decode(&bytes, &snap)?;
                if se != e {
                    return Err(MixError::CorruptState {
                        path: snap,
                        what: "snapshot epoch differs from its file name",
                    });
                }
                filter.epochs.insert(e, bloom);
            }
            let logp = dir.join(format!("epoch-{e}.log"));
            if logp.exists() {
                let mut buf = Vec::new();
                File::open(&logp)
                    .and_then(|mut f| f.read_to_end(&mut buf))
                    .map_err(|x| MixError::io(&logp, x))?;
                // A torn final record (crash mid-write) is ignored: its packet was never
                // forwarded, because tags are flushed before forwarding.
                for c in buf.chunks_exact(16) {
                    let mut t = [0u8; 16];
                    t.copy_from_slice(c);
                    filter.check_and_insert(e, &t)?;
                }
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&logp)
                .map_err(|x| MixError::io(&logp, x))?;
            logs.insert(e, BufWriter::with_capacity(64 * 1024, f));
        }
        let mut me = PersistentReplayFilter {
            dir: dir.to_path_buf(),
            sync,
            filter,
            logs,
            snapshot_every: (cfg.capacity / 8).max(1024),
            since_snapshot: 0,
        };
        me.delete_other_epochs()?;
        Ok(me)
    }

    fn delete_other_epochs(&mut self) -> Result<(), MixError> {
        let rd = fs::read_dir(&self.dir).map_err(|e| MixError::io(&self.dir, e))?;
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix("epoch-") else {
                continue;
            };
            let num = rest.split('.').next().and_then(|n| n.parse::<u32>().ok());
            if let Some(e) = num
                && !self.filter.epochs.contains_key(&e)
            {
                let p = ent.path();
                fs::remove_file(&p).map_err(|x| MixError::io(&p, x))?;
            }
        }
        Ok(())
    }

    /// Checks and records a batch of `(epoch, tag)`; element `i` of the result is `Ok(true)` for
    /// a new packet, `Ok(false)` for a replay, `Err(UnknownEpoch)` for an untracked epoch. The
    /// new tags are written and flushed (and fsynced if configured) before this returns.
    pub fn check_batch(
        &mut self,
        items: &[(u32, ReplayTag)],
    ) -> Result<Vec<Result<bool, MixError>>, MixError> {
        let mut out = Vec::with_capacity(items.len());
        let mut touched: Vec<u32> = Vec::new();
        for (e, tag) in items {
            let r = self.filter.check_and_insert(*e, tag);
            if let Ok(true) = r {
                if let Some(w) = self.logs.get_mut(e) {
                    w.write_all(tag)
                        .map_err(|x| MixError::io(self.dir.join(format!("epoch-{e}.log")), x))?;
                    if !touched.contains(e) {
                        touched.push(*e);
                    }
                }
                self.since_snapshot += 1;
            }
            out.push(r);
        }
        for e in touched {
            if let Some(w) = self.logs.get_mut(&e) {
                let p = self.dir.join(format!("epoch-{e}.log"));
                w.flush().map_err(|x| MixError::io(&p, x))?;
                if self.sync {
                    w.get_ref().sync_data().map_err(|x| MixError::io(&p, x))?;
                }
            }
        }
        if self.since_snapshot >= self.snapshot_every {
            self.snapshot()?;
        }
        Ok(out)
    }

    /// Writes every epoch's Bloom to its snapshot file (atomically) and truncates its log.
    pub fn snapshot(&mut self) -> Result<(), MixError> {
        for (e, bloom) in &self.filter.epochs {
            let snap = self.dir.join(format!("epoch-{e}.bloom"));
            let tmp = self.dir.join(format!("epoch-{e}.bloom.tmp"));
            let bytes = bloom.encode(*e);
            let mut f = File::create(&tmp).map_err(|x| MixError::io(&tmp, x))?;
            f.write_all(&bytes)
                .and_then(|_| f.sync_all())
                .map_err(|x| MixError::io(&tmp, x))?;
            fs::rename(&tmp, &snap).map_err(|x| MixError::io(&snap, x))?;
            let logp = self.dir.join(format!("epoch-{e}.log"));
            let f = File::create(&logp).map_err(|x| MixError::io(&logp, x))?;
            f.sync_all().map_err(|x| MixError::io(&logp, x))?;
            let f = OpenOptions::new()
                .append(true)
                .open(&logp)
                .map_err(|x| MixError::io(&logp, x))?;
            self.logs.insert(*e, BufWriter::with_capacity(64 * 1024, f));
        }
        self.since_snapshot = 0;
        Ok(())
    }

    /// Rotates to `new_epoch` (keeping the previous one) and deletes dropped epochs' files.
    pub fn rotate(&mut self, new_epoch: u32) -> Result<Vec<u32>, MixError> {
        let dropped = self.filter.rotate(new_epoch);
        for e in &dropped {
            self.logs.remove(e);
        }
        if !self.logs.contains_key(&new_epoch) {
            let logp = self.dir.join(format!("epoch-{new_epoch}.log"));
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&logp)
                .map_err(|x| MixError::io(&logp, x))?;
            self.logs
                .insert(new_epoch, BufWriter::with_capacity(64 * 1024, f));
        }
        self.delete_other_epochs()?;
        Ok(dropped)
    }

    /// The in-memory filter.
    pub fn filter(&self) -> &ReplayFilter {
        &self.filter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(i: u64) -> ReplayTag {
        let h = sha256(&i.to_be_bytes());
        let mut t = [0u8; 16];
        t.copy_from_slice(&h[..16]);
        t
    }

    #[test]
    fn bloom_basic_and_fp_rate() {
        let mut b = Bloom::new(10_000, 1e-4);
        for i in 0..10_000 {
            assert!(b.insert(&tag(i)));
        }
        for i in 0..10_000 {
            assert!(b.contains(&tag(i)));
            assert!(!b.insert(&tag(i)));
        }
        let fps = (10_000..110_000).filter(|&i| b.contains(&tag(i))).count();
        assert!(fps < 50, "false positives {fps} / 100000");
        assert_eq!(b.count(), 10_000);
    }

    #[test]
    fn filter_rotation_keeps_previous() {
        let cfg = ReplayConfig {
            capacity: 1000,
            fp_rate: 1e-6,
        };
        let mut f = ReplayFilter::new(cfg, &[1]);
        assert!(f.check_and_insert(1, &tag(1)).unwrap());
        assert!(!f.check_and_insert(1, &tag(1)).unwrap());
        assert!(f.rotate(2).is_empty());
        assert!(!f.check_and_insert(1, &tag(1)).unwrap());
        assert!(f.check_and_insert(2, &tag(1)).unwrap());
        assert_eq!(f.rotate(3), vec![1]);
        assert!(matches!(
            f.check_and_insert(1, &tag(1)),
            Err(MixError::UnknownEpoch(1))
        ));
        assert_eq!(f.epochs(), vec![2, 3]);
    }

    #[test]
    fn persistent_survives_restart_snapshot_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ReplayConfig {
            capacity: 2000,
            fp_rate: 1e-6,
        };
        {
            let mut p = PersistentReplayFilter::open(dir.path(), cfg, &[5], false).unwrap();
            let r = p
                .check_batch(&[(5, tag(1)), (5, tag(2)), (5, tag(1))])
                .unwrap();
            assert_eq!(
                r.into_iter().map(|x| x.unwrap()).collect::<Vec<_>>(),
                vec![true, true, false]
            );
        }
        // restart: log replayed
        {
            let mut p = PersistentReplayFilter::open(dir.path(), cfg, &[5], false).unwrap();
            let r = p.check_batch(&[(5, tag(1)), (5, tag(3))]).unwrap();
            assert!(!*r[0].as_ref().unwrap());
            assert!(*r[1].as_ref().unwrap());
            p.snapshot().unwrap();
            let r = p.check_batch(&[(5, tag(4))]).unwrap();
            assert!(*r[0].as_ref().unwrap());
            p.rotate(6).unwrap();
        }
        // restart after snapshot + further log + rotation
        {
            let mut p = PersistentReplayFilter::open(dir.path(), cfg, &[5, 6], false).unwrap();
            for i in 1..=4 {
                let r = p.check_batch(&[(5, tag(i))]).unwrap();
                assert!(!*r[0].as_ref().unwrap(), "tag {i} forgotten");
            }
            let r = p.check_batch(&[(6, tag(1))]).unwrap();
            assert!(*r[0].as_ref().unwrap());
            assert_eq!(p.rotate(7).unwrap(), vec![5]);
            assert!(!dir.path().join("epoch-5.log").exists());
            assert!(!dir.path().join("epoch-5.bloom").exists());
        }
        // torn log record + corrupt snapshot detection
        {
            let logp = dir.path().join("epoch-6.log");
            let mut f = OpenOptions::new().append(true).open(&logp).unwrap();
            f.write_all(&[1, 2, 3]).unwrap();
            drop(f);
            let mut p = PersistentReplayFilter::open(dir.path(), cfg, &[6, 7], false).unwrap();
            let r = p.check_batch(&[(6, tag(1))]).unwrap();
            assert!(!*r[0].as_ref().unwrap());
            p.snapshot().unwrap();
            let snap = dir.path().join("epoch-6.bloom");
            let mut b = fs::read(&snap).unwrap();
            b[40] ^= 1;
            fs::write(&snap, b).unwrap();
            assert!(matches!(
                PersistentReplayFilter::open(dir.path(), cfg, &[6, 7], false),
                Err(MixError::CorruptState { .. })
            ));
        }
    }
}
