//! Logging in with a username and password, the one sequence every sign-in path takes: the
//! throttle, the password check (with its audit trail), then the new token.

use sea_orm::DatabaseConnection;

use super::{
    Policy,
    audit::Actor,
    throttle::LoginThrottle,
    tokens::{self, IssuedToken, NewToken},
    users::{self, UserError},
};
use crate::{entities::users as user_rows, verify::Revocations};

/// What a client presents to log in, and the address it calls from.
pub struct Credentials<'a> {
    pub username: &'a str,
    pub password: String,
    pub address: Option<String>,
}

pub struct LoggedIn {
    pub user: user_rows::Model,
    /// The new token; its key is shown once.
    pub issued: IssuedToken,
}

/// Checks the credentials (throttled per username and per address; failures audited) and
/// issues `new` for the user. The token is issued by the user, from the client's address.
pub async fn log_in(
    db: &DatabaseConnection,
    revocations: &Revocations,
    policy: &Policy,
    throttle: &LoginThrottle,
    credentials: Credentials<'_>,
    new: NewToken,
) -> Result<LoggedIn, UserError> {
    let Credentials {
        username,
        password,
        address,
    } = credentials;
    let caller = Actor::anonymous(address.clone());
    let user = users::authenticate(db, throttle, &caller, username, password).await?;
    let actor = Actor::user(&user, address);
    let issued = tokens::issue(db, revocations, policy, &actor, &user, new).await?;
    Ok(LoggedIn { user, issued })
}
