//! Logging set-up: human-readable log lines on stderr, never stdout (stdout
//! carries data only). `-v` raises and `-q` lowers the level; `NO_COLOR`
//! turns colour off. The progress display is chosen here too, since log
//! lines must step around it on a terminal.

use tracing::Level;

/// stderr, written with the progress lines out of the way.
struct AroundProgress;

impl std::io::Write for AroundProgress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::get().suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub fn init(verbose: u8, quiet: bool) {
    crate::progress::install(crate::progress::Progress::detect(quiet));
    let level = if quiet {
        Level::ERROR
    } else {
        match verbose {
            0 => Level::INFO,
            1 => Level::DEBUG,
            _ => Level::TRACE,
        }
    };
    let ansi = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(|| AroundProgress)
        .with_ansi(ansi)
        .with_target(false)
        .without_time()
        .try_init();
}
