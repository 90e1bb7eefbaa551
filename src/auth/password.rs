//! Password hashing with argon2id (OWASP parameters: m=19 MiB, t=2, p=1).
//!
//! Hashing is slow on purpose, so it runs on the blocking pool, never on the async workers, and
//! at most one hash per core runs at once: a login flood queues instead of exhausting memory.

use std::sync::{Arc, LazyLock};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

use super::random::random_alphanumeric;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("password hashing task failed")]
    Task(#[from] tokio::task::JoinError),
}

static HASHING_SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(Semaphore::new(cores))
});

/// Verified against when the user is unknown, so a wrong username costs the same time as a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    hash_now(&random_alphanumeric(32)).expect("hashing a random password with default parameters")
});

fn hash_now(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

fn verify_now(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

async fn on_blocking_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PasswordError> {
    let slot = HASHING_SLOTS
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    // The slot travels with the work: if the request is dropped (client gone), the hash still
    // runs to its end and only then frees the slot, so the bound holds whatever clients do.
    Ok(tokio::task::spawn_blocking(move || {
        let _slot = slot;
        yield_to_requests();
        work()
    })
    .await?)
}

/// PHC string of a fresh argon2id hash with a random salt.
pub async fn hash_password(password: String) -> Result<String, PasswordError> {
    on_blocking_pool(move || hash_now(&password)).await?
}

/// Checks `password` against `stored`, or against a dummy hash when there is no user, so both
/// paths take the same time. Returns false for `None`.
pub async fn verify_password(
    password: String,
    stored: Option<String>,
) -> Result<bool, PasswordError> {
    on_blocking_pool(move || match stored {
        Some(stored) => verify_now(&password, &stored),
        None => {
            verify_now(&password, &DUMMY_HASH);
            false
        }
    })
    .await
}

/// Hashing threads run at a lower priority (nice 10): during a login flood, cheap requests such
/// as verifications and probes still get the cores at once, and hashing takes what is left (which
/// is everything when nothing else runs). The pool's threads may later run other blocking work at
/// this priority too; nothing on a request's path blocks there.
fn yield_to_requests() {
    #[cfg(target_os = "linux")]
    {
        thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        if !LOWERED.replace(true) {
            // SAFETY: setpriority only changes this thread's scheduling weight (who 0 = the
            // calling thread on Linux); failure leaves the priority as it was.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, 0, 10);
            }
        }
    }
}

/// Each hash allocates 19 MiB and frees it. glibc raises its mmap threshold to the largest block
/// freed, after which such blocks come from per-thread arenas and stay with the process: a login
/// flood left 640 MiB resident. A fixed threshold returns them to the system at once. Called once
/// at start-up.
pub fn return_freed_hash_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is thread-safe.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Hash the dummy now, at start-up, so the first unknown-user login is not slower than the rest.
pub fn warm_up() {
    LazyLock::force(&DUMMY_HASH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_own_password_only() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "argon2id with OWASP's parameters (19 MiB, 2 passes) expected, got {hash}"
        );
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!verify_password("anything".into(), None).await.unwrap());
    }
}
