//! Schema migrations for PostgreSQL.
//!
//! Each file in `migrations/postgres` runs once, in order, in its own transaction (PostgreSQL
//! changes its schema transactionally: a migration applies whole or not at all), and is
//! recorded in `sesame_migrations` with the SHA-384 of its text. A landed migration is never
//! edited: a changed checksum stops the start with an explanation, as does a migration this
//! version does not know (a newer version wrote it).
//!
//! Nodes starting together must not race: the whole run holds a session advisory lock, so the
//! second node waits, then finds nothing left to do. The lock goes with the connection, so a
//! node killed while migrating cannot leave it held.

use crate::{Result, StoreError};
use sha2::{Digest, Sha384};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, Config, NoTls};

struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// In order; the description is the file name after the number, with spaces for underscores.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "schema",
        sql: include_str!("../../migrations/postgres/0001_schema.sql"),
    },
    Migration {
        version: 2,
        description: "one current signing key",
        sql: include_str!("../../migrations/postgres/0002_one_current_signing_key.sql"),
    },
    Migration {
        version: 3,
        description: "methods by device",
        sql: include_str!("../../migrations/postgres/0003_methods_by_device.sql"),
    },
    Migration {
        version: 4,
        description: "phone messages in order",
        sql: include_str!("../../migrations/postgres/0004_phone_messages_in_order.sql"),
    },
    Migration {
        version: 5,
        description: "default method exists",
        sql: include_str!("../../migrations/postgres/0005_default_method_exists.sql"),
    },
];

/// The advisory lock that serialises migrations: any number, the same on every node
/// ("sesame" in ASCII).
const LOCK: i64 = 0x7365_7361_6d65;

/// How long a node waits for another node's migration before giving up with a message.
const LOCK_WAIT: Duration = Duration::from_secs(300);

fn checksum(sql: &str) -> Vec<u8> {
    Sha384::digest(sql.as_bytes()).to_vec()
}

fn fail(m: impl Into<String>) -> StoreError {
    StoreError::Migration(m.into())
}

/// Connects on a connection of its own and brings the database up to the newest schema;
/// returns the versions applied now (empty: it was up to date).
pub(super) async fn run(config: &Config) -> Result<Vec<i64>> {
    let (client, conn) = config.connect(NoTls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "migration connection ended");
        }
    });
    let out = run_on(&client).await;
    drop(client);
    let _ = task.await;
    out
}

/// `sesame migrate`: migrates the database a URL names, and says what it did.
pub async fn migrate(url: &str) -> Result<Vec<i64>> {
    let mut config = super::parse_url(url)?;
    config.connect_timeout(super::CONNECT_TIMEOUT);
    config.application_name("sesame migrate");
    run(&config).await
}

async fn run_on(c: &Client) -> Result<Vec<i64>> {
    // Waiting for the lock is bounded: a node stuck behind a migration that never ends says so.
    c.batch_execute(&format!("SET lock_timeout = '{}s'", LOCK_WAIT.as_secs()))
        .await?;
    c.execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .map_err(|e| {
            if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                fail(format!(
                    "another node held the migration lock for more than {}s; is a migration stuck?",
                    LOCK_WAIT.as_secs()
                ))
            } else {
                e.into()
            }
        })?;
    let out = apply(c).await;
    // Released here, or with the connection if this fails.
    let _ = c.execute("SELECT pg_advisory_unlock($1)", &[&LOCK]).await;
    out
}

async fn apply(c: &Client) -> Result<Vec<i64>> {
    c.batch_execute(
        "CREATE TABLE IF NOT EXISTS sesame_migrations (
            version      BIGINT PRIMARY KEY,
            description  TEXT NOT NULL,
            checksum     BYTEA NOT NULL,
            applied_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
            took_ms      BIGINT NOT NULL
        )",
    )
    .await?;
    let applied: Vec<(i64, Vec<u8>)> = c
        .query(
            "SELECT version, checksum FROM sesame_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?;
    for (version, sum) in &applied {
        let Some(m) = MIGRATIONS.iter().find(|m| m.version == *version) else {
            return Err(fail(format!(
                "the database has migration {version}, which this version of Sesame does not know: \
                 it was written by a newer version; run that version, or restore a backup"
            )));
        };
        if *sum != checksum(m.sql) {
            return Err(fail(format!(
                "migration {version} ({}) was changed after it was applied to this database",
                m.description
            )));
        }
    }
    let mut done = Vec::new();
    for m in MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
    {
        let started = Instant::now();
        let run = async {
            c.batch_execute("BEGIN").await?;
            c.batch_execute(m.sql).await?;
            let took = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            c.execute(
                "INSERT INTO sesame_migrations (version, description, checksum, took_ms) VALUES ($1, $2, $3, $4)",
                &[&m.version, &m.description, &checksum(m.sql), &took],
            )
            .await?;
            c.batch_execute("COMMIT").await?;
            Ok::<(), StoreError>(())
        }
        .await;
        if let Err(e) = run {
            let _ = c.batch_execute("ROLLBACK").await;
            return Err(fail(format!(
                "migration {} ({}) failed and was rolled back: {e}",
                m.version, m.description
            )));
        }
        tracing::info!(
            version = m.version,
            description = m.description,
            took_ms = started.elapsed().as_millis() as u64,
            "database migrated"
        );
        done.push(m.version);
    }
    Ok(done)
}
