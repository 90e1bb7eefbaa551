//! Skeletons for rows written before the skeleton columns existed (`names::skeleton` is the
//! application's code, so the migration that added the columns could not fill them). Run after
//! every migration; cheap when nothing is missing.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use super::{is_unique_violation, names::skeleton};
use crate::entities::{tokens, users};

const BATCH: u64 = 500;

/// Fills every missing username and token-name skeleton; returns how many it filled. A row whose
/// name looks like an existing one's (allowed before) keeps none, with a warning: the other row
/// holds the skeleton, so no further look-alike can be added.
pub async fn fill_missing(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let mut filled = 0;
    let mut after = Uuid::nil();
    loop {
        let rows: Vec<(Uuid, String)> = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .column(users::Column::Username)
            .filter(users::Column::UsernameSkeleton.is_null())
            .filter(users::Column::Id.gt(after))
            .order_by_asc(users::Column::Id)
            .limit(BATCH)
            .into_tuple()
            .all(db)
            .await?;
        let Some((last, _)) = rows.last() else { break };
        after = *last;
        for (id, username) in rows {
            let done = users::Entity::update_many()
                .col_expr(
                    users::Column::UsernameSkeleton,
                    Expr::value(skeleton(&username)),
                )
                .filter(users::Column::Id.eq(id))
                .exec(db)
                .await;
            match done {
                Ok(_) => filled += 1,
                Err(e) if is_unique_violation(&e) => {
                    log::warn!("user {id}: its username looks like another user's (left as is)")
                }
                Err(e) => return Err(e),
            }
        }
    }
    let mut after = Uuid::nil();
    loop {
        let rows: Vec<(Uuid, String)> = tokens::Entity::find()
            .select_only()
            .column(tokens::Column::Id)
            .column(tokens::Column::Name)
            .filter(tokens::Column::NameSkeleton.is_null())
            .filter(tokens::Column::Id.gt(after))
            .order_by_asc(tokens::Column::Id)
            .limit(BATCH)
            .into_tuple()
            .all(db)
            .await?;
        let Some((last, _)) = rows.last() else { break };
        after = *last;
        for (id, name) in rows {
            let done = tokens::Entity::update_many()
                .col_expr(tokens::Column::NameSkeleton, Expr::value(skeleton(&name)))
                .filter(tokens::Column::Id.eq(id))
                .exec(db)
                .await;
            match done {
                Ok(_) => filled += 1,
                Err(e) if is_unique_violation(&e) => log::warn!(
                    "token {id}: its name looks like another of its owner's tokens (left as is)"
                ),
                Err(e) => return Err(e),
            }
        }
    }
    if filled > 0 {
        log::info!("name skeletons filled for {filled} existing users and tokens");
    }
    Ok(filled)
}
