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
use crate::entities::users as user_rows;

pub struct LoggedIn {
    pub user: user_rows::Model,
    /// The new token; its key is shown once.
    pub issued: IssuedToken,
}

/// Checks `username` and `password` from the client at `address` (throttled per username and
/// per address; failures audited) and issues `new` for the user. The token is issued by the
/// user, from that address.
pub async fn log_in(
    db: &DatabaseConnection,
    policy: &Policy,
    throttle: &LoginThrottle,
    address: Option<String>,
    username: &str,
    password: String,
    new: NewToken,
) -> Result<LoggedIn, UserError> {
    let caller = Actor::anonymous(address.clone());
    let user = users::authenticate(db, throttle, &caller, username, password).await?;
    let actor = Actor::user(&user, address);
    let issued = tokens::issue(db, policy, &actor, &user, new).await?;
    Ok(LoggedIn { user, issued })
}
