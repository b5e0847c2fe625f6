//! The SQLite schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! Text columns use SQLite's default BINARY collation, so `ORDER BY name` is byte order, the
//! order the PostgreSQL backend reproduces with `COLLATE "C"`.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE repos (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE repo_blobs (
    repo_id INTEGER NOT NULL REFERENCES repos(id),
    digest TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
) WITHOUT ROWID;
CREATE INDEX repo_blobs_by_digest ON repo_blobs(digest, repo_id);
CREATE TABLE manifests (
    repo_id INTEGER NOT NULL REFERENCES repos(id),
    digest TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    annotations TEXT,
    created INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX manifests_by_sha256 ON manifests(repo_id, sha256);
CREATE INDEX manifests_by_subject ON manifests(repo_id, subject) WHERE subject IS NOT NULL;
CREATE TABLE manifest_refs (
    repo_id INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (repo_id, manifest, target)
) WITHOUT ROWID;
CREATE TABLE tags (
    repo_id INTEGER NOT NULL REFERENCES repos(id),
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name)
) WITHOUT ROWID;
CREATE INDEX tags_by_digest ON tags(repo_id, digest);
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX uploads_by_updated ON uploads(updated);
"#,
    r#"
ALTER TABLE uploads ADD COLUMN hash_state BLOB;
ALTER TABLE uploads ADD COLUMN ended INTEGER NOT NULL DEFAULT 0;
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
"#,
    r#"
CREATE TABLE auth_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO auth_revision (id, value) VALUES (1, 0);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL,
    grants TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hash BLOB NOT NULL,
    scopes TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER,
    last_used INTEGER
) WITHOUT ROWID;
CREATE INDEX tokens_by_user ON tokens(user);
CREATE TABLE refresh_tokens (
    hash BLOB PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    service TEXT NOT NULL,
    cred TEXT NOT NULL,
    created INTEGER NOT NULL,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX refresh_by_cred ON refresh_tokens(cred);
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    pkcs8 BLOB NOT NULL,
    created INTEGER NOT NULL,
    sign_until INTEGER NOT NULL,
    verify_until INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    // Who opened each session (the authenticated subject, empty without authentication), so
    // the live sessions of one owner can be counted (`limits.max_uploads_per_principal`).
    r#"
ALTER TABLE uploads ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX uploads_by_owner ON uploads(owner, updated) WHERE ended = 0 AND owner <> '';
"#,
];

/// Connection settings shared by the writer and the readers.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // WAL lets readers run beside the single writer; FULL makes every commit durable (fsync of
    // the WAL), which group commit amortises over concurrent requests.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(())
}

/// Bring the schema up to date.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(m)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
