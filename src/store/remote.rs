//! What `propose` needs of git beyond reading and committing: the files
//! that differ between two commits under one folder (the pull request's
//! diff), merge bases, and pushing a commit to a remote branch.
//!
//! Pushing goes through the `git` program rather than libgit2: it speaks
//! every transport and credential helper the runner has set up (the token
//! `actions/checkout` leaves behind, an SSH agent), which libgit2 would
//! each need wiring for. A token ClearTrail was given reaches git through
//! `GIT_CONFIG_*` variables, never the command line, where other processes
//! could read it.

use super::{Store, StoreError};
use crate::connectors::http::Secret;
use git2::Oid;

/// One file that differs under a folder: its path from the root, and its
/// blob before and after (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta {
    pub path: String,
    pub old: Option<Oid>,
    pub new: Option<Oid>,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("`git` could not be started: {0}")]
    Spawn(std::io::Error),
    #[error(
        "the remote branch `{branch}` has commits this repository lacks (someone pushed to it since it was fetched), so nothing was overwritten: fetch it (`git fetch {remote} {branch}`) and run again"
    )]
    Behind { remote: String, branch: String },
    #[error("git push or fetch with {remote} ({branch}) failed: {message}")]
    Failed {
        remote: String,
        branch: String,
        message: String,
    },
}

/// Who moves a branch without committing (adopting, rewinding, fast
/// forwarding), as the reflog records it.
fn reflog_signature() -> Result<git2::Signature<'static>, StoreError> {
    git2::Signature::now("ClearTrail", "cleartrail@users.noreply.github.com")
        .map_err(|e| StoreError::git("building the reflog signature", e))
}

impl Store {
    /// Every file that differs between the trees of `old` and `new` under
    /// the top-level folder `folder` (`""`: everywhere; `None` on a side:
    /// no files), in path
    /// order. Unchanged subtrees are skipped by id, so the cost follows
    /// the size of the change, not of the repository.
    pub fn diff_under(
        &self,
        old: Option<Oid>,
        new: Option<Oid>,
        folder: &str,
    ) -> Result<Vec<Delta>, StoreError> {
        let sub = |c: Option<Oid>| -> Result<Option<git2::Tree<'_>>, StoreError> {
            let Some(c) = c else { return Ok(None) };
            let root = self.commit_tree(c)?;
            let root = self
                .repo
                .find_tree(root)
                .map_err(|e| StoreError::git(format!("reading the tree of {c}"), e))?;
            if folder.is_empty() {
                return Ok(Some(root));
            }
            match root.get_name(folder) {
                Some(e) if e.kind() == Some(git2::ObjectType::Tree) => self
                    .repo
                    .find_tree(e.id())
                    .map(Some)
                    .map_err(|e| StoreError::git(format!("reading {folder}/ of {c}"), e)),
                _ => Ok(None),
            }
        };
        let (a, b) = (sub(old)?.map(|t| t.id()), sub(new)?.map(|t| t.id()));
        if a == b {
            return Ok(Vec::new());
        }
        let odb = self
            .repo
            .odb()
            .map_err(|e| StoreError::git("opening the object database", e))?;
        let mut found = Vec::new();
        super::snapshot::diff_trees(&odb, folder, a, b, &mut found, 1)?;
        let mut out: Vec<Delta> = found
            .into_iter()
            .map(|(path, old, new)| Delta { path, old, new })
            .collect();
        out.sort_by(|x, y| x.path.cmp(&y.path));
        Ok(out)
    }

    /// Moves `branch` back from `from` to `to` (a commit made by this
    /// process that could not be published), if nobody moved it since.
    pub fn rewind(&self, branch: &str, from: Oid, to: Oid) -> Result<(), StoreError> {
        let sig = reflog_signature()?;
        self.move_branch(branch, Some(from), to, &sig, "withdrawn: not published")
    }

    /// The remote-tracking branch a missing local `branch` continues:
    /// `origin`'s first, then the other remotes' in name order.
    pub fn tracking_tip(&self, branch: &str) -> Result<Option<(String, Oid)>, StoreError> {
        let mut tips = self.remote_tips(branch)?;
        tips.sort_by_key(|(name, _)| !name.starts_with("refs/remotes/origin/"));
        Ok(tips.into_iter().next())
    }

    /// When `branch` does not exist here but a remote has it (a runner
    /// that checked out the default branch with full history), creates it
    /// at the remote-tracking tip, so that the run continues that history
    /// instead of starting another. The name it came from, if it did.
    pub fn adopt_remote(&self, branch: &str) -> Result<Option<String>, StoreError> {
        if self.branch_tip(branch)?.is_some() {
            return Ok(None);
        }
        let Some((name, tip)) = self.tracking_tip(branch)? else {
            return Ok(None);
        };
        let sig = reflog_signature()?;
        self.move_branch(branch, None, tip, &sig, &format!("continued from {name}"))?;
        Ok(Some(name))
    }

    /// The best common ancestor of two commits, if they share history.
    pub fn merge_base(&self, a: Oid, b: Oid) -> Result<Option<Oid>, StoreError> {
        match self.repo.merge_base(a, b) {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(StoreError::git(
                format!("finding the merge base of {a} and {b}"),
                e,
            )),
        }
    }

    /// Whether `a` is `b` or descends from it.
    pub fn contains(&self, a: Oid, b: Oid) -> Result<bool, StoreError> {
        if a == b {
            return Ok(true);
        }
        self.repo
            .graph_descendant_of(a, b)
            .map_err(|e| StoreError::git(format!("comparing {a} with {b}"), e))
    }

    /// The URL of a configured remote.
    pub fn remote_url(&self, remote: &str) -> Option<String> {
        self.repo
            .find_remote(remote)
            .ok()
            .and_then(|r| r.url().ok().map(str::to_string))
    }

    /// The tip of `refs/remotes/<remote>/<branch>`, if fetched.
    pub fn remote_tip(&self, remote: &str, branch: &str) -> Result<Option<Oid>, StoreError> {
        self.ref_tip(&format!("refs/remotes/{remote}/{branch}"))
    }

    /// Pushes `commit` to `refs/heads/<branch>` of `remote`, as a fast
    /// forward only: a remote branch that moved on is never overwritten.
    /// With `auth` (`host`, token), HTTPS requests to that host carry the
    /// token, unless git is already configured with an authorization
    /// header of its own (two would be refused).
    pub fn push(
        &self,
        remote: &str,
        commit: Oid,
        branch: &str,
        auth: Option<(&str, &Secret)>,
    ) -> Result<(), PushError> {
        let mut cmd = self.git_remote_command(auth);
        cmd.args(["push", "--porcelain", remote])
            .arg(format!("{commit}:refs/heads/{branch}"));
        self.run_remote(cmd, remote, branch, auth)
    }

    /// Fetches `branch` of `remote` into `refs/remotes/<remote>/<branch>`
    /// and returns its tip.
    pub fn fetch(
        &self,
        remote: &str,
        branch: &str,
        auth: Option<(&str, &Secret)>,
    ) -> Result<Oid, PushError> {
        let mut cmd = self.git_remote_command(auth);
        cmd.args(["fetch", "--quiet", remote]).arg(format!(
            "+refs/heads/{branch}:refs/remotes/{remote}/{branch}"
        ));
        self.run_remote(cmd, remote, branch, auth)?;
        self.remote_tip(remote, branch)
            .ok()
            .flatten()
            .ok_or_else(|| PushError::Failed {
                remote: remote.to_string(),
                branch: branch.to_string(),
                message: "fetched, but no remote-tracking branch was written".into(),
            })
    }

    /// Moves `branch` forward to `to` when it is an ancestor of it (a
    /// checkout of an older commit catching up with its remote); `false`
    /// when the branch has commits `to` lacks.
    pub fn fast_forward(&self, branch: &str, to: Oid) -> Result<bool, StoreError> {
        let Some(tip) = self.branch_tip(branch)? else {
            return Ok(false);
        };
        if tip == to {
            return Ok(true);
        }
        if !self.contains(to, tip)? {
            return Ok(false);
        }
        let sig = reflog_signature()?;
        self.move_branch(branch, Some(tip), to, &sig, "fast-forward to the remote")?;
        Ok(true)
    }

    /// `git` with the token for HTTPS requests to `auth`'s host, unless
    /// git is configured with an authorization header of its own (two
    /// would be refused).
    fn git_remote_command(&self, auth: Option<(&str, &Secret)>) -> std::process::Command {
        let mut cmd = std::process::Command::new("git");
        // From the work tree when there is one: git resolves a relative
        // remote URL against it.
        cmd.arg("-C")
            .arg(self.repo.workdir().unwrap_or(self.repo.path()))
            // Never wait for a password on a terminal nobody watches.
            .env("GIT_TERMINAL_PROMPT", "0");
        if let Some((host, token)) = auth
            && !self.has_auth_header()
        {
            use base64::Engine as _;
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("x-access-token:{}", token.expose()));
            let n: usize = std::env::var("GIT_CONFIG_COUNT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            cmd.env("GIT_CONFIG_COUNT", (n + 1).to_string())
                .env(
                    format!("GIT_CONFIG_KEY_{n}"),
                    format!("http.{host}/.extraheader"),
                )
                .env(
                    format!("GIT_CONFIG_VALUE_{n}"),
                    format!("AUTHORIZATION: basic {basic}"),
                );
        }
        cmd
    }

    fn run_remote(
        &self,
        mut cmd: std::process::Command,
        remote: &str,
        branch: &str,
        auth: Option<(&str, &Secret)>,
    ) -> Result<(), PushError> {
        let out = cmd.output().map_err(PushError::Spawn)?;
        if out.status.success() {
            return Ok(());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("non-fast-forward") || text.contains("[rejected]") {
            return Err(PushError::Behind {
                remote: remote.to_string(),
                branch: branch.to_string(),
            });
        }
        let mut message: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "Done")
            .collect::<Vec<_>>()
            .join("; ");
        if let Some((_, token)) = auth {
            // git does not print headers, but a token in a remote URL
            // would show in its messages.
            message = message.replace(token.expose(), "***");
        }
        Err(PushError::Failed {
            remote: remote.to_string(),
            branch: branch.to_string(),
            message,
        })
    }

    /// Whether git's configuration already sends an authorization header
    /// (`actions/checkout` leaves one unless told not to).
    fn has_auth_header(&self) -> bool {
        let Ok(cfg) = self.repo.config() else {
            return false;
        };
        let Ok(mut entries) = cfg.entries(Some(r"^http\..*extraheader$")) else {
            return false;
        };
        let mut found = false;
        while let Some(Ok(e)) = entries.next() {
            if e.value()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("authorization"))
            {
                found = true;
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Author, ChangeSet, CommitOutcome, Store};

    fn commit(store: &Store, parent: Option<git2::Oid>, cs: &ChangeSet) -> git2::Oid {
        let author = Author {
            name: "T".into(),
            email: "t@example.com".into(),
            time: chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
        };
        match store.commit("b", parent, parent, cs, "m", &author).unwrap() {
            CommitOutcome::Committed { commit, .. } => commit,
            other => panic!("{other:?}"),
        }
    }

    /// The files `diff_under` finds are exactly those git's own
    /// `diff-tree -r` lists, with the same ids: additions, changes,
    /// removals, whole new and removed folders, and a name that turned
    /// from a file into a folder.
    #[test]
    fn differences_are_exactly_gits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(dir.path()).unwrap();
        let mut cs = ChangeSet::new();
        for (p, b) in [
            ("e/a/1.json", "1"),
            ("e/a/2.json", "2"),
            ("e/b/3.json", "3"),
            ("e/gone/4.json", "4"),
            ("e/kind", "a file"),
            ("top.md", "t"),
        ] {
            cs.put(p, b.as_bytes().to_vec());
        }
        let one = commit(&store, None, &cs);
        let mut cs = ChangeSet::new();
        cs.put("e/a/2.json", b"2, changed".to_vec());
        cs.put("e/a/5.json", b"5".to_vec());
        cs.put("e/new/6.json", b"6".to_vec());
        cs.delete("e/gone/4.json");
        cs.delete("e/b/3.json");
        cs.delete("e/kind");
        cs.put("e/kind/7.json", b"7".to_vec());
        let two = commit(&store, Some(one), &cs);
        let out = std::process::Command::new("git")
            .args(["diff-tree", "-r", "--no-renames", "--raw", "--abbrev=40"])
            .arg(one.to_string())
            .arg(two.to_string())
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let zero = |s: &str| (s.chars().any(|c| c != '0')).then(|| s.to_string());
        let mut git: Vec<(String, Option<String>, Option<String>)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let (meta, path) = l.split_once('\t').unwrap();
                let f: Vec<&str> = meta.split(' ').collect();
                (path.to_string(), zero(f[2]), zero(f[3]))
            })
            .collect();
        git.sort();
        let ours: Vec<(String, Option<String>, Option<String>)> = store
            .diff_under(Some(one), Some(two), "")
            .unwrap()
            .into_iter()
            .map(|d| {
                (
                    d.path,
                    d.old.map(|o| o.to_string()),
                    d.new.map(|o| o.to_string()),
                )
            })
            .collect();
        assert_eq!(ours.len(), 7, "{ours:?}");
        assert_eq!(ours, git);
        // Under one folder, and nothing when both sides are the same.
        let under_e = store.diff_under(Some(one), Some(two), "e").unwrap();
        assert_eq!(under_e.len(), 7);
        assert!(
            store
                .diff_under(Some(two), Some(two), "")
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .diff_under(Some(one), Some(two), "top.md")
                .unwrap()
                .is_empty()
        );
    }
}
