//! Migration 9: usernames and group names keyed by `sesame_core::names::lookup_key`.
//!
//! Two stored usernames that the new key makes one (`alice` and `ａｌｉｃｅ`) refuse the
//! migration, naming both: keeping one under its old key would leave an account that no
//! typed name can reach while a command naming it silently acts on the other, and choosing
//! which one goes is an administrator's call (the previous version can still remove it).
//! Groups cannot be removed, and only administrators name them (a clash is an accident, not
//! an impersonation): the oldest takes the new key, the later ones keep their old keys.

use rusqlite::{params, Transaction};
use sesame_core::names::lookup_key;
use std::collections::BTreeMap;

pub(super) fn run(tx: &Transaction) -> Result<(), String> {
    rekey(tx, "users", "username", "username_key", Clash::Refuse)?;
    rekey(tx, "groups", "name", "name_key", Clash::OldestWins)
}

/// What to do when two stored names get the same new key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clash {
    Refuse,
    OldestWins,
}

fn rekey(tx: &Transaction, table: &str, name: &str, key: &str, clash: Clash) -> Result<(), String> {
    let db = |e: rusqlite::Error| e.to_string();
    let rows: Vec<(i64, i64, String, String)> = tx
        .prepare(&format!(
            "SELECT id, tenant_id, {name}, {key} FROM {table} ORDER BY id"
        ))
        .map_err(db)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(db)?
        .collect::<rusqlite::Result<_>>()
        .map_err(db)?;
    // (tenant, new key) -> (id, name, whether its key stays)
    type Rows<'a> = Vec<(i64, &'a str, bool)>;
    let mut by_key: BTreeMap<(i64, String), Rows> = BTreeMap::new();
    for (id, tenant, n, old) in &rows {
        let new = lookup_key(n);
        let unchanged = new == *old;
        by_key
            .entry((*tenant, new))
            .or_default()
            .push((*id, n.as_str(), unchanged));
    }
    // In a clash, the name already holding the key keeps it (it is what is found today),
    // else the oldest takes it; the others keep their old keys.
    let later: Vec<i64> = by_key
        .values()
        .filter(|v| v.len() > 1)
        .flat_map(|v| {
            let winner = v.iter().position(|r| r.2).unwrap_or(0);
            v.iter()
                .enumerate()
                .filter(move |(i, _)| *i != winner)
                .map(|(_, r)| r.0)
        })
        .collect();
    if let (Clash::Refuse, Some(same)) = (clash, by_key.values().find(|v| v.len() > 1)) {
        // Debug quoting: a name holding control characters cannot drive the terminal.
        let names: Vec<String> = same
            .iter()
            .map(|(id, n, _)| format!("{n:?} (id {id})"))
            .collect();
        return Err(format!(
            "the users {} now have the same username (usernames are compared as RFC 8265 says: \
             full-width letters and case do not count). Remove all but one of them with the \
             previous version of Sesame (`sesame user remove`), then start again",
            names.join(" and ")
        ));
    }
    let changed: Vec<(i64, String)> = rows
        .iter()
        .filter(|(id, ..)| !later.contains(id))
        .filter_map(|(id, _, n, old)| {
            let new = lookup_key(n);
            (new != *old).then_some((*id, new))
        })
        .collect();
    // Through a placeholder first: a new key may be another row's old one for a moment.
    for (id, _) in &changed {
        tx.execute(
            &format!("UPDATE {table} SET {key} = ? WHERE id = ?"),
            params![format!("\u{0}rekey:{id}"), id],
        )
        .map_err(db)?;
    }
    for (id, new) in &changed {
        tx.execute(
            &format!("UPDATE {table} SET {key} = ? WHERE id = ?"),
            params![new, id],
        )
        .map_err(db)?;
    }
    Ok(())
}
