//! The admin API behind `stowage user`/`token --server URL`: its routes, request and answer
//! bodies (shared by the server and the command line), and who may do what:
//! - managing users (add, import, remove, rights, another's password) needs an administrator
//!   acting with its password (Basic, or a JWT from a password login);
//! - a user's own password needs that user's password (never an access token);
//! - tokens: administrators list, create and revoke anyone's, other users their own; a
//!   caller that comes from an access token creates only tokens within that token's scopes
//!   and lifetime, so a token can never be widened.
//!
//! Using the API at all needs `registry:admin:*` ([`Need::Admin`](crate::Need::Admin)). Checks
//! that do not depend on the body run first ([`Identity::admit`]), so a caller without standing
//! is refused before its body is read; the rest run with the operation
//! ([`Identity::administer`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stowage_auth::pattern::Grant;

pub use crate::accounts::{AccountError, NewToken, TokenInfo, UserInfo};
use crate::accounts::{Accounts, canonical_scopes};
use crate::decide::Principal;
use crate::snapshot::{Cred, Token, is_admin_scope};
use crate::{Identity, now};

/// Where the admin API lives.
pub const PREFIX: &str = "/admin/v1";

/// `POST /admin/v1/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub grants: Vec<String>,
}

/// `PATCH /admin/v1/users/NAME`: a new password, and rights to add or take away.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub grant: Vec<String>,
    pub revoke: Vec<String>,
    pub admin: Option<bool>,
}

/// `POST /admin/v1/users/import`: an htpasswd file's text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportUsers {
    pub htpasswd: String,
    #[serde(default)]
    pub grants: Vec<String>,
}

/// The answer to an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    pub imported: usize,
    /// Names that existed already (left alone).
    pub skipped: usize,
}

/// `POST /admin/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// The user it acts for (default: the caller).
    pub user: Option<String>,
    pub scopes: Vec<String>,
    /// Seconds from now (default: no expiry, or what is left of the caller's token).
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub name: String,
}

/// An admin API operation, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    /// `GET users`
    ListUsers,
    /// `POST users` with [`NewUser`]
    AddUser,
    /// `POST users/import` with [`ImportUsers`]
    ImportUsers,
    /// `PATCH users/NAME` with [`UserChange`]
    ChangeUser(String),
    /// `DELETE users/NAME`
    RemoveUser(String),
    /// `GET tokens[?user=NAME]`
    ListTokens(Option<String>),
    /// `POST tokens` with [`NewTokenRequest`]
    CreateToken,
    /// `DELETE tokens/ID`
    RevokeToken(String),
}

impl AdminRoute {
    /// The HTTP method.
    pub fn method(&self) -> &'static str {
        match self {
            AdminRoute::ListUsers | AdminRoute::ListTokens(_) => "GET",
            AdminRoute::AddUser | AdminRoute::ImportUsers | AdminRoute::CreateToken => "POST",
            AdminRoute::ChangeUser(_) => "PATCH",
            AdminRoute::RemoveUser(_) | AdminRoute::RevokeToken(_) => "DELETE",
        }
    }

    /// The path (and query), from the server's root.
    pub fn path(&self) -> String {
        match self {
            AdminRoute::ListUsers | AdminRoute::AddUser => format!("{PREFIX}/users"),
            AdminRoute::ImportUsers => format!("{PREFIX}/users/import"),
            AdminRoute::ChangeUser(n) | AdminRoute::RemoveUser(n) => {
                format!("{PREFIX}/users/{n}")
            }
            AdminRoute::ListTokens(None) | AdminRoute::CreateToken => format!("{PREFIX}/tokens"),
            AdminRoute::ListTokens(Some(u)) => format!("{PREFIX}/tokens?user={u}"),
            AdminRoute::RevokeToken(id) => format!("{PREFIX}/tokens/{id}"),
        }
    }

    /// Whether the operation changes accounts (the server's state is reloaded after it).
    pub fn changes(&self) -> bool {
        !matches!(self, AdminRoute::ListUsers | AdminRoute::ListTokens(_))
    }
}

/// An admin API operation with its body.
#[derive(Debug, Clone)]
pub enum AdminRequest {
    ListUsers,
    AddUser(NewUser),
    ImportUsers(ImportUsers),
    ChangeUser(String, UserChange),
    RemoveUser(String),
    ListTokens(Option<String>),
    CreateToken(NewTokenRequest),
    RevokeToken(String),
}

/// What an admin operation answers.
#[derive(Debug, Clone)]
pub enum AdminAnswer {
    Users(Vec<UserInfo>),
    /// A user was created.
    UserCreated(UserInfo),
    /// A user was changed.
    User(UserInfo),
    Imported(Imported),
    Tokens(Vec<TokenInfo>),
    /// A token was created (its secret is shown this once).
    TokenCreated(NewToken),
    /// Done; nothing to show.
    Done,
}

/// Why an admin operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The caller lacks the standing for it.
    #[error("{0}")]
    Denied(String),
    #[error(transparent)]
    Account(#[from] AccountError),
}

/// The standing of an admitted admin API caller.
struct Caller {
    cred: Cred,
    /// An administrator: its password, or an access token with `admin` of an administrator.
    admin: bool,
    /// Acting with the user's password (Basic, or a JWT minted from a password login): the
    /// standing needed to manage users and to change the user's own password.
    password: bool,
    /// For a credential that comes from an access token: that token (its scopes and expiry
    /// bound the tokens the caller may create).
    token: Option<Token>,
}

impl Caller {
    fn of(p: &Principal) -> Caller {
        let (admin, token) = match p.snapshot() {
            Some(snap) => (
                snap.admin(&p.cred),
                match &p.cred {
                    Cred::Token { id, .. } => snap.tokens.get(id).cloned(),
                    _ => None,
                },
            ),
            None => (false, None),
        };
        Caller {
            admin,
            password: matches!(p.cred, Cred::Password { .. }),
            token,
            cred: p.cred.clone(),
        }
    }

    /// The user the caller acts as.
    fn me(&self) -> &str {
        self.cred.subject()
    }

    /// Managing users: an administrator with its password.
    fn manage_users(&self) -> Result<(), AdminError> {
        if self.admin && !self.password {
            Err(needs_password("managing users"))
        } else if !self.admin {
            Err(denied())
        } else {
            Ok(())
        }
    }
}

/// The refusal of an operation that needs more standing.
pub fn denied() -> AdminError {
    AdminError::Denied("this needs an administrator (or the user itself, with its password)".into())
}

/// An operation that changes what an account may do, attempted with an access token.
fn needs_password(what: &str) -> AdminError {
    AdminError::Denied(format!(
        "{what} needs the password (Basic, or a login made with it), not an access token"
    ))
}

/// What a caller that comes from an access token may put in a new token: scopes its own
/// scopes cover, and no longer a life than its own. Returns the expiry (seconds from now) to
/// use: the request's, or, when it asked for none, what is left of the caller's token.
fn within_token(
    caller: &Caller,
    scopes: &[String],
    expires_in: Option<u64>,
) -> Result<Option<u64>, AdminError> {
    let Some(tok) = &caller.token else {
        return Ok(expires_in);
    };
    let canonical = canonical_scopes(scopes)?;
    for s in &canonical {
        let covered = if is_admin_scope(s) {
            tok.admin
        } else {
            Grant::parse(s).is_ok_and(|g| tok.rights.covers(&g))
        };
        if !covered {
            return Err(AdminError::Denied(format!(
                "an access token can only create tokens within its own scopes, and {s:?} is not within them"
            )));
        }
    }
    let Some(until) = tok.expires else {
        return Ok(expires_in);
    };
    let left = u64::try_from(until - now()).unwrap_or(0);
    match expires_in {
        None => Ok(Some(left)),
        Some(e) if e <= left => Ok(Some(e)),
        Some(_) => Err(AdminError::Denied(format!(
            "an access token cannot create a token that outlives it (at most {left} seconds)"
        ))),
    }
}

impl Identity {
    /// The checks of `route` that do not need its body, for a caller admitted with
    /// [`Need::Admin`](crate::Need::Admin).
    pub fn admit(&self, who: &Principal, route: &AdminRoute) -> Result<(), AdminError> {
        let c = Caller::of(who);
        match route {
            AdminRoute::ListUsers if !c.admin => Err(denied()),
            AdminRoute::AddUser | AdminRoute::ImportUsers | AdminRoute::RemoveUser(_) => {
                c.manage_users()
            }
            AdminRoute::ChangeUser(name) => {
                let own = *name == c.me();
                if own && c.password {
                    return Ok(());
                }
                c.manage_users().map_err(|e| {
                    if own && !c.password {
                        needs_password("changing your own account")
                    } else {
                        e
                    }
                })
            }
            _ => Ok(()),
        }
    }

    /// Run an admin operation for a caller admitted with [`Need::Admin`](crate::Need::Admin)
    /// and [`Identity::admit`]. A change is applied to this server's state at once.
    pub async fn administer(
        &self,
        who: &Principal,
        request: AdminRequest,
    ) -> Result<AdminAnswer, AdminError> {
        let changes = !matches!(
            request,
            AdminRequest::ListUsers | AdminRequest::ListTokens(_)
        );
        let result = self.operate(&Caller::of(who), request).await;
        if result.is_ok() && changes {
            // Apply the change here at once, not at the next poll.
            let _ = self.reload(false).await;
        }
        result
    }

    async fn operate(&self, c: &Caller, request: AdminRequest) -> Result<AdminAnswer, AdminError> {
        let admin = c.admin;
        let me = c.me().to_string();
        let accounts = Accounts::new(self.store().clone());
        match request {
            AdminRequest::ListUsers => Ok(AdminAnswer::Users(accounts.list_users().await?)),
            AdminRequest::AddUser(u) => Ok(AdminAnswer::UserCreated(
                accounts
                    .add_user(&u.name, &u.password, u.admin, &u.grants)
                    .await?,
            )),
            AdminRequest::ImportUsers(i) => {
                let (imported, skipped) = accounts.import_htpasswd(&i.htpasswd, &i.grants).await?;
                Ok(AdminAnswer::Imported(Imported { imported, skipped }))
            }
            AdminRequest::ChangeUser(name, change) => {
                let changes_rights =
                    !change.grant.is_empty() || !change.revoke.is_empty() || change.admin.is_some();
                if changes_rights {
                    c.manage_users()?;
                }
                if let Some(pw) = &change.password {
                    accounts.set_password(&name, pw).await?;
                }
                let info = accounts
                    .change_rights(&name, &change.grant, &change.revoke, change.admin)
                    .await?;
                Ok(AdminAnswer::User(info))
            }
            AdminRequest::RemoveUser(name) => {
                accounts.remove_user(&name).await?;
                Ok(AdminAnswer::Done)
            }
            AdminRequest::ListTokens(wanted) => {
                if !admin && wanted.as_ref().is_some_and(|w| *w != me) {
                    return Err(denied());
                }
                let user = if admin { wanted } else { Some(me) };
                Ok(AdminAnswer::Tokens(
                    accounts.list_tokens(user.as_deref()).await?,
                ))
            }
            AdminRequest::CreateToken(t) => {
                let user = t.user.unwrap_or_else(|| me.clone());
                if !admin && user != me {
                    return Err(denied());
                }
                let expires_in = within_token(c, &t.scopes, t.expires_in)?;
                let made = accounts
                    .create_token(
                        &user,
                        &t.scopes,
                        expires_in.map(Duration::from_secs),
                        &t.name,
                    )
                    .await?;
                Ok(AdminAnswer::TokenCreated(made))
            }
            AdminRequest::RevokeToken(id) => {
                if !admin && accounts.token_owner(&id).await?.as_deref() != Some(me.as_str()) {
                    return Err(AccountError::NotFound(format!("no token with id {id:?}")).into());
                }
                accounts.revoke_token(&id).await?;
                Ok(AdminAnswer::Done)
            }
        }
    }
}
