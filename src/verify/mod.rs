//! Token verification, the hot path, in one place. A request's key (taken from its header by
//! `routes::extract`) is parsed once into a `TokenKey` by [`Verifier::verify_text`]:
//! digest → cache → on a miss, one lookup by digest (`lookup`; `sqlite`, `postgres` and `mariadb`
//! are its direct paths) → `checks::accept` →
//! cached → use noted in memory (`last_used`, written back in batches). Nothing on this path
//! writes to the database.
//!
//! Revocation is the other half: every change that removes tokens or changes a user's standing
//! is finished through [`Revocations`], which commits and then invalidates this instance's cache
//! and, through PostgreSQL `NOTIFY`, every other instance's (`revocations::listen`).

mod bus;
pub mod checks;
pub mod direct;
pub mod last_used;
pub mod lookup;
pub mod mariadb;
pub mod own_connections;
pub mod postgres;
pub mod rate_limit;
pub mod refusals;
pub mod revocations;
pub mod sqlite;
pub mod verifier;

pub use checks::{Attempt, AuthError, Authenticated, Use};
pub use revocations::{Revocations, RevokingTransaction};
pub use verifier::{Revocation, Verifier, VerifierConfig};
