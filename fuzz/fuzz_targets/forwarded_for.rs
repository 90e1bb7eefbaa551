//! `client_ip` on arbitrary `X-Forwarded-For` values behind a trusted proxy: never panics, and
//! the client it names is the peer or an address written in the header, never one made up.
#![no_main]

use std::net::IpAddr;

use actix_web::http::header::HeaderValue;
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use multitoken::routes::extract::client_ip;

fuzz_target!(|data: &[u8]| {
    // Two header lines, split where the input says, as a proxy chain may send them.
    let split = data
        .first()
        .map_or(0, |b| *b as usize % (data.len().max(1)));
    let (first, second) = data.split_at(split);
    let values: Vec<HeaderValue> = [first, second]
        .iter()
        .filter_map(|part| HeaderValue::from_bytes(part).ok())
        .collect();
    let peer: IpAddr = "10.0.0.2".parse().unwrap();
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    let client = client_ip(Some(peer), values.iter(), &trusted).expect("a peer gives a client");
    if client != peer {
        // Entry by entry, in each header line as sent.
        let written = [first, second]
            .iter()
            .flat_map(|part| part.split(|b| *b == b','))
            .filter_map(|entry| std::str::from_utf8(entry).ok())
            .map(str::trim)
            .any(|entry| {
                entry.parse::<IpAddr>().is_ok_and(|ip| ip == client)
                    || entry
                        .parse::<std::net::SocketAddr>()
                        .is_ok_and(|s| s.ip() == client)
            });
        assert!(written, "{client} must come from an entry of the header");
    }
});
