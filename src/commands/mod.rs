//! One module per subcommand: orchestration only (load config, open the
//! store, call the domain modules, print). Errors get their exit class
//! here: configuration and usage problems are 2, the rest 3.

mod approve;
mod controls;
mod export;
pub(crate) mod gaps;
mod init;
mod packet;
mod propose;
mod sync;
mod verify;

use crate::cli::{Cli, Command};
use crate::config::{self, CONFIG_FILE, Config, ConfigError};
use crate::error::{Error, ExitStatus};
use std::path::PathBuf;

pub fn dispatch(cli: Cli) -> Result<ExitStatus, Error> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Sync(a) => sync::run(g, a, false),
        Command::Run(a) => sync::run(g, a, true),
        Command::Verify(a) => verify::run(g, a),
        Command::Gaps(a) => gaps::run(g, a),
        Command::Packet(a) => packet::run(g, a),
        Command::Propose(a) => propose::run(g, a),
        Command::Approve(a) => approve::run(g, a),
        Command::Export(crate::cli::ExportCommand::Gdrive(a)) => export::gdrive(g, a),
        Command::Controls(c) => controls::run(g, c),
    }
}

/// The configuration path: `--config`, else `<repo>/cleartrail.yml`.
pub(crate) fn config_path(g: &crate::cli::GlobalArgs) -> PathBuf {
    g.config.clone().unwrap_or_else(|| g.repo.join(CONFIG_FILE))
}

pub(crate) fn load_config(g: &crate::cli::GlobalArgs) -> Result<Config, Error> {
    let path = config_path(g);
    config::load(&path).map_err(|e| match e {
        ConfigError::Read { .. } => Error::runtime(e),
        _ => Error::usage(e),
    })
}

/// The configuration when one is given or present in the repository.
/// Read-only commands do not need the sources to exist here.
pub(crate) fn optional_config(g: &crate::cli::GlobalArgs) -> Result<Option<Config>, Error> {
    let path = config_path(g);
    if g.config.is_none() && !path.exists() {
        return Ok(None);
    }
    config::load_for_reading(&path)
        .map(Some)
        .map_err(|e| match e {
            ConfigError::Read { .. } => Error::runtime(e),
            _ => Error::usage(e),
        })
}

/// Catalogs (with the repository's overrides) and the scope they give.
pub(crate) fn catalogs_and_scope(
    config: Option<&Config>,
) -> Result<(crate::controls::Catalogs, crate::controls::evaluate::Scope), Error> {
    use crate::controls::{Catalogs, evaluate::Scope};
    let catalogs = match config {
        Some(c) => Catalogs::with_overrides(&c.controls_dir()),
        None => Catalogs::builtin(),
    }
    .map_err(|e| match e {
        crate::controls::CatalogError::Read { .. } => Error::runtime(e),
        other => Error::usage(other),
    })?;
    let scope = match config {
        Some(c) => {
            Scope::from_config(&catalogs, c).map_err(|p| Error::usage(ConfigError::Invalid(p)))?
        }
        None => Scope::all(&catalogs),
    };
    Ok((catalogs, scope))
}

/// Parses `--period`, else the configured period, else the current year.
pub(crate) fn resolve_period(
    arg: Option<&str>,
    config: Option<&Config>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<crate::period::Period, Error> {
    match arg {
        Some(s) => s
            .parse::<crate::period::Period>()
            .map_err(|e| Error::usage(anyhow::Error::new(e).context("--period"))),
        None => Ok(config
            .and_then(|c| c.period.clone())
            .unwrap_or_else(|| crate::period::Period::year_of(now))),
    }
}

/// Restricts the scope to one framework (`--framework`).
pub(crate) fn restrict_framework(
    scope: &mut crate::controls::evaluate::Scope,
    catalogs: &crate::controls::Catalogs,
    framework: Option<&str>,
) -> Result<(), Error> {
    if let Some(f) = framework {
        if catalogs.framework(f).is_none() {
            let known: Vec<&str> = catalogs.frameworks.iter().map(|f| f.id.as_str()).collect();
            return Err(Error::usage(anyhow::anyhow!(
                "--framework {f}: unknown framework (known: {})",
                known.join(", ")
            )));
        }
        scope.frameworks.retain(|x| x == f);
        if scope.frameworks.is_empty() {
            scope.frameworks.push(f.to_string());
        }
    }
    Ok(())
}

/// The evidence branch to read: `--rev`, else the configured branch,
/// locally or as a remote-tracking branch (`origin/<branch>` first), so a
/// plain `git clone` of the evidence repository works as it is. `None`
/// when the branch exists nowhere.
pub(crate) fn evidence_rev(
    store: &crate::store::Store,
    rev: Option<&str>,
    config: Option<&Config>,
) -> Result<Option<String>, Error> {
    if let Some(r) = rev {
        return Ok(Some(r.to_string()));
    }
    let branch = evidence_branch(config);
    if store.branch_tip(&branch).map_err(Error::runtime)?.is_some() {
        return Ok(Some(branch));
    }
    let repo = store.repo();
    let mut remotes: Vec<String> = repo
        .remotes()
        .map(|r| r.iter().flatten().flatten().map(str::to_string).collect())
        .unwrap_or_default();
    // `origin` first, then the others in name order.
    remotes.sort_by_key(|r| (r != "origin", r.clone()));
    Ok(remotes
        .into_iter()
        .map(|r| format!("refs/remotes/{r}/{branch}"))
        .find(|name| repo.refname_to_id(name).is_ok()))
}

/// The configured evidence branch name.
pub(crate) fn evidence_branch(config: Option<&Config>) -> String {
    config
        .map(|c| c.branch.clone())
        .unwrap_or_else(|| config::DEFAULT_BRANCH.to_string())
}

/// Like [`evidence_rev`], for commands that need the branch to exist.
pub(crate) fn require_evidence_rev(
    store: &crate::store::Store,
    rev: Option<&str>,
    config: Option<&Config>,
) -> Result<String, Error> {
    evidence_rev(store, rev, config)?.ok_or_else(|| {
        let branch = evidence_branch(config);
        Error::usage(anyhow::anyhow!(
            "the evidence branch `{branch}` does not exist in {}, locally or as a remote-tracking branch (run `cleartrail run` to create it, or `git fetch origin {branch}`)",
            store.path().display()
        ))
    })
}

/// Opens the evidence repository for reading.
pub(crate) fn open_store(g: &crate::cli::GlobalArgs) -> Result<crate::store::Store, Error> {
    crate::store::Store::open(&g.repo).map_err(|e| match e {
        crate::store::StoreError::NotARepository { .. } => Error::usage(e),
        other => Error::runtime(other),
    })
}

/// Pushes `commit` to `branch` of `remote` (fast forward only). For an
/// HTTPS remote on the GitHub server, a token from `env` goes with it
/// when git has none configured (`persist-credentials: false`).
pub(crate) fn push_branch(
    store: &crate::store::Store,
    remote: &str,
    commit: git2::Oid,
    branch: &str,
    env: &crate::connectors::github::client::GithubEnv,
) -> Result<(), crate::store::PushError> {
    let auth = git_auth(store, remote, env);
    store.push(
        remote,
        commit,
        branch,
        auth.as_ref().map(|(h, t)| (h.as_str(), *t)),
    )
}

/// Fetches `branch` of `remote` with the same credentials as
/// [`push_branch`]; its tip.
pub(crate) fn fetch_branch(
    store: &crate::store::Store,
    remote: &str,
    branch: &str,
    env: &crate::connectors::github::client::GithubEnv,
) -> Result<git2::Oid, crate::store::PushError> {
    let auth = git_auth(store, remote, env);
    store.fetch(remote, branch, auth.as_ref().map(|(h, t)| (h.as_str(), *t)))
}

/// The token git may send, and to which host: only for an HTTPS remote
/// on the GitHub server.
fn git_auth<'e>(
    store: &crate::store::Store,
    remote: &str,
    env: &'e crate::connectors::github::client::GithubEnv,
) -> Option<(String, &'e crate::connectors::http::Secret)> {
    use crate::connectors::github::client::Auth;
    let host = propose::server_url();
    let token = match &env.auth {
        Auth::Token(t) => Some(t),
        // An App's installation token lives inside the API client.
        Auth::App { .. } => None,
    };
    token
        .filter(|_| {
            store
                .remote_url(remote)
                .is_some_and(|u| u.starts_with(&format!("{host}/")))
        })
        .map(|t| (host, t))
}

/// Writes data to stdout. A closed pipe (`cleartrail gaps | head`) ends
/// the output quietly instead of panicking; other failures are logged.
pub(crate) fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        tracing::warn!("writing to stdout: {e}");
    }
}

/// A tokio runtime for commands that talk to sources.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::runtime(anyhow::Error::new(e).context("starting the async runtime")))
}

/// Audit errors a user fixes by editing a file are 2, the rest 3.
pub(crate) fn audit_error(e: crate::audit::AuditError) -> Error {
    if e.is_usage() {
        Error::usage(e)
    } else {
        Error::runtime(e)
    }
}

/// Without a configuration file, the configuration recorded on the
/// evidence branch decides scope, severities and manual mappings, so a
/// plain clone judges exactly as the branch's README does.
fn recorded_config(
    snapshot: &crate::store::Snapshot<'_>,
    config: Option<&crate::config::Config>,
) -> Result<Option<crate::audit::EffectiveConfig>, Error> {
    if config.is_some() {
        return Ok(None);
    }
    let rec = crate::audit::EffectiveConfig::read(snapshot).map_err(Error::runtime)?;
    if rec.is_some() {
        tracing::info!(
            "no configuration file: using the configuration recorded on the evidence branch ({})",
            crate::audit::CONFIG_RECORD_PATH
        );
    }
    Ok(rec)
}

fn restricted(
    mut scope: crate::controls::evaluate::Scope,
    catalogs: &crate::controls::Catalogs,
    framework: Option<&str>,
) -> Result<crate::controls::evaluate::Scope, Error> {
    restrict_framework(&mut scope, catalogs, framework)?;
    Ok(scope)
}

/// Evaluates a snapshot as `gaps` and `packet` do: with the configuration
/// file when there is one, else with the configuration recorded on the
/// branch (so a plain clone judges as the branch's README does).
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate_branch(
    store: &crate::store::Store,
    snapshot: &crate::store::Snapshot<'_>,
    config: Option<&Config>,
    catalogs: &crate::controls::Catalogs,
    scope: &crate::controls::evaluate::Scope,
    framework: Option<&str>,
    period: &crate::period::Period,
    as_of: chrono::NaiveDate,
) -> Result<crate::audit::Audit, Error> {
    use crate::audit::Settings;
    let recorded = recorded_config(snapshot, config)?;
    let rec_scope = recorded
        .as_ref()
        .map(|r| restricted(r.scope(), catalogs, framework))
        .transpose()?;
    let mut settings = match (&recorded, &rec_scope) {
        (Some(r), Some(sc)) => Settings::recorded(catalogs, sc, r, period, as_of),
        _ => Settings::new(catalogs, scope, config, period, as_of),
    };
    // With approvals configured, evidence no verified record approves
    // leaves its controls `unapproved` (gaps and packets; sync's own pages
    // judge the evidence before anyone could have approved it). Records
    // live on the default branch, which the evidence merges into.
    if let Some(a) = config.and_then(|c| c.approvals.as_ref()) {
        let expect = crate::approvals::verify::Expect::new(a).map_err(|e| {
            Error::usage(anyhow::Error::new(e).context("reading what verifies approval records"))
        })?;
        settings.approved = Some(
            crate::approvals::verify::approved_at(store, &a.default_branch, &expect)
                .map_err(|e| Error::runtime(e.context("reading the approval records")))?,
        );
    }
    crate::audit::evaluate(snapshot, None, &settings).map_err(audit_error)
}
