//! `JsonOrForm<T>`: a request body sent as JSON or as a URL-encoded form, as the Django recipe's
//! clients do, bounded in size, with every failure a JSON 4xx.

use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web::BytesMut};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{API_BODY_LIMIT, ApiError};

pub struct JsonOrForm<T>(pub T);

enum Format {
    Json,
    Form,
}

fn content_type_of(req: &HttpRequest) -> Option<&str> {
    req.headers().get(header::CONTENT_TYPE)?.to_str().ok()
}

fn format_of(content_type: Option<&str>) -> Option<Format> {
    let mime = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    if mime == "application/json" || mime.ends_with("+json") {
        Some(Format::Json)
    } else if mime == "application/x-www-form-urlencoded" {
        Some(Format::Form)
    } else {
        None
    }
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The whole body, or 413 when it declares or turns out to be larger than the limit. Shared by
/// the API's bodies and the web UI's forms.
pub(crate) async fn read_bounded(
    req: &HttpRequest,
    payload: Payload,
) -> Result<BytesMut, ApiError> {
    if declared_length(req).is_some_and(|length| length > API_BODY_LIMIT) {
        return Err(ApiError::PayloadTooLarge);
    }
    read_limited(payload).await
}

async fn read_limited(mut payload: Payload) -> Result<BytesMut, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        if body.len() + chunk.len() > API_BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body as `T` by its `Content-Type` header value (absent or not text: `None`); what the
/// extractor does once the body is read. Pure, so the fuzzers can reach it without actix.
pub fn decode<T: DeserializeOwned>(content_type: Option<&str>, body: &[u8]) -> Result<T, ApiError> {
    let format = format_of(content_type);
    // An empty body is an empty form whatever its declared type, so endpoints whose fields are
    // all optional accept a bare POST.
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_urlencoded::from_bytes(b"").map_err(|e| ApiError::BadRequest(e.to_string()));
    }
    match format {
        Some(Format::Json) => from_json(body),
        Some(Format::Form) => serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid form body: {e}"))),
        None => Err(ApiError::UnsupportedMediaType),
    }
}

/// A JSON body as `T`. A value of the wrong type for a field is `WrongType` naming that field
/// (serde_json's own error says only where in the text it is); broken JSON, a missing field or
/// trailing text is a plain 400.
fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let field = match error.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            _ => None,
        };
        let cause = error.into_inner();
        match field {
            Some(field) if cause.is_data() => {
                let text = cause.to_string();
                let message = text.rsplit_once(" at line ").map_or(&text[..], |(m, _)| m);
                ApiError::WrongType {
                    field,
                    message: message.to_owned(),
                }
            }
            _ => ApiError::BadRequest(format!("invalid JSON body: {cause}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonOrForm<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let body = read_bounded(&req, payload).await?;
            decode(content_type_of(&req), &body).map(JsonOrForm)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = "application/json";
    const FORM: &str = "application/x-www-form-urlencoded";

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Probe {
        name: String,
        days: Option<u32>,
        flag: Option<bool>,
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_field() {
        for (body, field) in [
            (r#"{"name":"k","flag":"maybe"}"#, "flag"),
            (r#"{"name":"k","days":2.5}"#, "days"),
            (r#"{"name":["k"]}"#, "name"),
        ] {
            match decode::<Probe>(Some(JSON), body.as_bytes()) {
                Err(ApiError::WrongType {
                    field: named,
                    message,
                }) => {
                    assert_eq!(named, field, "{body}");
                    assert!(message.starts_with("invalid type"), "{message}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        for body in [r#"{"days":3}"#, r#"{"name":"k"} trailing"#, r#"{"name":"#] {
            assert!(
                matches!(
                    decode::<Probe>(Some(JSON), body.as_bytes()),
                    Err(ApiError::BadRequest(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn json_and_form_decode_to_the_same_value() {
        let json: Probe = decode(Some(JSON), br#"{"name":"k","days":3,"flag":true}"#).unwrap();
        let form: Probe = decode(Some(FORM), b"name=k&days=3&flag=true").unwrap();
        assert_eq!(json, form);
    }

    #[test]
    fn media_type_parameters_case_and_json_suffixes_are_understood() {
        for content_type in [
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
        ] {
            let probe: Probe = decode(Some(content_type), br#"{"name":"k"}"#).unwrap();
            assert_eq!(probe.name, "k");
        }
        let form: Probe = decode(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"name=k",
        )
        .unwrap();
        assert_eq!(form.name, "k");
    }

    #[test]
    fn unknown_media_types_and_garbage_are_client_errors() {
        assert!(matches!(
            decode::<Probe>(None, b"name=k"),
            Err(ApiError::UnsupportedMediaType)
        ));
        assert!(matches!(
            decode::<Probe>(Some(JSON), b"{\"name\":"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            decode::<Probe>(Some(JSON), b"\xff\xfe"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
