//! The hash index from a key's name to its position in `Parsed::keys`.

use std::hash::{BuildHasher, RandomState};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

/// Key name to position. The table holds positions only (9 bytes a key,
/// so 100,000 keys stay in the CPU's caches), not names: each name is
/// stored once, in its key, and compared there. (A map keyed by shared
/// names also cost an atomic count per key, made and dropped.) SipHash with
/// a random key, as std's `HashMap`: the names come from a file.
#[derive(Debug, Default)]
pub struct KeyIndex {
    table: HashTable<usize>,
    hasher: RandomState,
}

impl KeyIndex {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        KeyIndex {
            table: HashTable::with_capacity(capacity),
            hasher: RandomState::new(),
        }
    }

    /// The position of `name`; `name_at` gives the name at a position.
    pub fn get<'n>(&self, name: &str, name_at: impl Fn(usize) -> &'n str) -> Option<usize> {
        let hash = self.hasher.hash_one(name);
        self.table.find(hash, |&at| name_at(at) == name).copied()
    }

    /// The position of `name` if it has one; else it gets `new`, and None.
    pub(super) fn get_or_insert<'n>(
        &mut self,
        name: &str,
        new: usize,
        name_at: impl Fn(usize) -> &'n str,
    ) -> Option<usize> {
        let KeyIndex { table, hasher } = self;
        let hash = hasher.hash_one(name);
        // Growing rehashes the names already in (not `name`: `new` is not
        // in `name_at`'s range yet, and is not in the table either).
        let rehash = |&at: &usize| hasher.hash_one(name_at(at));
        match table.entry(hash, |&at| name_at(at) == name, rehash) {
            Entry::Occupied(found) => Some(*found.get()),
            Entry::Vacant(slot) => {
                slot.insert(new);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    #[test]
    fn many_names_grow_the_names_buffer_and_stay_findable() {
        let text: String = (0..5000)
            .map(|i| format!("NAME_{i}=v\nNAME_{}=again\n", i / 2))
            .collect();
        let parsed = parse(&text);
        assert_eq!(parsed.keys.len(), 5000);
        for i in [0, 1, 255, 4999] {
            let name = format!("NAME_{i}");
            assert_eq!(parsed.name(i), name);
            assert_eq!(parsed.position(&name), Some(i));
        }
        assert_eq!(parsed.position("NAME_5000"), None);
        assert_eq!(
            parsed.keys[0].count, 3,
            "NAME_0: once, then again for i = 0 and 1"
        );
    }
}
