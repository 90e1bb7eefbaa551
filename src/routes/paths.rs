//! Paths are routed without a trailing slash and with single slashes: `/api/me/` and
//! `//api//me` are `/api/me`. Done by `middleware::Essentials` before routing, cheaply for the
//! paths devices poll.

use actix_web::{
    dev::{ServiceRequest, Url},
    http::{Uri, uri::PathAndQuery},
};

/// Routes `req` by its normalized path (see [`normalized`]). Paths without a query are
/// remembered per worker: a device polling `/api/me/` would otherwise pay for a new URI, its
/// routing copy and their parsing on every request. Only a plain path is remembered: the scheme
/// and host of an absolute-form request line (`GET http://host/api/me/`) are that request's own.
pub fn normalize(req: &mut ServiceRequest) {
    let uri = req.uri();
    if is_normal(uri.path()) {
        return;
    }
    let plain = uri.query().is_none() && uri.scheme().is_none() && uri.authority().is_none();
    let url = if plain {
        RECENT_PATHS.with_borrow_mut(|recent| recent.normalized(uri))
    } else {
        normalized(uri).map(Url::new)
    };
    if let Some(url) = url {
        req.head_mut().uri = url.uri().clone();
        *req.match_info_mut().get_mut() = url;
    }
}

/// How many normalized paths each worker remembers: a few hot ones are polled by every device,
/// the rest (paths with ids) come and go.
const RECENT_PATH_SLOTS: usize = 8;

thread_local! {
    static RECENT_PATHS: std::cell::RefCell<RecentPaths> = const {
        std::cell::RefCell::new(RecentPaths {
            slots: [const { None }; RECENT_PATH_SLOTS],
            next: 0,
        })
    };
}

/// Raw paths (no query) that needed normalizing, each with its routing form, replaced in turn.
struct RecentPaths {
    slots: [Option<(Box<str>, Url)>; RECENT_PATH_SLOTS],
    next: usize,
}

impl RecentPaths {
    /// The routing form of `uri` (a path alone, with no query, scheme or host), or `None` when
    /// it is already normal.
    fn normalized(&mut self, uri: &Uri) -> Option<Url> {
        let path = uri.path();
        let known = self.slots.iter().flatten().find(|(raw, _)| **raw == *path);
        if let Some((_, url)) = known {
            return Some(url.clone());
        }
        let url = Url::new(normalized(uri)?);
        self.slots[self.next] = Some((path.into(), url.clone()));
        self.next = (self.next + 1) % RECENT_PATH_SLOTS;
        Some(url)
    }
}

/// No trailing slash (but the root) and no repeated one: decided without allocating.
fn is_normal(path: &str) -> bool {
    let trailing = path.len() > 1 && path.ends_with('/');
    path.is_empty() || (!trailing && !path.contains("//"))
}

/// The URI with repeated slashes merged and trailing ones trimmed (the root stays `/`), or
/// `None` when it is already so.
fn normalized(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    if is_normal(path) {
        return None;
    }
    let mut clean = String::with_capacity(path.len() + uri.query().map_or(0, |q| q.len() + 1));
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        clean.push('/');
        clean.push_str(segment);
    }
    if clean.is_empty() {
        clean.push('/');
    }
    if let Some(query) = uri.query() {
        clean.push('?');
        clean.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::from_maybe_shared(clean).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(uri: &str) -> String {
        let uri: Uri = uri.parse().unwrap();
        normalized(&uri).map_or_else(|| format!("unchanged {uri}"), |uri| uri.to_string())
    }

    #[test]
    fn paths_lose_trailing_and_repeated_slashes_and_keep_their_query() {
        assert_eq!(normal("/api/me/"), "/api/me");
        assert_eq!(normal("/api//me///"), "/api/me");
        assert_eq!(normal("//"), "/");
        assert_eq!(
            normal("/api/tokens/?page=2&x=//"),
            "/api/tokens?page=2&x=//"
        );
        assert_eq!(normal("/api/me"), "unchanged /api/me");
        assert_eq!(normal("/"), "unchanged /");
        assert_eq!(normal("/a?b=/"), "unchanged /a?b=/");
    }

    #[test]
    fn remembered_paths_route_as_when_first_normalized_and_others_still_normalize() {
        let mut recent = RecentPaths {
            slots: [const { None }; RECENT_PATH_SLOTS],
            next: 0,
        };
        let mut route = |raw: &str| {
            let uri: Uri = raw.parse().unwrap();
            recent
                .normalized(&uri)
                .map(|url| (url.uri().to_string(), url.path().to_owned()))
        };
        let me = Some(("/api/me".to_owned(), "/api/me".to_owned()));
        assert_eq!(route("/api/me/"), me);
        assert_eq!(route("/api/me/"), me, "remembered: the same routing form");
        assert_eq!(route("/api/me"), None, "a normal path is left alone");
        // More distinct paths than slots: each is still normalized, the oldest forgotten.
        for n in 0..RECENT_PATH_SLOTS * 2 {
            let expected = format!("/api/tokens/{n}");
            assert_eq!(
                route(&format!("/api//tokens/{n}/")),
                Some((expected.clone(), expected))
            );
        }
        assert_eq!(route("/api/me/"), me, "normalized again once forgotten");
        assert_eq!(
            route("/a%2Fb/"),
            Some(("/a%2Fb".to_owned(), "/a%2Fb".to_owned())),
            "escapes are kept as the router expects them"
        );
    }

    #[test]
    fn a_request_keeps_its_own_scheme_and_host_and_lends_them_to_no_other() {
        use actix_web::test::TestRequest;
        let route = |uri: &str| {
            let mut req = TestRequest::get().uri(uri).to_srv_request();
            normalize(&mut req);
            (req.uri().to_string(), req.match_info().as_str().to_owned())
        };
        let plain = ("/api/me".to_owned(), "/api/me".to_owned());
        assert_eq!(route("/api/me/"), plain);
        assert_eq!(
            route("http://evil.example/api/me/"),
            (
                "http://evil.example/api/me".to_owned(),
                "/api/me".to_owned()
            ),
            "an absolute-form request line keeps its scheme and host"
        );
        assert_eq!(
            route("/api/me/"),
            plain,
            "and the next plain request does not get them"
        );
        assert_eq!(route("/api/me/?a=1").0, "/api/me?a=1", "a query is kept");
        assert_eq!(route("/api/me").0, "/api/me");
    }
}
