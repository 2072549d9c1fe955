//! `log_format = "json"`: one JSON object per line, for machines.
//!
//! Every line starts `{"ts":"2026-01-02T03:04:05.678Z","level":"INFO","event":…`
//! and carries the fields of the event and of the spans it happened in (a
//! connection's span gives `conn_id` and `remote_ip` to every line of that
//! connection). Stable names, whatever the call site wrote:
//!
//! | field | what |
//! |---|---|
//! | `ts` | UTC time, milliseconds |
//! | `level` | `ERROR` … `TRACE` |
//! | `event` | what happened (`connect`, `disconnect`, `message_accepted`, `auth`, …); `log` for lines that name none |
//! | `message` | the human text (the seed format's line) |
//! | `conn_id` | the connection, unique in this process |
//! | `remote_ip` | the client's address (a call site's `remote` field) |
//! | `mail_id` | the mail (a call site's `id` field) |
//! | `code` | the SMTP reply code the event answered with |
//!
//! The same walls as the seed format: client values arrive escaped
//! ([`Escaped`](super::Escaped)), JSON escapes the C0 controls, and every
//! other character that could break a line or fool a terminal (DEL, C1,
//! U+2028/U+2029, the bidirectional controls) is written as a `\uXXXX` escape,
//! so a line is always exactly one line and means what a JSON parser reads.

use std::fmt::{self, Write as _};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line format (use it with [`JsonFields`] for the spans' fields).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFormat;

/// Records span fields as a JSON object, so [`JsonFormat`] can merge them.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = JsonVisitor::default();
        fields.record(&mut visitor);
        writer.write_str(&Value::Object(visitor.0).to_string())
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor(match serde_json::from_str(&current.fields) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        });
        fields.record(&mut visitor);
        current.fields = Value::Object(visitor.0).to_string();
        Ok(())
    }
}

impl<S> FormatEvent<S, JsonFields> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        cx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = JsonVisitor::default();
        if let Some(scope) = cx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(recorded) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str(&recorded.fields)
                {
                    fields.0.extend(map);
                }
            }
        }
        event.record(&mut fields);
        // A call site names its event with `name:` (the seed format does not
        // show it); unnamed events are called `event <file>:<line>`.
        let name = event.metadata().name();
        if !name.starts_with("event ") && !fields.0.contains_key("event") {
            fields.0.insert("event".to_owned(), Value::from(name));
        }
        let line = json_line(event.metadata().level().as_str(), fields.0);
        writer.write_str(&line)
    }
}

/// The whole line: `ts`, `level` and `event` first, then the other fields
/// (sorted by name), then `\n`; characters that could break the line escaped.
fn json_line(level: &str, mut fields: Map<String, Value>) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let event = fields.remove("event").unwrap_or_else(|| Value::from("log"));
    let mut line = format!(
        "{{\"ts\":{},\"level\":{},\"event\":{}",
        Value::from(ts),
        Value::from(level),
        event
    );
    for (name, value) in fields {
        let _ = write!(line, ",{}:{value}", Value::from(name));
    }
    line.push_str("}\n");
    one_line(&line)
}

/// `json` with every [`breaks_a_line`](super::breaks_a_line) character that
/// JSON leaves raw (DEL, C1, U+2028/U+2029, bidirectional controls) written as
/// `\uXXXX` (all are in the BMP, and outside strings JSON has none of them).
fn one_line(json: &str) -> String {
    let body = json.strip_suffix('\n').unwrap_or(json);
    let mut out = String::with_capacity(json.len());
    for c in body.chars() {
        if super::breaks_a_line(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out.push('\n');
    out
}

/// Collects fields into a JSON object under their stable names.
#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl JsonVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "id" => "mail_id",
            "remote" => "remote_ip",
            // The log bridge's bookkeeping (rustls's records): not ours to show.
            name if name.starts_with("log.") => return,
            name => name,
        };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_line_of_valid_json_whatever_the_values() {
        let nasty = "a\nb\r\u{7f}\u{85}\u{9b}\u{2028}\u{2029}\u{202e}\u{2066}\x1b[2J\"\\é";
        let mut fields = Map::new();
        fields.insert("user".into(), Value::from(nasty));
        fields.insert("event".into(), Value::from("auth"));
        fields.insert("code".into(), Value::from(535));
        let line = json_line("WARN", fields);
        assert!(line.ends_with("}\n"), "{line:?}");
        let body = &line[..line.len() - 1];
        let bad = body
            .chars()
            .find(|&c| c.is_control() || super::super::breaks_a_line(c));
        assert_eq!(bad, None, "{line:?}");
        assert!(
            body.starts_with("{\"ts\":\"") && body.contains(r#","level":"WARN","event":"auth","#),
            "{body}"
        );
        let parsed: Value = serde_json::from_str(body).unwrap();
        assert_eq!(parsed["user"], nasty, "the escapes read back as the value");
        assert_eq!(parsed["code"], 535);
    }

    #[test]
    fn events_that_name_none_are_log() {
        let parsed: Value = serde_json::from_str(&json_line("INFO", Map::new())).unwrap();
        assert_eq!(parsed["event"], "log");
        assert_eq!(parsed["level"], "INFO");
    }
}
