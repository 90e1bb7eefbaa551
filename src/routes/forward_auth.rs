//! Forward authentication: `GET`/`HEAD /auth/verify` for nginx `auth_request`, Traefik
//! `ForwardAuth` and Caddy `forward_auth`. 200 with the caller in headers, 401 otherwise.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::{
        Method,
        header::{self, HeaderName, HeaderValue},
    },
    route,
};

use super::api::{ErrorResponse, timestamp};
use super::extract::{ClientAddress, authenticate};
use crate::{error::ApiError, services::tokens::policy, verify::Authenticated};

const FORWARDED_METHOD: &str = "x-forwarded-method";
const ORIGINAL_METHOD: &str = "x-original-method";
// Names made once, not parsed and copied from text on every answer (as before, they go out in
// lower case; header names are case-insensitive).
const KIND_HEADER: HeaderName = HeaderName::from_static("x-auth-token-kind");
const SCOPES_HEADER: HeaderName = HeaderName::from_static("x-auth-scopes");
const READ_ONLY_HEADER: HeaderName = HeaderName::from_static("x-auth-read-only");
const EXPIRES_AT_HEADER: HeaderName = HeaderName::from_static("x-auth-expires-at");

const USER_HEADER: HeaderName = HeaderName::from_static("x-auth-user");
const TOKEN_ID_HEADER: HeaderName = HeaderName::from_static("x-auth-token-id");
const TOKEN_NAME_HEADER: HeaderName = HeaderName::from_static("x-auth-token-name");
const ADMIN_HEADER: HeaderName = HeaderName::from_static("x-auth-admin");

/// Verify the presented token for a reverse proxy. The answer has no body: the caller is in the
/// headers. Usernames and token names may hold any script, so their header values are
/// percent-encoded UTF-8: every byte but `A-Z a-z 0-9 - . _ ~ @` is written `%XX`
/// (`Küche 1` becomes `K%C3%BCche%201`); decode with any URL decoder.
#[utoipa::path(
    tag = "forward-auth",
    security(("token" = [])),
    params(
        ("scope" = Option<String>, Query, description = "a scope the protected location requires; repeat it (`?scope=a&scope=b`) to require several"),
        ("X-Original-Method" = Option<String>, Header, description = "the method of the request being decided on (nginx); a read-only token may only GET, HEAD or OPTIONS"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "the same, as Traefik and Caddy send it"),
    ),
    responses(
        (status = 200, description = "the token is valid and its policy lets the request through", headers(
            ("X-Auth-User" = String, description = "the owner's username, percent-encoded"),
            ("X-Auth-Token-Id" = String, description = "the token's id (UUID)"),
            ("X-Auth-Token-Name" = String, description = "the token's name, percent-encoded"),
            ("X-Auth-Admin" = String, description = "`true` or `false`"),
            ("X-Auth-Token-Kind" = String, description = "`session` or `device`"),
            ("X-Auth-Scopes" = String, description = "the token's scopes, space-separated"),
            ("X-Auth-Read-Only" = String, description = "`true` or `false`"),
            ("X-Auth-Expires-At" = String, description = "RFC 3339, only for a token that expires"),
        )),
        (status = 401, description = "missing, malformed, unknown, revoked or expired token, inactive user, or a use from outside the token's networks, pinned elsewhere or with no uses left; a JSON body for GET, none for HEAD", body = ErrorResponse),
        (status = 403, description = "a read-only token and a writing method (`This token is read-only`), or a required scope missing (`Insufficient scope`, with `WWW-Authenticate: Bearer error=\"insufficient_scope\"`)", body = ErrorResponse),
    )
)]
#[route("/auth/verify", method = "GET", method = "HEAD")]
pub async fn verify_token(req: HttpRequest) -> HttpResponse {
    let required = required_scopes(req.query_string());
    let scopes: Vec<&str> = required.iter().map(String::as_str).collect();
    // The method of the request the proxy is deciding on, as Traefik and Caddy
    // (`X-Forwarded-Method`) or our nginx example (`X-Original-Method`) forward it.
    let method = [FORWARDED_METHOD, ORIGINAL_METHOD]
        .iter()
        .find_map(|name| req.headers().get(*name))
        .and_then(|value| value.to_str().ok())
        .unwrap_or("GET");
    let writes = !policy::read_only_allows(method.trim());
    match authenticate(&req, ClientAddress::of(&req), writes, &scopes).await {
        Ok(caller) => caller_headers(&caller),
        Err(ApiError::InsufficientScope) => insufficient_scope(&req, &scopes),
        Err(error) if req.method() == Method::HEAD => {
            // HEAD: the same status and headers as GET (Content-Type included, RFC 9110 9.3.2),
            // no body.
            error
                .error_response()
                .set_body(actix_web::body::BoxBody::new(()))
        }
        Err(error) => error.error_response(),
    }
}

fn caller_headers(caller: &Authenticated) -> HttpResponse {
    let flag = |on: bool| HeaderValue::from_static(if on { "true" } else { "false" });
    let mut id = uuid::Uuid::encode_buffer();
    let mut response = HttpResponse::Ok();
    response
        .insert_header((USER_HEADER, header_safe(&caller.user.username)))
        .insert_header((
            TOKEN_ID_HEADER,
            caller.token.id.hyphenated().encode_lower(&mut id) as &str,
        ))
        .insert_header((TOKEN_NAME_HEADER, header_safe(&caller.token.name)))
        .insert_header((ADMIN_HEADER, flag(caller.user.is_admin)))
        .insert_header((
            KIND_HEADER,
            HeaderValue::from_static(caller.token.kind.as_str()),
        ))
        // Scopes are `A-Za-z0-9:._-` words: header-safe as they are.
        .insert_header((SCOPES_HEADER, caller.access.scopes().join(" ")))
        .insert_header((READ_ONLY_HEADER, flag(caller.access.read_only())));
    if let Some(expires_at) = caller.token.expires_at {
        response.insert_header((EXPIRES_AT_HEADER, timestamp::rfc3339(expires_at)));
    }
    response.finish()
}

/// `?scope=A&scope=B` (or `?scope=A%20B`): every scope the protected location requires.
fn required_scopes(query: &str) -> Vec<String> {
    if query.is_empty() {
        return Vec::new();
    }
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, _)| name == "scope")
        .flat_map(|(_, value)| {
            value
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// 403 naming the required scopes the way RFC 6750 §3 does, so a client can tell what to ask for.
fn insufficient_scope(req: &HttpRequest, scopes: &[&str]) -> HttpResponse {
    // Required scopes come from the proxy's configuration; anything but a scope's own characters
    // is dropped so that the header stays well-formed.
    let named: Vec<&str> = scopes
        .iter()
        .copied()
        .filter(|scope| policy::is_scope(scope))
        .collect();
    let mut response = ApiError::InsufficientScope.error_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        r#"Bearer error="insufficient_scope", scope="{}""#,
        named.join(" ")
    )) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    if req.method() == Method::HEAD {
        return response.set_body(actix_web::body::BoxBody::new(()));
    }
    response
}

/// Percent-encodes all but unreserved ASCII and `@`, so any text is a valid header value and no
/// form decoder mistakes a `+` for a space.
fn header_safe(text: &str) -> String {
    use std::fmt::Write;
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_keep_plain_names_and_encode_everything_else() {
        assert_eq!(header_safe("alice.b@example-1_~"), "alice.b@example-1_~");
        assert_eq!(header_safe("Küche 1"), "K%C3%BCche%201");
        assert_eq!(header_safe("a+b%c"), "a%2Bb%25c");
        assert_eq!(header_safe("🌡️"), "%F0%9F%8C%A1%EF%B8%8F");
        assert!(
            actix_web::http::header::HeaderValue::from_str(&header_safe("x\r\ny: z\u{7f}")).is_ok(),
            "line breaks and controls can never split or corrupt a header"
        );
    }
}
