//! `cleartrail.yml`: parsed in two phases.
//!
//! 1. [`raw`]: the file is read as a bounded text (never opening a FIFO or
//!    device, at most [`crate::yaml::Bounds::CONFIG`] bytes), walked
//!    within the YAML bounds, then parsed by serde_yaml; a syntax or shape
//!    error carries serde_yaml's line and column. Unknown and repeated keys
//!    are collected as problems, not stopped at.
//! 2. [`validate`]: raw values into a [`Config`] that cannot be invalid
//!    (periods parsed, paths resolved against the config file's folder and
//!    checked to exist). Every problem is reported, each with
//!    `file:line:column` found through [`locate`], and a hint.

pub mod locate;
pub mod raw;
mod validate;

use crate::period::Period;
use std::fmt;
use std::path::{Path, PathBuf};

pub use validate::validate;

/// The file name looked for in the evidence repository.
pub const CONFIG_FILE: &str = "cleartrail.yml";
/// The branch evidence is committed to unless configured otherwise.
pub const DEFAULT_BRANCH: &str = "cleartrail/evidence";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// The folder relative paths are resolved against.
    pub dir: PathBuf,
    /// The configured period, if any (the command line overrides it).
    pub period: Option<Period>,
    /// The evidence branch.
    pub branch: String,
    /// Sources, in name order.
    pub sources: Vec<SourceConfig>,
    /// Frameworks in scope; `None` means every catalog.
    pub frameworks: Option<Vec<Located<String>>>,
    /// Controls (or whole categories) declared out of scope, with reasons:
    /// the statement of applicability.
    pub out_of_scope: Vec<OutOfScope>,
    /// Severity overrides per check code.
    pub check_severity: std::collections::BTreeMap<String, crate::diag::Level>,
    /// The approval policy and signing, when configured.
    pub approvals: Option<ApprovalsConfig>,
}

/// Who approves evidence pull requests, and how their records are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalsConfig {
    /// `owner/name`.
    pub repository: String,
    pub repository_id: u64,
    pub default_branch: String,
    /// Lower-case logins.
    pub users: Vec<String>,
    /// (organization, team slug).
    pub teams: Vec<(String, String)>,
    pub required: u32,
    pub signing: Signing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// Sigstore keyless, from the approve workflow (its path).
    Keyless(Keyless),
    /// A key of one's own; the public key file that verifies.
    Key { public_key: PathBuf },
}

/// Where keyless signing gets its certificate and log entry, and what
/// verifies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyless {
    pub workflow: String,
    pub fulcio_url: String,
    pub rekor_url: String,
    pub tsa_url: Option<String>,
    /// `None`: the public good instance's root.
    pub trusted_root: Option<PathBuf>,
}

pub const PUBLIC_FULCIO: &str = "https://fulcio.sigstore.dev";
pub const PUBLIC_REKOR: &str = "https://rekor.sigstore.dev";

impl ApprovalsConfig {
    /// The certificate identity records must carry: the approve
    /// workflow of this repository on its default branch.
    pub fn workflow_identity(&self) -> Option<String> {
        match &self.signing {
            Signing::Keyless(k) => Some(format!(
                "https://github.com/{}/{}@refs/heads/{}",
                self.repository, k.workflow, self.default_branch
            )),
            Signing::Key { .. } => None,
        }
    }

    /// The approvers as a reason names them.
    pub fn described(&self) -> String {
        let mut parts = Vec::new();
        if !self.users.is_empty() {
            parts.push(format!("users {}", self.users.join(", ")));
        }
        if !self.teams.is_empty() {
            let t: Vec<String> = self.teams.iter().map(|(o, s)| format!("{o}/{s}")).collect();
            parts.push(format!("teams {}", t.join(", ")));
        }
        if parts.is_empty() {
            "anyone but the author and bots".into()
        } else {
            parts.join("; ")
        }
    }
}

/// A value with the position it was written at, for problems found once
/// catalogs are loaded (an unknown control id in `out_of_scope`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfScope {
    pub framework: String,
    /// A control id or a category id.
    pub id: Located<String>,
    pub reason: String,
}

impl Config {
    /// A problem at a located value of this file.
    pub fn problem_at<T>(
        &self,
        at: &Located<T>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Problem {
        Problem {
            file: self.file.display().to_string(),
            line: at.line,
            col: at.col,
            message: message.into(),
            hint,
        }
    }

    /// Folder of the evidence repository's own catalog overrides.
    pub fn controls_dir(&self) -> PathBuf {
        self.dir.join("controls")
    }

    /// Folder of the evidence repository's own templates.
    pub fn templates_dir(&self) -> PathBuf {
        self.dir.join("templates")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Unique name; qualifies object ids of local sources.
    pub name: String,
    pub spec: SourceSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A local git repository.
    Git(GitSpec),
    /// A folder of documents.
    Files(FilesSpec),
    /// The GitHub API (credentials from the environment).
    Github(crate::connectors::github::GithubSpec),
    /// A Jira site (credentials from the environment).
    Jira(crate::connectors::jira::JiraSpec),
    /// Google Drive folders (credentials from the environment).
    Gdrive(crate::connectors::gdrive::GdriveSpec),
}

/// What a `git` source is configured to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSpec {
    pub path: PathBuf,
    /// Branch to read commits from (default: the repository's HEAD).
    pub branch: Option<String>,
    /// SSH `allowed_signers` file verifying SSH signatures.
    pub allowed_signers: Option<PathBuf>,
    /// Armored OpenPGP public keyring verifying GPG signatures.
    pub gpg_keyring: Option<PathBuf>,
}

/// What a `files` source is configured to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesSpec {
    pub path: PathBuf,
    /// Relative paths (files or folders) to leave out.
    pub exclude: Vec<String>,
}

impl SourceSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceSpec::Git(_) => "git",
            SourceSpec::Files(_) => "files",
            SourceSpec::Github(_) => "github",
            SourceSpec::Jira(_) => "jira",
            SourceSpec::Gdrive(_) => "gdrive",
        }
    }
}

/// One problem in a configuration file, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "configuration {path} not found\n  hint: run `cleartrail init` to write a starter, or pass --config FILE"
    )]
    NotFound { path: String },
    /// The path names something that is not a readable configuration
    /// text (a folder, a FIFO, a device, binary or oversized content): a
    /// problem of what the user pointed at, not of the machine.
    #[error(
        "cannot read configuration {path}: it {reason}\n  hint: --config names a YAML text file"
    )]
    Unreadable { path: String, reason: String },
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

fn render_problems(problems: &[Problem]) -> String {
    let mut s = if problems.len() == 1 {
        "invalid configuration:".to_string()
    } else {
        format!("invalid configuration ({} problems):", problems.len())
    };
    for p in problems {
        s.push('\n');
        s.push_str(&p.to_string());
    }
    s
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            _ => &[],
        }
    }
}

/// Reads, parses and validates a configuration file for collecting:
/// source paths must exist.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_mode(path, true)
}

/// Like [`load`] for commands that only read the evidence repository
/// (`verify`, `gaps`, `packet`, `controls`): source paths are resolved but
/// need not exist, as on an auditor's clone.
pub fn load_for_reading(path: &Path) -> Result<Config, ConfigError> {
    load_mode(path, false)
}

fn load_mode(path: &Path, check_paths: bool) -> Result<Config, ConfigError> {
    use crate::yaml::ReadError;
    let display = path.display().to_string();
    let text = match crate::yaml::read_bounded(path, crate::yaml::Bounds::CONFIG.max_bytes) {
        Ok(t) => t,
        Err(ReadError::NotFound) => return Err(ConfigError::NotFound { path: display }),
        Err(e) => {
            return Err(ConfigError::Unreadable {
                path: display,
                reason: e.to_string(),
            });
        }
    };
    load_text(path, &text, check_paths)
}

/// Parses and validates configuration text said to come from `path`.
pub fn load_str(path: &Path, text: &str) -> Result<Config, ConfigError> {
    load_text(path, text, true)
}

/// Like [`load_str`] for reading only: source paths need not exist.
pub fn load_str_for_reading(path: &Path, text: &str) -> Result<Config, ConfigError> {
    load_text(path, text, false)
}

fn load_text(path: &Path, text: &str, check_paths: bool) -> Result<Config, ConfigError> {
    let display = path.display().to_string();
    let raw = match raw::parse(&display, text) {
        Ok(raw) => raw,
        Err(p) => {
            // A value of the wrong type stops serde; unknown and repeated
            // keys are still worth reporting with it, when the text is
            // well-formed and within bounds.
            let mut problems = Vec::new();
            if crate::yaml::check(text, &crate::yaml::Bounds::CONFIG).is_ok() {
                let locs = locate::Locations::parse(text);
                problems = raw::structure_problems(&display, &locs);
            }
            // serde's "duplicate field" is the repeated key already named
            // with both its lines.
            let repeated = p
                .message
                .split("duplicate field `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
                .is_some_and(|field| {
                    problems
                        .iter()
                        .any(|q| q.message.contains(&format!("{field}` is written twice")))
                });
            if !repeated {
                problems.push(p);
            }
            problems.sort_by_key(|p| (p.line, p.col));
            return Err(ConfigError::Invalid(problems));
        }
    };
    let locs = locate::Locations::parse(text);
    let mut problems = raw::structure_problems(&display, &locs);
    let dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    match validate(raw, &display, &dir, &locs, check_paths) {
        Ok(config) if problems.is_empty() => return Ok(config),
        Ok(_) => {}
        Err(more) => problems.extend(more),
    }
    problems.sort_by_key(|p| (p.line, p.col));
    Err(ConfigError::Invalid(problems))
}
