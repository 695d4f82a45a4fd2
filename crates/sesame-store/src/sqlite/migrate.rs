//! Schema migrations for the embedded database.
//!
//! Each file in `migrations/sqlite` runs once, in order, in its own transaction, and is
//! recorded in `_sqlx_migrations` with the SHA-384 of its text: the same table, rows and
//! checksums that earlier versions of Sesame (which ran migrations with sqlx) wrote, so a data
//! directory made by any earlier version opens and migrates forward as before. A landed
//! migration is never edited: a changed checksum stops the start with an explanation.
//!
//! A migration that SQL alone cannot express (recomputing keys with Rust code) has a file
//! too, saying what it does, and a step run right after that file in the same transaction.

use crate::{Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha384};
use std::time::Instant;

/// Rust work of a migration; an error is a message for the operator.
type Step = fn(&rusqlite::Transaction) -> Result<(), String>;

struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
    /// Work done in Rust after `sql`, in the same transaction; an error message for the
    /// operator refuses the migration.
    step: Option<Step>,
}

macro_rules! migrations {
    ($($version:literal $file:literal $description:literal $(=> $step:path)?,)+) => {
        &[$(Migration {
            version: $version,
            description: $description,
            sql: include_str!(concat!("../../migrations/sqlite/", $file)),
            step: migrations!(@step $($step)?),
        },)+]
    };
    (@step) => { None };
    (@step $step:path) => { Some($step) };
}

/// In order; the description is the file name after the number, with spaces for underscores.
const MIGRATIONS: &[Migration] = migrations![
    1 "0001_foundation.sql" "foundation",
    2 "0002_devices_and_push.sql" "devices and push",
    3 "0003_phone_sign_in_and_policy.sql" "phone sign in and policy",
    4 "0004_approval_channel.sql" "approval channel",
    5 "0005_user_ids_never_reused.sql" "user ids never reused",
    6 "0006_known_browsers.sql" "known browsers",
    7 "0007_password_guesses.sql" "password guesses",
    8 "0008_phone_sign_in_confirmation.sql" "phone sign in confirmation",
    9 "0009_precis_name_keys.sql" "precis name keys" => super::rekey::run,
    10 "0010_signins_by_user.sql" "signins by user",
    11 "0011_phone_sign_in_code.sql" "phone sign in code",
    12 "0012_openid_connect.sql" "openid connect",
    13 "0013_phones_and_texts.sql" "phones and texts",
    14 "0014_access_passes.sql" "access passes",
    15 "0015_one_current_signing_key.sql" "one current signing key",
    16 "0016_methods_by_device.sql" "methods by device",
];

fn checksum(sql: &str) -> Vec<u8> {
    Sha384::digest(sql.as_bytes()).to_vec()
}

/// Brings the database up to the newest schema.
pub(crate) fn run(c: &mut Connection) -> Result<()> {
    let fail = |m: String| StoreError::Migration(m);
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        );",
    )?;
    let applied: Vec<(i64, bool, Vec<u8>)> = {
        let mut st =
            c.prepare("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (version, success, sum) in &applied {
        let Some(m) = MIGRATIONS.iter().find(|m| m.version == *version) else {
            return Err(fail(format!(
                "the database has migration {version}, which this version of Sesame does not know: \
                 it was written by a newer version; run that version, or restore a backup"
            )));
        };
        if !success {
            return Err(fail(format!(
                "migration {version} ({}) did not finish earlier; restore the database from a backup",
                m.description
            )));
        }
        if *sum != checksum(m.sql) {
            return Err(fail(format!(
                "migration {version} ({}) was changed after it was applied to this database",
                m.description
            )));
        }
    }
    // A migration that rebuilds a table drops the old one: with foreign keys on, that would
    // delete every row referring to it. They are off while migrating (the switch only works
    // outside a transaction) and checked before each migration commits.
    c.pragma_update(None, "foreign_keys", "OFF")?;
    let result = run_pending(c, &applied);
    c.pragma_update(None, "foreign_keys", "ON")?;
    result
}

fn run_pending(c: &mut Connection, applied: &[(i64, bool, Vec<u8>)]) -> Result<()> {
    let fail = |m: String| StoreError::Migration(m);
    for m in MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version))
    {
        let started = Instant::now();
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have applied it while we waited for the write lock.
        let done: Option<i64> = tx
            .query_row(
                "SELECT version FROM _sqlx_migrations WHERE version = ?",
                [m.version],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_some() {
            continue;
        }
        tx.execute_batch(m.sql)
            .map_err(|e| fail(format!("migration {} ({}): {e}", m.version, m.description)))?;
        if let Some(step) = m.step {
            step(&tx)
                .map_err(|e| fail(format!("migration {} ({}): {e}", m.version, m.description)))?;
        }
        let broken: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()?;
        if let Some(table) = broken {
            return Err(fail(format!(
                "migration {} ({}) would leave rows of {table} pointing at nothing",
                m.version, m.description
            )));
        }
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?, ?, 1, ?, ?)",
            params![
                m.version,
                m.description,
                checksum(m.sql),
                i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX)
            ],
        )?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("m.db")).unwrap();
        (dir, c)
    }

    #[test]
    fn descriptions_follow_the_file_names_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(!m.sql.trim().is_empty());
        }
    }

    #[test]
    fn migrations_run_once_and_are_recorded_like_sqlx_did() {
        let (_d, mut c) = fresh();
        run(&mut c).unwrap();
        run(&mut c).unwrap();
        let rows: Vec<(i64, String, bool)> = c
            .prepare("SELECT version, description, success FROM _sqlx_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(rows.len(), MIGRATIONS.len());
        assert_eq!(rows[0], (1, "foundation".into(), true));
        assert_eq!(rows[2], (3, "phone sign in and policy".into(), true));
    }

    #[test]
    fn an_edited_unknown_or_unfinished_migration_stops_the_start() {
        let (_d, mut c) = fresh();
        run(&mut c).unwrap();
        c.execute(
            "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 2",
            [],
        )
        .unwrap();
        assert!(run(&mut c).unwrap_err().to_string().contains("was changed"));
        c.execute(
            "UPDATE _sqlx_migrations SET checksum = ? WHERE version = 2",
            [checksum(MIGRATIONS[1].sql)],
        )
        .unwrap();
        c.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99, 'future', 1, x'00', 0)",
            [],
        )
        .unwrap();
        assert!(run(&mut c)
            .unwrap_err()
            .to_string()
            .contains("newer version"));
        c.execute("DELETE FROM _sqlx_migrations WHERE version = 99", [])
            .unwrap();
        c.execute(
            "UPDATE _sqlx_migrations SET success = 0 WHERE version = 1",
            [],
        )
        .unwrap();
        assert!(run(&mut c)
            .unwrap_err()
            .to_string()
            .contains("did not finish"));
    }

    #[test]
    fn a_failing_migration_leaves_no_trace() {
        let (_d, mut c) = fresh();
        // A table in the way makes migration 1 fail half-way.
        c.execute_batch("CREATE TABLE groups (x INTEGER);").unwrap();
        assert!(run(&mut c).is_err());
        let users: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'users'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(users, 0, "migration 1 was rolled back as a whole");
        let recorded: i64 = c
            .query_row("SELECT COUNT(*) FROM _sqlx_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(recorded, 0);
    }

    /// A database as the version before migration `last + 1` left it.
    fn at_version(last: i64) -> (tempfile::TempDir, Connection) {
        let (d, mut c) = fresh();
        run(&mut c).unwrap();
        c.execute_batch("DELETE FROM users; DELETE FROM groups;")
            .unwrap();
        // Only migration 9 (the one these tests are about) runs again: later ones are not
        // written to be run twice.
        c.execute(
            "DELETE FROM _sqlx_migrations WHERE version > ? AND version <= 9",
            [last],
        )
        .unwrap();
        (d, c)
    }

    fn add_user(c: &Connection, id: i64, name: &str, key: &str) {
        c.execute(
            "INSERT INTO users (id, tenant_id, username, username_key, display_name, created_at) \
             VALUES (?, 1, ?, ?, ?, 0)",
            params![id, name, key, name],
        )
        .unwrap();
    }

    fn add_group(c: &Connection, id: i64, name: &str, key: &str) {
        c.execute(
            "INSERT INTO groups (id, tenant_id, name, name_key, created_at) VALUES (?, 1, ?, ?, 0)",
            params![id, name, key],
        )
        .unwrap();
    }

    fn key_of(c: &Connection, table: &str, id: i64) -> String {
        let col = if table == "users" {
            "username_key"
        } else {
            "name_key"
        };
        c.query_row(
            &format!("SELECT {col} FROM {table} WHERE id = ?"),
            [id],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn stored_names_are_keyed_by_their_precis_form_and_ascii_keys_stay() {
        let (_d, mut c) = at_version(8);
        // Keys as every earlier version wrote them: trimmed and lower-cased.
        add_user(&c, 1, "Alice", "alice");
        add_user(&c, 2, "ＢＯＢ", "ｂｏｂ");
        add_user(&c, 3, "john smith", "john smith");
        add_group(&c, 1, "Ｐｉｌｏｔ", "ｐｉｌｏｔ");
        add_group(&c, 2, "Pilot users", "pilot users");
        run(&mut c).unwrap();
        assert_eq!(key_of(&c, "users", 1), "alice");
        assert_eq!(key_of(&c, "users", 2), "bob");
        assert_eq!(key_of(&c, "users", 3), "john smith");
        assert_eq!(key_of(&c, "groups", 1), "pilot");
        assert_eq!(key_of(&c, "groups", 2), "pilot users");
    }

    #[test]
    fn usernames_that_became_one_refuse_the_migration_naming_both() {
        let (_d, mut c) = at_version(8);
        add_user(&c, 1, "alice", "alice");
        add_user(&c, 7, "ａｌｉｃｅ", "ａｌｉｃｅ");
        let e = run(&mut c).unwrap_err().to_string();
        assert!(
            e.contains("\"alice\" (id 1)") && e.contains("\"ａｌｉｃｅ\" (id 7)"),
            "{e}"
        );
        assert!(e.contains("sesame user remove"), "{e}");
        // Nothing changed, and removing one lets it through.
        assert_eq!(key_of(&c, "users", 7), "ａｌｉｃｅ");
        c.execute("DELETE FROM users WHERE id = 7", []).unwrap();
        run(&mut c).unwrap();
    }

    #[test]
    fn group_names_that_became_one_keep_the_name_found_today() {
        let (_d, mut c) = at_version(8);
        add_group(&c, 1, "ＰＩＬＯＴ", "ｐｉｌｏｔ");
        add_group(&c, 2, "pilot", "pilot");
        run(&mut c).unwrap();
        assert_eq!(key_of(&c, "groups", 2), "pilot");
        assert_eq!(key_of(&c, "groups", 1), "ｐｉｌｏｔ");
    }
}
