//! Where in a config file a TOML error is: the line, column and dotted key of
//! the parser's span, put in front of its message (`line 3, column 10, key
//! daemon: invalid type: string "yes", expected a boolean`). The file name is
//! added by `Config::load`; errors found after parsing name their key in
//! `ConfigError::Invalid`.

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

/// The dotted key that line `line` (1-based) of a TOML text sets or continues.
fn key_of_line(text: &str, line: usize) -> Option<String> {
    let mut key = None;
    for row in text
        .lines()
        .take(line)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let row = row.trim();
        if let Some(header) = row.strip_prefix('[') {
            let table = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim();
            return Some(match key {
                Some(key) => format!("{table}.{key}"),
                None => table.to_owned(),
            });
        }
        if key.is_none()
            && let Some((name, _)) = row.split_once('=')
        {
            let name = name.trim();
            let is_key = !name.is_empty()
                && name.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | '\'' | ' ')
                });
            if is_key {
                key = Some(name.to_owned());
            }
        }
    }
    key
}
