//! The replay store for access tickets (SPEC §4.2 step 4): a repeated `(cliPub, hour)` is
//! refused for 2 h, and the state survives a restart.
//!
//! An entry for `(cliPub, hour)` inserted at `now` expires at
//! `max(now + 7200, (hour + 2) · 3600)`: at least the SPEC's 2 h, and always past the last
//! instant at which a ticket for `hour` can still verify (the server accepts hours now−1..=now+1,
//! so `hour` is accepted until `(hour + 2) · 3600`). Expired entries count as absent and are
//! removed by [`ReplayStore::prune`], which the verifier calls periodically with its `now`.
//!
//! redb schema ([`RedbReplayStore`]): table `betanet_ticket_replay_v1`, key = 40 bytes
//! `cliPub32 ‖ u64be(hour)`, value = `u64` expiry in Unix seconds. Every admission is one write
//! transaction (durable by default).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use redb::{Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::TicketError;

/// Minimum retention of a `(cliPub, hour)` pair.
pub const REPLAY_RETENTION_SECS: u64 = 7200;

/// The redb table of admitted tickets.
pub const REPLAY_TABLE: TableDefinition<'static, &'static [u8], u64> =
    TableDefinition::new("betanet_ticket_replay_v1");

/// When the entry for `hour`, admitted at `now_unix_secs`, may be forgotten.
pub fn replay_expiry(hour: u64, now_unix_secs: u64) -> u64 {
    let by_hour = hour.saturating_add(2).saturating_mul(3600);
    now_unix_secs
        .saturating_add(REPLAY_RETENTION_SECS)
        .max(by_hour)
}

fn replay_key(cli_pub: &[u8; 32], hour: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(cli_pub);
    k[32..].copy_from_slice(&hour.to_be_bytes());
    k
}

/// Remembers admitted `(cliPub, hour)` pairs.
pub trait ReplayStore {
    /// Records `(cli_pub, hour)` unless a live entry exists. `Ok(true)`: fresh (now recorded);
    /// `Ok(false)`: a replay.
    fn check_and_insert(
        &mut self,
        cli_pub: &[u8; 32],
        hour: u64,
        now_unix_secs: u64,
    ) -> Result<bool, TicketError>;

    /// Removes entries expired at `now_unix_secs`; returns how many were removed.
    fn prune(&mut self, now_unix_secs: u64) -> Result<usize, TicketError>;

    /// Number of entries held (live or not yet pruned).
    fn entry_count(&self) -> Result<usize, TicketError>;

    /// Makes every recorded entry durable (for stores that batch; a no-op by default).
    fn flush(&mut self) -> Result<(), TicketError> {
        Ok(())
    }
}

impl<T: ReplayStore + ?Sized> ReplayStore for Box<T> {
    fn check_and_insert(
        &mut self,
        cli_pub: &[u8; 32],
        hour: u64,
        now_unix_secs: u64,
    ) -> Result<bool, TicketError> {
        (**self).check_and_insert(cli_pub, hour, now_unix_secs)
    }

    fn prune(&mut self, now_unix_secs: u64) -> Result<usize, TicketError> {
        (**self).prune(now_unix_secs)
    }

    fn entry_count(&self) -> Result<usize, TicketError> {
        (**self).entry_count()
    }

    fn flush(&mut self) -> Result<(), TicketError> {
        (**self).flush()
    }
}

/// An in-memory replay store, bounded to `capacity` entries (tests, ephemeral fronts). Does not
/// survive a restart: production gateways use [`RedbReplayStore`].
pub struct MemoryReplayStore {
    map: HashMap<[u8; 40], u64>,
    capacity: usize,
}

impl core::fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("entries", &self.map.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl MemoryReplayStore {
    /// An empty store holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        MemoryReplayStore {
            map: HashMap::new(),
            capacity: capacity.max(1),
        }
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new(1 << 18)
    }
}

impl ReplayStore for MemoryReplayStore {
    fn check_and_insert(
        &mut self,
        cli_pub: &[u8; 32],
        hour: u64,
        now_unix_secs: u64,
    ) -> Result<bool, TicketError> {
        let key = replay_key(cli_pub, hour);
        if self.map.get(&key).is_some_and(|exp| *exp > now_unix_secs) {
            return Ok(false);
        }
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            self.prune(now_unix_secs)?;
            if self.map.len() >= self.capacity {
                return Err(TicketError::StoreFull {
                    capacity: self.capacity,
                });
            }
        }
        self.map.insert(key, replay_expiry(hour, now_unix_secs));
        Ok(true)
    }

    fn prune(&mut self, now_unix_secs: u64) -> Result<usize, TicketError> {
        let before = self.map.len();
        self.map.retain(|_, exp| *exp > now_unix_secs);
        Ok(before - self.map.len())
    }

    fn entry_count(&self) -> Result<usize, TicketError> {
        Ok(self.map.len())
    }
}

/// How [`RedbReplayStore`] commits admissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReplayDurability {
    /// Every admission is fsynced before it returns (default; survives power loss).
    #[default]
    Immediate,
    /// Admissions are committed without fsync and made durable by the next
    /// [`ReplayStore::flush`] or [`ReplayStore::prune`] (both commit durably). After a crash or
    /// power loss, admissions since the last flush may be forgotten; drive `flush` from a short
    /// timer (e.g. 1 s). Measured 15-20x the admission rate of `Immediate` (crate README).
    AtPrune,
}

/// A replay store in a redb database file; survives restarts.
pub struct RedbReplayStore {
    db: Arc<redb::Database>,
    durability: ReplayDurability,
}

impl core::fmt::Debug for RedbReplayStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RedbReplayStore")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl RedbReplayStore {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, TicketError> {
        let db = redb::Database::create(path)?;
        Self::from_database(Arc::new(db))
    }

    /// Uses an already open database (shared with other tables, e.g. the voucher spent set).
    pub fn from_database(db: Arc<redb::Database>) -> Result<Self, TicketError> {
        let tx = db.begin_write()?;
        tx.open_table(REPLAY_TABLE)?;
        tx.commit()?;
        Ok(RedbReplayStore {
            db,
            durability: ReplayDurability::Immediate,
        })
    }

    /// Sets the commit durability.
    pub fn set_durability(&mut self, durability: ReplayDurability) {
        self.durability = durability;
    }

    /// The underlying database.
    pub fn database(&self) -> &Arc<redb::Database> {
        &self.db
    }
}

impl ReplayStore for RedbReplayStore {
    fn check_and_insert(
        &mut self,
        cli_pub: &[u8; 32],
        hour: u64,
        now_unix_secs: u64,
    ) -> Result<bool, TicketError> {
        let key = replay_key(cli_pub, hour);
        let mut tx = self.db.begin_write()?;
        if self.durability == ReplayDurability::AtPrune {
            tx.set_durability(Durability::None)
                .map_err(|_| TicketError::Config("redb refused the durability setting"))?;
        }
        let fresh = {
            let mut t = tx.open_table(REPLAY_TABLE)?;
            let live = t
                .get(key.as_slice())?
                .is_some_and(|v| v.value() > now_unix_secs);
            if !live {
                t.insert(key.as_slice(), replay_expiry(hour, now_unix_secs))?;
            }
            !live
        };
        if fresh {
            tx.commit()?;
        } else {
            tx.abort()?;
        }
        Ok(fresh)
    }

    fn prune(&mut self, now_unix_secs: u64) -> Result<usize, TicketError> {
        let tx = self.db.begin_write()?;
        let removed = {
            let mut t = tx.open_table(REPLAY_TABLE)?;
            let before = t.len()?;
            t.retain(|_, exp| exp > now_unix_secs)?;
            before.saturating_sub(t.len()?)
        };
        tx.commit()?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    fn flush(&mut self) -> Result<(), TicketError> {
        // An empty durable commit persists all earlier non-durable commits.
        self.db.begin_write()?.commit()?;
        Ok(())
    }

    fn entry_count(&self) -> Result<usize, TicketError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(REPLAY_TABLE)?;
        Ok(usize::try_from(t.len()?).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(s: &mut dyn ReplayStore) {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let t0 = 1000 * 3600 + 10;
        assert!(s.check_and_insert(&a, 1000, t0).unwrap());
        assert!(!s.check_and_insert(&a, 1000, t0 + 1).unwrap());
        assert!(s.check_and_insert(&a, 1001, t0).unwrap(), "other hour");
        assert!(s.check_and_insert(&b, 1000, t0).unwrap(), "other key");
        // Still a replay 2 h later minus 1 s; expired after.
        assert!(!s.check_and_insert(&a, 1000, t0 + 7199).unwrap());
        assert_eq!(s.entry_count().unwrap(), 3);
        assert_eq!(s.prune(t0 + 7199).unwrap(), 0);
        // (hour 1001 admitted at t0 lives until max(t0 + 7200, 1003 * 3600)).
        assert_eq!(s.prune(t0 + 7200).unwrap(), 2);
        assert_eq!(s.entry_count().unwrap(), 1);
        assert!(s.check_and_insert(&a, 1000, t0 + 7200).unwrap());
    }

    #[test]
    fn expiry_formula() {
        assert_eq!(replay_expiry(10, 10 * 3600), 12 * 3600);
        // A ticket for the next hour admitted early is kept until it can no longer verify.
        assert_eq!(replay_expiry(11, 10 * 3600), 13 * 3600);
        assert_eq!(replay_expiry(u64::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn memory_store() {
        exercise(&mut MemoryReplayStore::default());
        let mut small = MemoryReplayStore::new(2);
        assert!(small.check_and_insert(&[1; 32], 5, 5 * 3600).unwrap());
        assert!(small.check_and_insert(&[2; 32], 5, 5 * 3600).unwrap());
        assert!(matches!(
            small.check_and_insert(&[3; 32], 5, 5 * 3600),
            Err(TicketError::StoreFull { capacity: 2 })
        ));
        // After expiry the full store prunes itself.
        assert!(small.check_and_insert(&[3; 32], 9, 9 * 3600).unwrap());
    }

    #[test]
    fn redb_store_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("replay.redb");
        let t0 = 2000 * 3600;
        {
            let mut s = RedbReplayStore::open(&path).unwrap();
            exercise(&mut s);
            assert!(s.check_and_insert(&[9; 32], 2000, t0).unwrap());
        }
        {
            let mut s = RedbReplayStore::open(&path).unwrap();
            assert!(
                !s.check_and_insert(&[9; 32], 2000, t0 + 60).unwrap(),
                "replay after reopen"
            );
            s.set_durability(ReplayDurability::AtPrune);
            assert!(s.check_and_insert(&[8; 32], 2000, t0).unwrap());
            assert_eq!(
                s.prune(t0).unwrap(),
                2,
                "the two entries left by exercise()"
            );
        }
        let mut s = RedbReplayStore::open(&path).unwrap();
        assert!(
            !s.check_and_insert(&[8; 32], 2000, t0 + 1).unwrap(),
            "committed at prune"
        );
        assert_eq!(s.prune(t0 + 3 * 3600).unwrap(), 2);
        assert_eq!(s.entry_count().unwrap(), 0);
    }
}
