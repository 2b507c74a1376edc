//! valkka-multiprocess's `formatLogger`: one call that makes log lines readable.

use std::io::Write;

use log::{LevelFilter, Log, Metadata, Record};

/// Installs a logger that prints `target - LEVEL - message` lines to stderr
/// (valkka-multiprocess's format `"%(name)s - %(levelname)s - %(message)s"`), and sets
/// the maximum level.
///
/// Backends log with target `TypeName.name`
/// ([`BackendContext::log_target`](crate::BackendContext::log_target)), so
/// lines read `MyProcess.worker-1 - INFO - loaded the model`.
///
/// If the program already installed a logger (`env_logger`, `tracing`'s
/// bridge, ...) that one stays, and only the level is applied; the function
/// returns `false` then. Each line is written with one `write(2)`, so lines
/// from several processes sharing stderr do not interleave.
///
/// Install it before starting processes: the logger is a global that the
/// fork copies into every child. A logger with a background thread (for
/// example a non-blocking appender) makes the parent multi-threaded, which
/// the fork refuses by default, and its thread does not exist in the child.
///
/// ```
/// forkbridge::format_logger(log::LevelFilter::Info);
/// log::info!(target: "MyProcess.worker-1", "hello");
/// ```
pub fn format_logger(level: LevelFilter) -> bool {
    let installed = log::set_boxed_logger(Box::new(FormatLogger)).is_ok();
    log::set_max_level(level);
    installed
}

#[derive(Debug)]
struct FormatLogger;

impl Log for FormatLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} - {} - {}\n",
            record.target(),
            record.level(),
            record.args()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
