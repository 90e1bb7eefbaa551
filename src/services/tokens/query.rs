//! Reading tokens: an owner's own (scoped by owner, so another user's token looks missing) and,
//! for admins, everyone's. Listings show uses this instance has noted but not yet written.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{TokenError, TokenFilter};
use crate::{
    entities::{tokens, users},
    verify::last_used::LastUsed,
};

/// The owner's tokens, newest first, with their latest use as this instance knows it. Not in a
/// transaction (`LastUsed::fresh`).
pub async fn list_for(
    db: &DatabaseConnection,
    last_used: &LastUsed,
    owner: Uuid,
) -> Result<Vec<tokens::Model>, TokenError> {
    let listed = last_used
        .fresh(|| {
            tokens::Entity::find()
                .filter(tokens::Column::UserId.eq(owner))
                .order_by_desc(tokens::Column::CreatedAt)
                .order_by_desc(tokens::Column::Id)
                .all(db)
        })
        .await?;
    Ok(listed)
}

/// One of the owner's tokens; someone else's is `NotFound`.
pub async fn find_own(
    db: &impl ConnectionTrait,
    owner: Uuid,
    id: Uuid,
) -> Result<tokens::Model, TokenError> {
    tokens::Entity::find_by_id(id)
        .filter(tokens::Column::UserId.eq(owner))
        .one(db)
        .await?
        .ok_or(TokenError::NotFound)
}

/// Any token with its owner (admin).
pub async fn find_with_owner(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<(tokens::Model, users::Model), TokenError> {
    match tokens::Entity::find_by_id(id)
        .find_also_related(users::Entity)
        .one(db)
        .await?
    {
        Some((token, Some(owner))) => Ok((token, owner)),
        _ => Err(TokenError::NotFound),
    }
}

/// Admin: every token (optionally one user's, optionally one kind), newest first, with its owner
/// and its latest use as this instance knows it. Not in a transaction (`LastUsed::fresh`).
pub async fn list_all(
    db: &DatabaseConnection,
    last_used: &LastUsed,
    filter: &TokenFilter,
    limit: u64,
    offset: u64,
) -> Result<Vec<(tokens::Model, users::Model)>, TokenError> {
    let rows = last_used
        .fresh(|| {
            filter
                .apply(tokens::Entity::find().find_also_related(users::Entity))
                .order_by_desc(tokens::Column::CreatedAt)
                .order_by_desc(tokens::Column::Id)
                .limit(limit)
                .offset(offset)
                .all(db)
        })
        .await?;
    // The foreign key guarantees an owner; a row without one is mid-deletion and not worth showing.
    Ok(rows
        .into_iter()
        .filter_map(|(token, user)| Some((token, user?)))
        .collect())
}

/// Admin: how many tokens match a filter (for paging).
pub async fn count_all(db: &impl ConnectionTrait, filter: &TokenFilter) -> Result<u64, TokenError> {
    Ok(filter.apply(tokens::Entity::find()).count(db).await?)
}

/// Token counts per user id, for the admin's user list.
pub async fn count_by_owner(
    db: &impl ConnectionTrait,
) -> Result<std::collections::HashMap<Uuid, u64>, TokenError> {
    let counts: Vec<(Uuid, i64)> = tokens::Entity::find()
        .select_only()
        .column(tokens::Column::UserId)
        .column_as(tokens::Column::Id.count(), "count")
        .group_by(tokens::Column::UserId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(counts
        .into_iter()
        .map(|(owner, count)| (owner, u64::try_from(count).unwrap_or(0)))
        .collect())
}
