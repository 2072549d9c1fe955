//! Logging for the binary: tracing to stderr, or to a file rotated daily, in the
//! Ruby gem's line format `YYYY-MM-DD HH:MM:SS [LEVEL] message` or as JSON lines
//! with stable field names ([`LogFormat`]; the JSON side is `json.rs`).
//!
//! What is logged is decided where it happens; nothing in this crate logs
//! passwords, AUTH data or message bodies. Every value a client supplied (user
//! names, EHLO names, addresses, hook texts) goes into a line through
//! [`Escaped`], so that no client can write a line of its own or hide text with
//! terminal controls; and as a second wall the line format itself escapes any
//! control character that still reaches it (an error text quoting the client).
//! Log files are created `0640` (they hold IPs, addresses and user names), the
//! daily ones included: [`DailyFile`] opens them itself, as tracing-appender's
//! roller would create them with the umask's mode.
//!
//! The `log` crate's records (rustls writes its alerts there, e.g. `Sending
//! warning alert NoRenegotiation`) reach the same lines through the tracing-log
//! bridge that [`init`] installs, at their own level.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

mod json;
pub use json::{JsonFields, JsonFormat};

/// The `log_format` key (`--log-format`): how each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// The seed's lines, `2016-10-05 21:51:46 [INFO] message key=value`.
    #[default]
    Seed,
    /// One JSON object per line with stable field names (see [`JsonFormat`]).
    Json,
}

/// The seed's line format: `2016-10-05 21:51:46 [INFO] message key=value`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedFormat;

impl<S, N> FormatEvent<S, N> for SeedFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        cx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
        write!(writer, "{now} [{}] ", event.metadata().level())?;
        // The second wall: whatever reached the fields unescaped (an error text
        // quoting the client, a value someone forgot to wrap) cannot end the line.
        let mut one_line = ControlsEscaped(&mut writer);
        cx.field_format()
            .format_fields(Writer::new(&mut one_line), event)?;
        writeln!(writer)
    }
}

/// Client-supplied text for a log line: control characters (C0, DEL, C1 such as
/// U+0085 and U+009B), the Unicode line and paragraph separators, the
/// bidirectional formatting characters, `\` and `"` are written as `\xNN` (below
/// U+0080), `\u{NNNN}` (above) or `\\` and `\"`; everything else as it is. So a
/// value can neither start a line of its own nor hide or reorder text on a
/// terminal, and an escape in the log always stands for an escape.
///
/// ```
/// use net_receiver::logging::Escaped;
/// let name = "bob\n2000-01-01 00:00:00 [INFO] AUTH succeeded user=root";
/// assert_eq!(
///     Escaped(name).to_string(),
///     "bob\\x0A2000-01-01 00:00:00 [INFO] AUTH succeeded user=root"
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, |c| matches!(c, '\\' | '"') || breaks_a_line(c))
    }
}

/// A writer that escapes [`breaks_a_line`] characters (not `\` nor `"`: the
/// fields' own Debug quoting uses them) on their way to `.0`.
struct ControlsEscaped<'w, W>(&'w mut W);

impl<W: fmt::Write> fmt::Write for ControlsEscaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_escaped(self.0, s, breaks_a_line)
    }
}

/// Writes `text` to `out`, each character for which `escape` says so as `\xNN` /
/// `\u{NNNN}` (`\\` and `\"` for those two); unescaped runs in one write.
fn write_escaped(
    out: &mut impl fmt::Write,
    text: &str,
    escape: impl Fn(char) -> bool,
) -> fmt::Result {
    let mut run_start = 0;
    for (at, c) in text.char_indices() {
        if !escape(c) {
            continue;
        }
        out.write_str(&text[run_start..at])?;
        run_start = at + c.len_utf8();
        match c {
            '\\' => out.write_str("\\\\")?,
            '"' => out.write_str("\\\"")?,
            c if u32::from(c) < 0x80 => write!(out, "\\x{:02X}", u32::from(c))?,
            c => write!(out, "\\u{{{:04X}}}", u32::from(c))?,
        }
    }
    out.write_str(&text[run_start..])
}

/// Characters that may end a line or change what a terminal shows: controls
/// (C0, DEL, C1), U+2028/U+2029 and the bidirectional formatting characters.
pub(crate) fn breaks_a_line(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Keeps the log file writer flushing; drop it only at exit.
#[must_use]
pub struct LogGuard {
    _flusher: Option<WorkerGuard>,
}

/// Creates the directory of a log file if needed. When a component of that
/// path is a file, the error says which one (the bare `File exists` or `Not a
/// directory` of the system call does not).
pub fn prepare_log_dir(file: &Path) -> io::Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::create_dir_all(dir)
            .map_err(|error| crate::delivery::maildir::name_the_non_directory(dir, error)),
        _ => Ok(()),
    }
}

/// The log file for each day, `FILE.YYYY-MM-DD` (the UTC date, the names
/// tracing-appender's daily roller gave them), created `0640` and appended to.
/// A day's file that cannot be opened leaves the lines in the previous one.
/// An existing file keeps its mode.
#[derive(Debug)]
pub struct DailyFile {
    /// `FILE` of `FILE.YYYY-MM-DD`.
    base: PathBuf,
    /// Days since 1970-01-01 (UTC) of `file`.
    day: u64,
    /// The day's file.
    file: File,
}

impl DailyFile {
    /// Opens (creating as needed) today's file for `base`, and its directory.
    pub fn open(base: &Path) -> io::Result<Self> {
        if base.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("log file {} names no file", base.display()),
            ));
        }
        prepare_log_dir(base)?;
        let day = today();
        let file = Self::open_day(base, day)?;
        Ok(Self {
            base: base.to_owned(),
            day,
            file,
        })
    }

    /// The path of the file written now.
    pub fn current_path(&self) -> PathBuf {
        Self::day_path(&self.base, self.day)
    }

    /// `FILE.YYYY-MM-DD` for `day` days after 1970-01-01.
    fn day_path(base: &Path, day: u64) -> PathBuf {
        let date = i64::try_from(day.saturating_mul(86_400))
            .ok()
            .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
            .unwrap_or_default()
            .format("%Y-%m-%d");
        let mut name = base.as_os_str().to_owned();
        name.push(format!(".{date}"));
        PathBuf::from(name)
    }

    fn open_day(base: &Path, day: u64) -> io::Result<File> {
        let path = Self::day_path(base, day);
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(LOG_FILE_MODE)
            .open(&path)
            .map_err(|error| match path.parent() {
                Some(dir) => crate::delivery::maildir::name_the_non_directory(dir, error),
                None => error,
            })
    }

    /// Writes `buf` to the file of `day`, opening it first when the day changed.
    fn write_on_day(&mut self, day: u64, buf: &[u8]) -> io::Result<usize> {
        if day != self.day
            && let Ok(file) = Self::open_day(&self.base, day)
        {
            self.day = day;
            self.file = file;
        }
        self.file.write(buf)
    }
}

/// Days since 1970-01-01, UTC (Unix time has 86,400 seconds a day).
fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / 86_400)
}

impl io::Write for DailyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_on_day(today(), buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The mode of a new log file: the user writes, its group reads.
pub const LOG_FILE_MODE: u32 = 0o640;

/// Sets up logging: `RUST_LOG` filters, and without it `default_filter` (an
/// `EnvFilter` directive such as `"info"`, what the binary uses, or `"warn"`, what
/// it uses with `--quiet`); with `file`, lines go to `file` with a date suffix,
/// rotated daily; otherwise to stderr; each line in `format`. rustls's warnings
/// (a refused renegotiation, an alert sent) are logged whatever the filter,
/// unless `RUST_LOG` names `rustls` itself: a `RUST_LOG=net_receiver=debug`
/// would otherwise silence them.
pub fn init(file: Option<&Path>, default_filter: &str, format: LogFormat) -> io::Result<LogGuard> {
    let from_env = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = with_tls_warnings(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        from_env.as_deref(),
    );
    // Written by a thread of its own: a stderr nobody reads (or a slow disk)
    // must not stall the threads that serve sessions (lines beyond its buffer
    // are dropped instead).
    let (writer, guard) = match file {
        Some(path) => tracing_appender::non_blocking(DailyFile::open(path)?),
        None => tracing_appender::non_blocking(std::io::stderr()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Seed => builder.event_format(SeedFormat).try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields)
            .event_format(JsonFormat)
            .try_init(),
    };
    Ok(LogGuard {
        _flusher: Some(guard),
    })
}

/// `filter` plus `rustls=warn`, unless the `RUST_LOG` text names rustls.
fn with_tls_warnings(filter: EnvFilter, rust_log: Option<&str>) -> EnvFilter {
    if rust_log.is_some_and(|directives| directives.contains("rustls")) {
        return filter;
    }
    match "rustls=warn".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn escaped_table() {
        for (raw, want) in [
            ("alice", "alice"),
            ("", ""),
            ("héllo wörld", "héllo wörld"),
            ("a\nb\rc", r"a\x0Ab\x0Dc"),
            ("\0\x07\x08\x1b[2J\x7f", r"\x00\x07\x08\x1B[2J\x7F"),
            ("\u{85}\u{9b}", r"\u{0085}\u{009B}"),
            ("ls\u{2028}ps\u{2029}", r"ls\u{2028}ps\u{2029}"),
            ("rtl\u{202e}txt\u{2066}", r"rtl\u{202E}txt\u{2066}"),
            (r#"back\slash "quoted""#, r#"back\\slash \"quoted\""#),
            (r"\x0A", r"\\x0A"),
        ] {
            assert_eq!(Escaped(raw).to_string(), want, "{raw:?}");
        }
    }

    #[test]
    fn the_line_format_escapes_controls_but_keeps_quotes() {
        let mut out = String::new();
        let mut one_line = ControlsEscaped(&mut out);
        one_line.write_str("error: \"x\"\nforged\u{2028}").unwrap();
        assert_eq!(out, r#"error: "x"\x0Aforged\u{2028}"#);
    }

    #[test]
    fn daily_file_is_created_private_and_dated() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("sub").join("nr.log");
        let mut file = DailyFile::open(&base).unwrap();
        io::Write::write_all(&mut file, b"line\n").unwrap();
        let path = file.current_path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name.len(), "nr.log.YYYY-MM-DD".len(), "{name}");
        assert!(name.starts_with("nr.log.20"), "{name}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "line\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o137, 0, "{mode:o}");
        // The next day: a new file, private too, and the lines go there.
        let tomorrow = file.day + 1;
        file.write_on_day(tomorrow, b"next\n").unwrap();
        let next = file.current_path();
        assert_ne!(next, path);
        assert_eq!(fs::read_to_string(&next).unwrap(), "next\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "line\n");
        let mode = fs::metadata(&next).unwrap().permissions().mode();
        assert_eq!(mode & 0o137, 0, "{mode:o}");
    }

    #[test]
    fn day_names_are_utc_dates() {
        let base = Path::new("/var/log/nr.log");
        assert_eq!(
            DailyFile::day_path(base, 0),
            Path::new("/var/log/nr.log.1970-01-01")
        );
        assert_eq!(
            DailyFile::day_path(base, 20_454),
            Path::new("/var/log/nr.log.2026-01-01")
        );
    }

    #[test]
    fn log_dir_under_a_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, b"").unwrap();
        for base in [file.join("nr.log"), file.join("deeper").join("nr.log")] {
            let error = DailyFile::open(&base).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("{} exists and is not a directory", file.display()),
                "{}",
                base.display()
            );
        }
    }
}
