//! Persistence behind a small key-value trait.
//!
//! The trust logic stores three things that must survive a restart: the spent-voucher set, the
//! alias ledger and the maintainer set. [`Store`] is all it needs; [`MemStore`] keeps it in
//! memory (tests, ephemeral nodes) and [`RedbStore`] in the node's `redb` database file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::TrustError;

/// The logical tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Table {
    /// Spent voucher keys.
    Spent,
    /// Alias ledger entries, keyed by alias.
    Alias,
    /// Ledger metadata (maintainer set, ...).
    Meta,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Spent => "betanet_trust_spent",
            Table::Alias => "betanet_trust_alias",
            Table::Meta => "betanet_trust_meta",
        }
    }
}

/// A transactional key-value store. Every method is atomic on its own.
pub trait Store {
    /// Reads a value.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TrustError>;
    /// Writes a value (durably, before returning).
    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TrustError>;
    /// Inserts `key` only when absent; returns `false` (and changes nothing) when it existed.
    fn insert_new(&self, table: Table, key: &[u8], value: &[u8]) -> Result<bool, TrustError>;
    /// Removes a key; returns whether it existed.
    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, TrustError>;
}

impl<S: Store + ?Sized> Store for &S {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TrustError> {
        (**self).get(table, key)
    }
    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TrustError> {
        (**self).put(table, key, value)
    }
    fn insert_new(&self, table: Table, key: &[u8], value: &[u8]) -> Result<bool, TrustError> {
        (**self).insert_new(table, key, value)
    }
    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, TrustError> {
        (**self).remove(table, key)
    }
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TrustError> {
        (**self).get(table, key)
    }
    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TrustError> {
        (**self).put(table, key, value)
    }
    fn insert_new(&self, table: Table, key: &[u8], value: &[u8]) -> Result<bool, TrustError> {
        (**self).insert_new(table, key, value)
    }
    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, TrustError> {
        (**self).remove(table, key)
    }
}

type MemMap = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

/// In-memory store (lost on drop).
#[derive(Debug, Default)]
pub struct MemStore {
    inner: Mutex<MemMap>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemMap> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of entries in a table.
    pub fn len(&self, table: Table) -> usize {
        self.lock().keys().filter(|(t, _)| *t == table).count()
    }

    /// Whether a table is empty.
    pub fn is_empty(&self, table: Table) -> bool {
        self.len(table) == 0
    }
}

impl Store for MemStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TrustError> {
        Ok(self.lock().get(&(table, key.to_vec())).cloned())
    }
    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TrustError> {
        self.lock().insert((table, key.to_vec()), value.to_vec());
        Ok(())
    }
    fn insert_new(&self, table: Table, key: &[u8], value: &[u8]) -> Result<bool, TrustError> {
        let mut m = self.lock();
        let k = (table, key.to_vec());
        if m.contains_key(&k) {
            return Ok(false);
        }
        m.insert(k, value.to_vec());
        Ok(true)
    }
    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, TrustError> {
        Ok(self.lock().remove(&(table, key.to_vec())).is_some())
    }
}

fn def(table: Table) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
    TableDefinition::new(table.name())
}

/// A store in a `redb` database file (the node's database; other crates may keep their own
/// tables in the same file, ours are prefixed `betanet_trust_`). Writes are committed durably
/// before a method returns.
#[derive(Debug)]
pub struct RedbStore {
    db: redb::Database,
}

impl RedbStore {
    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<Self, TrustError> {
        let db = redb::Database::create(path)?;
        Ok(RedbStore { db })
    }

    /// Wraps an already open database.
    pub fn from_database(db: redb::Database) -> Self {
        RedbStore { db }
    }
}

impl Store for RedbStore {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, TrustError> {
        let tx = self.db.begin_read()?;
        let t = match tx.open_table(def(table)) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    fn put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<(), TrustError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(def(table))?;
            t.insert(key, value)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn insert_new(&self, table: Table, key: &[u8], value: &[u8]) -> Result<bool, TrustError> {
        let tx = self.db.begin_write()?;
        let inserted = {
            let mut t = tx.open_table(def(table))?;
            if t.get(key)?.is_some() {
                false
            } else {
                t.insert(key, value)?;
                true
            }
        };
        if inserted {
            tx.commit()?;
        } else {
            tx.abort()?;
        }
        Ok(inserted)
    }

    fn remove(&self, table: Table, key: &[u8]) -> Result<bool, TrustError> {
        let tx = self.db.begin_write()?;
        let existed = {
            let mut t = tx.open_table(def(table))?;
            t.remove(key)?.is_some()
        };
        tx.commit()?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(s: &dyn Store) {
        assert_eq!(s.get(Table::Spent, b"a").unwrap(), None);
        assert!(s.insert_new(Table::Spent, b"a", b"1").unwrap());
        assert!(!s.insert_new(Table::Spent, b"a", b"2").unwrap());
        assert_eq!(s.get(Table::Spent, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            s.get(Table::Alias, b"a").unwrap(),
            None,
            "tables are separate"
        );
        s.put(Table::Alias, b"a", b"x").unwrap();
        assert_eq!(s.get(Table::Alias, b"a").unwrap(), Some(b"x".to_vec()));
        assert!(s.remove(Table::Alias, b"a").unwrap());
        assert!(!s.remove(Table::Alias, b"a").unwrap());
    }

    #[test]
    fn mem_store_semantics() {
        exercise(&MemStore::new());
    }

    #[test]
    fn redb_store_semantics_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            exercise(&s);
            s.put(Table::Meta, b"k", b"v").unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.get(Table::Meta, b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(s.get(Table::Spent, b"a").unwrap(), Some(b"1".to_vec()));
    }
}
