//! Removal: an owner deleting or logging out, "sign out everywhere", an admin's revocation.
//! Each is finished through `Revocations`, so caches forget the token once it is gone.

use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait};
use uuid::Uuid;

use super::{Everywhere, Removal, TokenError, record_removed};
use crate::{
    db,
    entities::{
        tokens::{self, TokenKind},
        users,
    },
    services::audit::{Action, Actor},
    verify::{Revocation, Revocations, RevokingTransaction},
};

/// Deletes one of the owner's tokens; someone else's token is `NotFound`, never "forbidden".
pub async fn delete_own(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    owner: &users::Model,
    id: Uuid,
    why: Removal,
) -> Result<tokens::Model, TokenError> {
    let txn = revocations.begin(db).await?;
    let removed = db::delete_tokens(
        &txn,
        Condition::all()
            .add(tokens::Column::Id.eq(id))
            .add(tokens::Column::UserId.eq(owner.id)),
    )
    .await?;
    let Some(deleted) = removed.first().cloned() else {
        return Err(TokenError::NotFound);
    };
    let detail = match why {
        Removal::Deleted => Some("deleted by owner"),
        Removal::LoggedOut => Some("logged out"),
        Removal::IdleTimeout => Some("signed out: idle"),
    };
    record_removed(&txn, actor, Action::TokenRevoked, removed, owner, detail).await?;
    txn.revoke(Revocation::Token(id));
    txn.commit().await?;
    log::info!("token deleted by owner: {id}");
    Ok(deleted)
}

/// Ends a session (logout, idle time-out, a sign-in replaced): `delete_own`, except that a token
/// already gone, revoked meanwhile by someone else, counts as ended.
pub async fn end_session(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    owner: &users::Model,
    id: Uuid,
    why: Removal,
) -> Result<(), TokenError> {
    match delete_own(db, revocations, actor, owner, id, why).await {
        Ok(_) | Err(TokenError::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Logs out everywhere: deletes the owner's session tokens, and device tokens too when asked.
pub async fn delete_all_own(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    owner: &users::Model,
    scope: Everywhere,
) -> Result<u64, TokenError> {
    let txn = revocations.begin(db).await?;
    let count = delete_all_own_in(&txn, actor, owner, scope).await?;
    txn.commit().await?;
    Ok(count)
}

/// `delete_all_own` inside a caller's transaction (a password change), revoked when it commits.
pub async fn delete_all_own_in(
    txn: &RevokingTransaction,
    actor: &Actor,
    owner: &users::Model,
    scope: Everywhere,
) -> Result<u64, TokenError> {
    let mut condition = Condition::all().add(tokens::Column::UserId.eq(owner.id));
    match scope {
        Everywhere::Sessions => {
            condition = condition.add(tokens::Column::Kind.eq(TokenKind::Session))
        }
        Everywhere::SessionsExcept(kept) => {
            condition = condition
                .add(tokens::Column::Kind.eq(TokenKind::Session))
                .add(tokens::Column::Id.ne(kept))
        }
        Everywhere::AllTokens => {}
    }
    let removed = db::delete_tokens(txn, condition).await?;
    let count = removed.len() as u64;
    if count > 0 {
        txn.revoke(Revocation::User(owner.id));
    }
    let detail = match scope {
        Everywhere::AllTokens => "all tokens revoked",
        _ => "signed out everywhere",
    };
    record_removed(
        txn,
        actor,
        Action::TokenRevoked,
        removed,
        owner,
        Some(detail),
    )
    .await?;
    log::info!(
        "user {} logged out everywhere: {count} tokens deleted",
        owner.id
    );
    Ok(count)
}

/// Admin: deletes any token.
pub async fn revoke(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    id: Uuid,
) -> Result<(), TokenError> {
    let txn = revocations.begin(db).await?;
    // The write comes first: on SQLite a read before it could not upgrade to a write lock.
    let removed = db::delete_tokens(&txn, Condition::all().add(tokens::Column::Id.eq(id))).await?;
    let Some(token) = removed.first() else {
        return Err(TokenError::NotFound);
    };
    let owner = users::Entity::find_by_id(token.user_id)
        .one(&txn)
        .await?
        .ok_or(TokenError::NotFound)?;
    let detail = Some("revoked by admin");
    record_removed(&txn, actor, Action::TokenRevoked, removed, &owner, detail).await?;
    txn.revoke(Revocation::Token(id));
    txn.commit().await?;
    log::info!("token revoked by admin: {id}");
    Ok(())
}

/// Admin: deletes every token of a user, sessions and devices alike.
pub async fn revoke_all_for(
    db: &DatabaseConnection,
    revocations: &Revocations,
    actor: &Actor,
    owner: &users::Model,
) -> Result<u64, TokenError> {
    delete_all_own(db, revocations, actor, owner, Everywhere::AllTokens).await
}
