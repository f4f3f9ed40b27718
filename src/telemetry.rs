//! Logging to standard error with `tracing`: human-readable text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Filter used when `RUST_LOG` is unset: Doorman at info, dependencies at warn.
const DEFAULT_FILTER: &str = "warn,doorman=info";

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides the default filter, for example
/// `RUST_LOG=doorman=debug` for one line per request.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let colors = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colors);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).try_init(),
    };
    if let Err(error) = result {
        eprintln!("logging was already initialized: {error}");
    }
}
