//! `parse_duration` on arbitrary text: never panics, accepts only 1 s to 100 years, and any
//! accepted duration written back as seconds parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multitoken::duration::{MAX_SECONDS, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(duration) = parse_duration(text) else {
        return;
    };
    let seconds = duration.as_secs();
    assert!(
        (1..=MAX_SECONDS).contains(&seconds),
        "{seconds}s is out of range"
    );
    assert_eq!(duration.subsec_nanos(), 0);
    assert_eq!(parse_duration(&format!("{seconds}s")), Ok(duration));
});
