//! Logging for the binary: tracing to stderr, or to a file rotated daily, in the
//! Ruby gem's line format `YYYY-MM-DD HH:MM:SS [LEVEL] message`.
//!
//! What is logged is decided where it happens; nothing in this crate logs
//! passwords, AUTH data or message bodies.

use std::fmt;
use std::path::Path;

use tracing::{Event, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

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
        cx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Keeps the log file writer flushing; drop it only at exit.
#[must_use]
pub struct LogGuard {
    _flusher: Option<WorkerGuard>,
}

/// Creates the directory of a log file if needed.
pub fn prepare_log_dir(file: &Path) -> std::io::Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

/// Sets up logging: `RUST_LOG` filters, and without it `default_filter` (an
/// `EnvFilter` directive such as `"info"`, what the binary uses, or `"warn"`, what
/// it uses with `--quiet`); with `file`, lines go to `file` with a date suffix,
/// rotated daily; otherwise to stderr.
pub fn init(file: Option<&Path>, default_filter: &str) -> std::io::Result<LogGuard> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .event_format(SeedFormat);
    match file {
        Some(path) => {
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let name = path.file_name().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "log_file names no file")
            })?;
            std::fs::create_dir_all(dir)?;
            let appender = tracing_appender::rolling::RollingFileAppender::builder()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix(name.to_string_lossy())
                .build(dir)
                .map_err(std::io::Error::other)?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let _ = builder.with_writer(writer).try_init();
            Ok(LogGuard {
                _flusher: Some(guard),
            })
        }
        None => {
            // Written by a thread of its own too: a stderr nobody reads must not
            // stall the threads that serve sessions (lines beyond its buffer
            // are dropped instead).
            let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
            let _ = builder.with_writer(writer).try_init();
            Ok(LogGuard {
                _flusher: Some(guard),
            })
        }
    }
}
