//! Logging setup: `tracing` to stderr, text or JSON, filtered by `RUST_LOG`
//! or the configured level.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// Targets whose debug and trace events print whole PDUs — bind passwords
/// and message text (an OTP's code) included — so they are capped at `info`
/// whatever the filter asks for.
const PDU_TRACERS: [&str; 2] = ["rusmpp", "rusmppc"];

/// Installs the global subscriber once; later calls are ignored.
pub fn init(level: &str, json: bool) {
    let filter = without_pdu_traces(
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(level))
            .unwrap_or_else(|_| EnvFilter::new("info")),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// `filter` with the PDU-printing targets capped at `info`.
pub fn without_pdu_traces(mut filter: EnvFilter) -> EnvFilter {
    for target in PDU_TRACERS {
        if let Ok(directive) = format!("{target}=info").parse::<Directive>() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}
