//! Randomness for secrets, straight from the operating system's CSPRNG.

use rand::{
    distr::{Alphanumeric, SampleString},
    rand_core::UnwrapErr,
    rngs::SysRng,
};

/// `len` characters drawn uniformly from [A-Za-z0-9]: log2(62) ≈ 5.95 bits each.
pub fn random_alphanumeric(len: usize) -> String {
    // The OS generator only fails when the platform has no entropy source at all; nothing
    // sensible can go on without one, so that is a panic rather than a weaker fallback.
    Alphanumeric.sample_string(&mut UnwrapErr(SysRng), len)
}
