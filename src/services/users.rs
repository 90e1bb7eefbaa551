//! Users: creation, password login, activation, deletion, and the first admin.

use std::time::Duration;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait,
    DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Invalid, Policy,
    audit::{self, Action, Actor, Event, Target},
    is_unique_violation,
    names::has_control_characters,
    now,
    throttle::{LoginThrottle, ThrottleError},
    tokens,
};
use crate::{
    auth::{
        password::{self, PasswordError},
        random::random_alphanumeric,
    },
    db,
    entities::{tokens as token_rows, users},
    verify::{Revocation, Revocations},
};

pub use super::names::{USERNAME_MAX_CHARS, Username};

pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// The user created on the first start against an empty database.
pub const BOOTSTRAP_ADMIN: &str = "admin";
/// The device token every new user gets when `MULTITOKEN_TOKEN_ON_SIGNUP` is on.
pub const SIGNUP_TOKEN_NAME: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Unknown user, wrong password and inactive user alike: nothing tells which.
    #[error("Unable to log in with provided credentials.")]
    BadCredentials,
    #[error("user not found")]
    NotFound,
    #[error("a user with this username already exists")]
    UsernameTaken,
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("you cannot deactivate or delete your own account")]
    OwnAccount,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    /// Too many failed logins for this username or from this address.
    #[error("too many failed login attempts; try again in {} seconds", .retry_after.as_secs())]
    TooManyAttempts { retry_after: Duration },
    #[error("the login throttle's store is unavailable")]
    ThrottleUnavailable(#[source] redis::RedisError),
    #[error(transparent)]
    Token(#[from] tokens::TokenError),
    #[error("password hashing failed")]
    Password(#[from] PasswordError),
    #[error("database error")]
    Db(#[from] DbErr),
}

impl From<ThrottleError> for UserError {
    fn from(error: ThrottleError) -> UserError {
        match error {
            ThrottleError::Throttled { retry_after } => UserError::TooManyAttempts { retry_after },
            ThrottleError::Db(e) => UserError::Db(e),
            ThrottleError::Redis(e) => UserError::ThrottleUnavailable(e),
        }
    }
}

/// A new password: 8 characters at least; 1 KiB at most, so hashing time stays bounded.
pub fn validate_password(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < PASSWORD_MIN_CHARS {
        return Err(Invalid::new(
            "password",
            format!("must be at least {PASSWORD_MIN_CHARS} characters"),
        ));
    }
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(Invalid::new(
            "password",
            format!("must be at most {PASSWORD_MAX_BYTES} bytes"),
        ));
    }
    if has_control_characters(password) {
        return Err(Invalid::new(
            "password",
            "must not contain control characters",
        ));
    }
    Ok(())
}

pub struct NewUser {
    pub username: Username,
    pub password: String,
    pub is_admin: bool,
}

pub struct CreatedUser {
    pub user: users::Model,
    /// The `default` device token when `Policy::token_on_signup` is on; its key is shown once.
    pub signup_token: Option<tokens::IssuedToken>,
}

/// Creates a user (and, by policy, its `default` token) in one transaction.
pub async fn create(
    db: &DatabaseConnection,
    revocations: &Revocations,
    policy: &Policy,
    actor: &Actor,
    new: NewUser,
) -> Result<CreatedUser, UserError> {
    validate_password(&new.password)?;
    let password_hash = password::hash_password(new.password).await?;
    let txn = revocations.begin(db).await?;
    let user = users::ActiveModel {
        id: Set(Uuid::now_v7()),
        username: Set(new.username.as_str().to_owned()),
        username_key: Set(new.username.key()),
        username_skeleton: Set(Some(new.username.skeleton())),
        password_hash: Set(password_hash),
        is_admin: Set(new.is_admin),
        is_active: Set(true),
        created_at: Set(now()),
    }
    .insert(&txn)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            UserError::UsernameTaken
        } else {
            UserError::Db(e)
        }
    })?;
    let role = if user.is_admin { "admin" } else { "user" };
    audit::record(
        &txn,
        actor,
        Event::new(Action::UserCreated, Target::user(&user)).with_detail(role),
    )
    .await?;
    let signup_token = if policy.token_on_signup {
        let request = tokens::NewToken::device(
            tokens::TokenName::parse(SIGNUP_TOKEN_NAME)?,
            tokens::Lifetime::Forever,
        );
        Some(tokens::issue_in(&txn, policy, actor, &user, request).await?)
    } else {
        None
    };
    txn.commit().await?;
    log::info!("user created: {} (admin: {})", user.username, user.is_admin);
    Ok(CreatedUser { user, signup_token })
}

/// Finds a user by name, in any case. A name no user could have is simply not found (and never
/// reaches the database: PostgreSQL would refuse a NUL byte with an error).
pub async fn find_by_username(
    db: &impl ConnectionTrait,
    username: &str,
) -> Result<users::Model, UserError> {
    let Ok(username) = Username::parse(username) else {
        return Err(UserError::NotFound);
    };
    find_by_key(db, &username).await?.ok_or(UserError::NotFound)
}

pub async fn find_by_id(db: &impl ConnectionTrait, id: Uuid) -> Result<users::Model, UserError> {
    users::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(UserError::NotFound)
}

async fn find_by_key(
    db: &impl ConnectionTrait,
    username: &Username,
) -> Result<Option<users::Model>, DbErr> {
    users::Entity::find()
        .filter(users::Column::UsernameKey.eq(username.key()))
        .one(db)
        .await
}

/// Every user, oldest first.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<users::Model>, UserError> {
    Ok(users::Entity::find()
        .order_by_asc(users::Column::CreatedAt)
        .all(db)
        .await?)
}

/// Username + password login. Every failure, whatever its cause, takes one argon2 verification
/// and answers `BadCredentials`, so neither the answer nor its timing tells whether a user exists.
/// Failures are written to the audit log (with their real reason, which only admins see).
///
/// Throttled per username and per the caller's address: over the limit the password is not
/// even checked, for a known and an unknown username alike.
pub async fn authenticate(
    db: &DatabaseConnection,
    throttle: &LoginThrottle,
    caller: &Actor,
    username: &str,
    password: String,
) -> Result<users::Model, UserError> {
    let attempt = throttle.begin(username, caller.address.as_deref()).await?;
    let user = match Username::parse(username) {
        Ok(name) => find_by_key(db, &name).await?,
        Err(_) => None,
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let password_ok = password::verify_password(password, stored).await?;
    if let Some(user) = user.as_ref().filter(|u| password_ok && u.is_active) {
        throttle.succeeded(attempt).await?;
        return Ok(user.clone());
    }
    throttle.failed(attempt).await?;
    let refusal = match &user {
        Some(user) if password_ok => "inactive user",
        Some(_) => "wrong password",
        None => "unknown user",
    };
    log::debug!("login refused: {refusal}");
    // A known user is named as stored; an unknown name is kept as typed (cut to fit).
    let target = match &user {
        Some(user) => Target::user(user),
        None => Target::attempted_username(username.trim(), None),
    };
    audit::record_failed_login(
        db,
        caller,
        Event::new(Action::LoginFailed, target).with_detail(refusal),
    )
    .await?;
    Err(UserError::BadCredentials)
}

/// A password change as its owner asks for it.
pub struct PasswordChange {
    pub current: String,
    pub new: String,
    /// Sign out every other session, keeping this one; `None` keeps them all.
    pub sign_out_others: Option<Uuid>,
}

/// Changes the caller's own password after checking the current one. Other sessions stay signed
/// in unless `sign_out_others` names the session to keep; device tokens always stay.
///
/// The current-password check is a login as far as the throttle goes: the same per-username and
/// per-address counters, so a held session is no way around the limit, and over it no password
/// is checked.
pub async fn change_password(
    db: &DatabaseConnection,
    revocations: &Revocations,
    throttle: &LoginThrottle,
    actor: &Actor,
    user: &users::Model,
    change: PasswordChange,
) -> Result<u64, UserError> {
    let PasswordChange {
        current,
        new,
        sign_out_others,
    } = change;
    validate_password(&new)?;
    let attempt = throttle
        .begin(&user.username, actor.address.as_deref())
        .await?;
    // The stored hash, read now: the caller's copy of the user may be older (or carry no hash).
    let stored = find_by_id(db, user.id).await?.password_hash;
    if password::verify_password(current, Some(stored)).await? {
        throttle.succeeded(attempt).await?;
    } else {
        throttle.failed(attempt).await?;
        // Someone holding the session but not the password may be guessing it: leave a trace.
        let event = Event::new(Action::LoginFailed, Target::user(user))
            .with_detail("wrong current password (password change)");
        audit::record(db, actor, event).await?;
        return Err(UserError::WrongCurrentPassword);
    }
    let password_hash = password::hash_password(new).await?;
    let txn = revocations.begin(db).await?;
    let done = users::Entity::update_many()
        .col_expr(users::Column::PasswordHash, Expr::value(password_hash))
        .filter(users::Column::Id.eq(user.id))
        .exec(&txn)
        .await?;
    if done.rows_affected == 0 {
        return Err(UserError::NotFound);
    }
    let detail = if sign_out_others.is_some() {
        "other sessions signed out"
    } else {
        "other sessions kept"
    };
    audit::record(
        &txn,
        actor,
        Event::new(Action::PasswordChanged, Target::user(user)).with_detail(detail),
    )
    .await?;
    let signed_out = match sign_out_others {
        Some(kept) => {
            let scope = tokens::Everywhere::SessionsExcept(kept);
            tokens::delete_all_own_in(&txn, actor, user, scope).await?
        }
        None => 0,
    };
    txn.commit().await?;
    log::info!("password changed for user {}", user.id);
    Ok(signed_out)
}

/// Deactivating locks a user out at once: their tokens answer "Invalid user" until reactivated.
/// Setting the state a user already has changes and records nothing.
pub async fn set_active(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    user: users::Model,
    active: bool,
) -> Result<users::Model, UserError> {
    if actor.is(&user) && !active {
        return Err(UserError::OwnAccount);
    }
    let txn = revocations.begin(db).await?;
    // The write comes first (on SQLite a read before it could not upgrade to a write lock), and
    // only a real change counts, so two admins deactivating at once record it once.
    let changed = users::Entity::update_many()
        .col_expr(users::Column::IsActive, Expr::value(active))
        .filter(users::Column::Id.eq(user.id))
        .filter(users::Column::IsActive.ne(active))
        .exec(&txn)
        .await?
        .rows_affected
        > 0;
    let current = users::Entity::find_by_id(user.id)
        .one(&txn)
        .await?
        .ok_or(UserError::NotFound)?;
    if changed {
        let action = if active {
            Action::UserActivated
        } else {
            Action::UserDeactivated
        };
        audit::record(&txn, actor, Event::new(action, Target::user(&current))).await?;
        log::info!("user {} {}", current.username, action.code());
        txn.revoke(Revocation::User(user.id));
    }
    txn.commit().await?;
    Ok(current)
}

/// Deletes a user and all of its tokens (each recorded as revoked).
pub async fn delete(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    user: users::Model,
) -> Result<(), UserError> {
    if actor.is(&user) {
        return Err(UserError::OwnAccount);
    }
    let txn = revocations.begin(db).await?;
    // Tokens first, so each gets its record (the foreign key would cascade silently).
    let removed = db::delete_tokens(
        &txn,
        Condition::all().add(token_rows::Column::UserId.eq(user.id)),
    )
    .await?;
    let done = users::Entity::delete_by_id(user.id).exec(&txn).await?;
    if done.rows_affected == 0 {
        return Err(UserError::NotFound);
    }
    let mut events: Vec<Event> = removed
        .iter()
        .map(|token| {
            Event::new(Action::TokenRevoked, Target::token(token, &user.username))
                .with_detail("user deleted")
        })
        .collect();
    events.push(Event::new(Action::UserDeleted, Target::user(&user)));
    audit::record_all(&txn, actor, events).await?;
    txn.revoke(Revocation::User(user.id));
    txn.commit().await?;
    log::info!("user deleted: {}", user.username);
    Ok(())
}

pub enum Bootstrap {
    /// Users exist already; nothing was done.
    NotNeeded,
    /// `admin` was created with the configured password.
    CreatedWithConfiguredPassword,
    /// `admin` was created with this random password, to be shown once.
    CreatedWithRandomPassword(String),
}

/// On an empty database, creates the `admin` user so a fresh install can be used at once.
pub async fn ensure_bootstrap_admin(
    db: &DatabaseConnection,
    revocations: &Revocations,
    policy: &Policy,
    configured_password: Option<String>,
) -> Result<Bootstrap, UserError> {
    if users::Entity::find().count(db).await? > 0 {
        return Ok(Bootstrap::NotNeeded);
    }
    let (password, generated) = match configured_password {
        Some(password) => (password, false),
        None => (random_alphanumeric(20), true),
    };
    let new = NewUser {
        username: Username::parse(BOOTSTRAP_ADMIN)?,
        password: password.clone(),
        is_admin: true,
    };
    // The bootstrap admin gets no signup token: its key would have nowhere safe to go.
    let policy = Policy {
        token_on_signup: false,
        device_idle_expiry_days: None,
        ..policy.clone()
    };
    match create(db, revocations, &policy, &Actor::system(), new).await {
        Ok(_) if generated => Ok(Bootstrap::CreatedWithRandomPassword(password)),
        Ok(_) => Ok(Bootstrap::CreatedWithConfiguredPassword),
        // Another instance sharing the database won the race: it created the admin.
        Err(UserError::UsernameTaken) => Ok(Bootstrap::NotNeeded),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_need_eight_characters_and_fit_in_a_kilobyte() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
        assert!(validate_password(&"x".repeat(1025)).is_err());
    }
}
