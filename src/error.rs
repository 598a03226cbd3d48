//! Exit statuses and the top-level error type.
//!
//! Every failure is sorted into one of the documented exit codes: usage or
//! configuration problems (2) are the user's to fix; runtime failures (3)
//! are the environment's (network, disk, a concurrent writer). Findings
//! that fail a run (1) are not errors: commands return them as a status.

use std::fmt;

/// The documented process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything worked and nothing fails the run.
    Ok,
    /// The run worked but produced findings that fail it (verify failures,
    /// gaps selected with `--fail-on`).
    Findings,
    /// Bad usage or configuration: fix the command line or the files.
    Usage,
    /// A runtime failure: I/O, network, API, a lost race for the branch.
    Runtime,
}

impl ExitStatus {
    pub fn as_u8(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Findings => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Runtime => 3,
        }
    }
}

/// Which exit code an error maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Usage,
    Runtime,
}

/// A command failure: the error chain plus its classification.
pub struct Error {
    kind: ErrorKind,
    inner: anyhow::Error,
}

impl Error {
    pub fn usage(inner: impl Into<anyhow::Error>) -> Self {
        Error {
            kind: ErrorKind::Usage,
            inner: inner.into(),
        }
    }

    pub fn runtime(inner: impl Into<anyhow::Error>) -> Self {
        Error {
            kind: ErrorKind::Runtime,
            inner: inner.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn status(&self) -> ExitStatus {
        match self.kind {
            ErrorKind::Usage => ExitStatus::Usage,
            ErrorKind::Runtime => ExitStatus::Runtime,
        }
    }

    pub fn inner(&self) -> &anyhow::Error {
        &self.inner
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.inner)
    }
}

impl fmt::Debug for Error {
    // Debug is what `?` in main would print; keep it the same readable chain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.inner)
    }
}

/// Anything that knows it is the user's fault converts to a usage error;
/// everything else defaults to runtime. Commands call this instead of `?`
/// on errors whose class is decided by their type.
pub trait Classify {
    fn is_usage(&self) -> bool;
}

/// Prints an error to stderr: the chain on one line, then any multi-line
/// detail (configuration problems list one per line) and hints.
pub fn report(err: &Error) {
    let text = format!("{:#}", err.inner);
    eprintln!("error: {text}");
    if let Some(hint) = hint_for(err) {
        eprintln!("hint: {hint}");
    }
}

fn hint_for(err: &Error) -> Option<&'static str> {
    match err.kind {
        ErrorKind::Usage => None,
        ErrorKind::Runtime => {
            if err.inner.chain().any(|e| {
                e.downcast_ref::<crate::store::StoreError>()
                    .is_some_and(|s| s.is_race())
            }) {
                Some(
                    "another writer updated the evidence branch at the same time; run again to rebase on its work",
                )
            } else {
                None
            }
        }
    }
}
