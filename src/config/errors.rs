//! Where in a config file a TOML error is: the line, column and dotted key of
//! the parser's span, put in front of its message (`line 3, column 10, key
//! daemon: invalid type: string "yes", expected a boolean`). The file name is
//! added by `Config::load`; errors found after parsing name their key in
//! `ConfigError::Invalid`. [`ConfigError`] itself is here too.

use std::path::PathBuf;

/// The parser's message with the line, column and key it is about, found from
/// the error's span: `line 3, column 10, key listener.mode: unknown variant …`.
/// The key is the `name =` of the span's line (or the nearest one above, in a
/// multi-line array), under the `[table]` / `[[table]]` above it; an error in a
/// table header names that table.
pub fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end();
    let Some(span) = error.span() else {
        return message.to_owned();
    };
    let at = span.start.min(text.len());
    let before = text.as_bytes().get(..at).unwrap_or_default();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    match key_of_line(text, line) {
        Some(key) => format!("line {line}, column {column}, key {key}: {message}"),
        None => format!("line {line}, column {column}: {message}"),
    }
}

/// The dotted key that line `line` (1-based) of a TOML text sets or continues:
/// its own `name =`, or on a continuation line of a multi-line array, inline
/// table or string, the `name =` that opened it; prefixed with the nearest
/// `[table]` / `[[table]]` above. A table header line names its table. `None`
/// when no key can be told (a line that is no assignment, say).
fn key_of_line(text: &str, line: usize) -> Option<String> {
    let rows: Vec<&str> = text.lines().take(line).collect();
    let (current, above) = rows.split_last()?;
    let mut above = above.iter().rev();
    if let Some(table) = table_header(current) {
        return Some(table.to_owned());
    }
    let key = match assignment(current) {
        Some((name, _)) => name,
        None => {
            let (name, value) = above.by_ref().find_map(|row| {
                table_header(row).map_or_else(|| assignment(row), |_| Some(("", "")))
            })?;
            let opens_multiline_value = ["[", "{", "\"\"\"", "\'\'\'"]
                .iter()
                .any(|open| value.starts_with(open));
            if name.is_empty() || !opens_multiline_value {
                return None;
            }
            name
        }
    };
    Some(match above.find_map(|row| table_header(row)) {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

/// `table` of a `[table]` or `[[table]]` line.
fn table_header(row: &str) -> Option<&str> {
    let header = row.trim().strip_prefix('[')?;
    let table = header.trim_start_matches('[').split(']').next()?.trim();
    let is_name = !table.is_empty()
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    is_name.then_some(table)
}

/// `(name, value)` of a `name = value` line, both trimmed; `None` for other lines.
fn assignment(row: &str) -> Option<(&str, &str)> {
    let (name, value) = row.split_once('=')?;
    let name = name.trim();
    let is_key = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' '));
    is_key.then_some((name, value.trim()))
}

/// A configuration that cannot be used; the message names the culprit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown key or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The option.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}
