//! Logging set-up: env_logger, filtered by `RUST_LOG`, writing plain text or, with
//! `MULTITOKEN_LOG_FORMAT=json`, one JSON object per line for a log shipper. Structured fields
//! (the access log's method, path, status…) travel as the `log` crate's key-values, so both
//! formats carry them. Every message and text field passes through `redact_keys`: a key that
//! reached a log line by mistake is cut out, never written.

use std::io::Write;

use serde_json::{Map, Value};

use crate::{auth::redact::redact_keys, config::LogFormat};

/// Installs the process's logger. `default_filter` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter));
    match format {
        LogFormat::Text => builder.format(|buf, record| {
            let mut fields = String::new();
            let _ = record.key_values().visit(&mut TextFields(&mut fields));
            writeln!(
                buf,
                "[{} {:<5} {}] {}{fields}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                redact_keys(&record.args().to_string()),
            )
        }),
        LogFormat::Json => builder.format(|buf, record| {
            let line = json_line(record, chrono::Utc::now());
            writeln!(buf, "{line}")
        }),
    };
    builder.init();
}

/// One record as a JSON object: time, level, target, message, then its key-values.
fn json_line(record: &log::Record<'_>, at: chrono::DateTime<chrono::Utc>) -> Value {
    let mut object = Map::new();
    object.insert(
        "time".into(),
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            .into(),
    );
    object.insert("level".into(), record.level().as_str().into());
    object.insert("target".into(), record.target().into());
    object.insert(
        "message".into(),
        redact_keys(&record.args().to_string()).into_owned().into(),
    );
    let _ = record.key_values().visit(&mut JsonFields(&mut object));
    Value::Object(object)
}

/// Key-values as JSON: numbers and booleans as such, everything else as redacted text. A key
/// that clashes with the four fixed ones is left out rather than overwrite them.
struct JsonFields<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let key = key.as_str();
        if ["time", "level", "target", "message"].contains(&key) {
            return Ok(());
        }
        let value = if let Some(n) = value.to_u64() {
            Value::from(n)
        } else if let Some(n) = value.to_i64() {
            Value::from(n)
        } else if let Some(b) = value.to_bool() {
            Value::from(b)
        } else if let Some(x) = value.to_f64() {
            Value::from(x)
        } else {
            Value::from(redact_keys(&value.to_string()).into_owned())
        };
        self.0.insert(key.to_owned(), value);
        Ok(())
    }
}

/// Key-values appended to a text line as ` key=value`.
struct TextFields<'a>(&'a mut String);

impl<'kvs> log::kv::VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        self.0.push(' ');
        self.0.push_str(key.as_str());
        self.0.push('=');
        self.0.push_str(&redact_keys(&value.to_string()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_becomes_one_json_object_with_its_fields_and_no_key() {
        let key = crate::auth::key::TokenKey::generate();
        let message = format!("pasted {}", key.reveal());
        let pairs: [(&str, log::kv::Value<'_>); 4] = [
            ("status", 200u16.into()),
            ("path", log::kv::Value::from(message.as_str())),
            ("level", "spoofed".into()),
            ("slow", false.into()),
        ];
        let args = format_args!("{message}");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("actix_web::middleware::logger")
            .key_values(&pairs)
            .build();
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-03T07:00:00.250Z")
            .unwrap()
            .to_utc();
        let line = json_line(&record, at).to_string();
        assert!(!line.contains(key.reveal()), "no key in {line}");
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["time"], "2026-12-03T07:00:00.250Z");
        assert_eq!(
            parsed["level"], "INFO",
            "a field cannot overwrite the level"
        );
        assert_eq!(parsed["target"], "actix_web::middleware::logger");
        assert_eq!(parsed["status"], 200);
        assert_eq!(parsed["slow"], false);
        assert!(
            parsed["message"]
                .as_str()
                .unwrap()
                .starts_with("pasted mt_"),
            "{parsed}"
        );
    }
}
