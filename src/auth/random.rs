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

/// `len` characters drawn uniformly from `alphabet` (at most 256 distinct bytes), by rejection
/// sampling so that no character is likelier than another.
pub fn random_from(alphabet: &[u8], len: usize) -> String {
    use rand::Rng;
    assert!(!alphabet.is_empty() && alphabet.len() <= 256);
    // The largest multiple of the alphabet's size that fits a byte: bytes above it are redrawn.
    let accept_below = 256 - 256 % alphabet.len();
    let mut rng = UnwrapErr(SysRng);
    let mut out = String::with_capacity(len);
    let mut byte = [0u8; 1];
    while out.len() < len {
        rng.fill_bytes(&mut byte);
        if usize::from(byte[0]) < accept_below {
            out.push(char::from(alphabet[usize::from(byte[0]) % alphabet.len()]));
        }
    }
    out
}

/// `bytes` random bytes, written in hex.
pub fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut buffer = vec![0u8; bytes];
    UnwrapErr(SysRng).fill_bytes(&mut buffer);
    hex::encode(buffer)
}
