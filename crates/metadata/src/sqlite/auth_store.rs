//! `AuthStore` for SQLite. Reads go to the reader pool; writes join the group commit and bump
//! the revision counter in the same transaction, so a server that sees the new revision also
//! sees the change. Lists of grants are stored one per line (grant strings never contain a
//! newline: the auth crate's grammar refuses it).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use crate::Result;
use crate::auth::{AuthStore, RefreshRecord, SigningKeyRecord, TokenRecord, UserRecord};

fn bump(c: &Connection) -> rusqlite::Result<()> {
    c.prepare_cached("UPDATE auth_revision SET value = value + 1 WHERE id = 1")?
        .execute([])?;
    Ok(())
}

fn join(v: &[String]) -> String {
    v.join("\n")
}

fn split(s: String) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn user_row(r: &Row) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: r.get(0)?,
        password_hash: r.get(1)?,
        admin: r.get::<_, i64>(2)? != 0,
        grants: split(r.get(3)?),
        generation: r.get(4)?,
        created: r.get(5)?,
    })
}

fn token_row(r: &Row) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        user: r.get(1)?,
        name: r.get(2)?,
        hash: r.get(3)?,
        scopes: split(r.get(4)?),
        created: r.get(5)?,
        expires: r.get(6)?,
        last_used: r.get(7)?,
    })
}

const TOKEN_COLUMNS: &str = "id, user, name, hash, scopes, created, expires, last_used";

#[async_trait]
impl AuthStore for SqliteStore {
    async fn auth_revision(&self) -> Result<i64> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM auth_revision WHERE id = 1")?
                .query_row([], |r| r.get(0))
        })
        .await
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT name, password_hash, admin, grants, generation, created FROM users ORDER BY name",
            )?;
            let rows = stmt.query_map([], user_row)?;
            rows.collect()
        })
        .await
    }

    async fn create_user(&self, user: &UserRecord) -> Result<bool> {
        let u = user.clone();
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO users (name, password_hash, admin, grants, generation, created)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![u.name, u.password_hash, u.admin as i64, join(&u.grants), u.generation, u.created])?;
            if n > 0 {
                bump(c)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn update_user(&self, user: &UserRecord, expected: &UserRecord) -> Result<bool> {
        let (u, e) = (user.clone(), expected.clone());
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE users SET password_hash = ?2, admin = ?3, grants = ?4, generation = ?5
                     WHERE name = ?1 AND password_hash = ?6 AND admin = ?7 AND grants = ?8 AND generation = ?9",
                )?
                .execute(params![
                    u.name,
                    u.password_hash,
                    u.admin as i64,
                    join(&u.grants),
                    u.generation,
                    e.password_hash,
                    e.admin as i64,
                    join(&e.grants),
                    e.generation
                ])?;
            if n > 0 {
                bump(c)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn remove_user(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.write(move |c| {
            // Foreign keys cascade to tokens and refresh tokens.
            let n = c
                .prepare_cached("DELETE FROM users WHERE name = ?1")?
                .execute([&name])?;
            if n > 0 {
                bump(c)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>> {
        let user = user.map(str::to_string);
        self.read(move |c| match user {
            Some(u) => {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user = ?1 ORDER BY id"
                ))?;
                let rows = stmt.query_map([u], token_row)?;
                rows.collect()
            }
            None => {
                let mut stmt =
                    c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id"))?;
                let rows = stmt.query_map([], token_row)?;
                rows.collect()
            }
        })
        .await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<bool> {
        let t = token.clone();
        self.write(move |c| {
            let exists = c
                .prepare_cached("SELECT 1 FROM users WHERE name = ?1")?
                .query_row([&t.user], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(false);
            }
            c.prepare_cached(&format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                t.id,
                t.user,
                t.name,
                t.hash,
                join(&t.scopes),
                t.created,
                t.expires,
                t.last_used
            ])?;
            bump(c)?;
            Ok(true)
        })
        .await
    }

    async fn revoke_token(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write(move |c| {
            let n = c
                .prepare_cached("DELETE FROM tokens WHERE id = ?1")?
                .execute([&id])?;
            c.prepare_cached("DELETE FROM refresh_tokens WHERE cred = ?1")?
                .execute([format!("tok:{id}")])?;
            if n > 0 {
                bump(c)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn touch_tokens(&self, used: &[(String, i64)]) -> Result<()> {
        let used = used.to_vec();
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "UPDATE tokens SET last_used = ?2 WHERE id = ?1 AND (last_used IS NULL OR last_used < ?2)",
            )?;
            for (id, t) in used {
                stmt.execute(params![id, t])?;
            }
            Ok(())
        })
        .await
    }

    async fn create_refresh(&self, hash: &[u8], record: &RefreshRecord) -> Result<()> {
        let (hash, r) = (hash.to_vec(), record.clone());
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO refresh_tokens (hash, user, service, cred, created, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![hash, r.user, r.service, r.cred, r.created, r.expires])?;
            Ok(())
        })
        .await
    }

    async fn refresh(&self, hash: &[u8]) -> Result<Option<RefreshRecord>> {
        let hash = hash.to_vec();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT user, service, cred, created, expires FROM refresh_tokens WHERE hash = ?1",
            )?
            .query_row([hash], |r| {
                Ok(RefreshRecord {
                    user: r.get(0)?,
                    service: r.get(1)?,
                    cred: r.get(2)?,
                    created: r.get(3)?,
                    expires: r.get(4)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn purge_auth(&self, now: i64) -> Result<usize> {
        self.write(move |c| {
            let a = c
                .prepare_cached("DELETE FROM refresh_tokens WHERE expires <= ?1")?
                .execute([now])?;
            let b = c
                .prepare_cached("DELETE FROM signing_keys WHERE verify_until <= ?1")?
                .execute([now])?;
            if b > 0 {
                bump(c)?;
            }
            Ok(a + b)
        })
        .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT kid, pkcs8, created, sign_until, verify_until FROM signing_keys ORDER BY created DESC, kid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(SigningKeyRecord {
                    kid: r.get(0)?,
                    pkcs8: r.get(1)?,
                    created: r.get(2)?,
                    sign_until: r.get(3)?,
                    verify_until: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn add_signing_key(&self, key: &SigningKeyRecord) -> Result<()> {
        let k = key.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT OR IGNORE INTO signing_keys (kid, pkcs8, created, sign_until, verify_until) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![k.kid, k.pkcs8, k.created, k.sign_until, k.verify_until])?;
            bump(c)?;
            Ok(())
        })
        .await
    }
}
