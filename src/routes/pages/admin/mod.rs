//! Admin pages: users (create, deactivate, activate, revoke all tokens), every token (filter,
//! revoke), and the audit log. Every handler takes `SignedInAdmin`: others get a 403 page.

mod audit;
mod overview;
mod tokens;
mod users;

pub use audit::{AuditRow, audit_page};
pub use overview::overview_page;
pub use tokens::{revoke_token, revoke_token_page, tokens_page};
pub use users::{
    activate_user, create_user, deactivate_user, revoke_all, revoke_all_page, users_page,
};

const PAGE_SIZE: u64 = 50;

pub struct Pager {
    pub page: u64,
    pub pages: u64,
    /// The query string without `page`, to build links.
    pub query: String,
}

impl Pager {
    fn new(page: Option<u64>, total: u64, query: String) -> Pager {
        let pages = total.div_ceil(PAGE_SIZE).max(1);
        Pager {
            page: page.unwrap_or(1).clamp(1, pages),
            pages,
            query,
        }
    }

    fn offset(&self) -> u64 {
        (self.page - 1) * PAGE_SIZE
    }

    pub fn has_previous(&self) -> bool {
        self.page > 1
    }

    pub fn has_next(&self) -> bool {
        self.page < self.pages
    }
}
