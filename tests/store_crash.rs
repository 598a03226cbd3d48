//! kill -9 at spread-out moments of large commits, including while the
//! repository is first created and while a commit holds the ref lock.
//!
//! The test re-runs its own binary, the same test, as the writer
//! (selected by the environment variable `CLEARTRAIL_STORE_CRASH_WRITER`), which commits
//! round after round to the branch `ev`: round r writes every one of
//! `FILES` files with content that depends on r's parity, plus a `round`
//! file holding r. So the tree after round r is known without replaying
//! history: the parity tree plus the round file. After each kill: `git
//! fsck --full --strict` is clean, the branch holds a complete round, and
//! the next, uninterrupted write succeeds with no manual step and gives
//! the tree an uninterrupted run gives.

mod common;
use common::fsck;

use cleartrail::store::{Author, ChangeSet, CommitOutcome, Store};
use git2::Oid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WRITER_ENV: &str = "CLEARTRAIL_STORE_CRASH_WRITER";
const PAUSE_ENV: &str = "CLEARTRAIL_TEST_PAUSE_IN_REF_LOCK_MS";
/// Large enough for the pack writer, two levels of folders and a commit
/// that takes long enough to be killed in the middle of; small enough for
/// 24 kills in well under a minute of an unoptimized build (20,000 files
/// take about 5 s per round there).
const FILES: usize = 2_500;
const BRANCH: &str = "ev";

fn author() -> Author {
    Author {
        name: "T".into(),
        email: "t@example.com".into(),
        time: chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap(),
    }
}

/// Every file of round `round` except the round marker.
fn round_files(round: u64, cs: &mut ChangeSet) {
    let parity = round % 2;
    for j in 0..FILES {
        cs.put(
            format!("evidence/d{:03}/f{j:05}.json", j % 50),
            format!("{{\"file\":{j},\"parity\":{parity}}}\n").into_bytes(),
        );
    }
}

fn round_of(store: &Store, tip: Option<Oid>) -> u64 {
    match tip {
        None => 0,
        Some(t) => {
            let bytes = store.snapshot(Some(t)).unwrap().read("round").unwrap();
            String::from_utf8(bytes.expect("every commit has a round file"))
                .unwrap()
                .parse()
                .unwrap()
        }
    }
}

/// One round on top of whatever the branch holds. `Ok(round)` written.
fn write_next_round(path: &Path) -> Result<u64, String> {
    let store = Store::open_or_init(path).map_err(|e| e.to_string())?;
    let tip = store.branch_tip(BRANCH).map_err(|e| e.to_string())?;
    let next = round_of(&store, tip) + 1;
    let mut cs = ChangeSet::new();
    round_files(next, &mut cs);
    cs.put("round", next.to_string().into_bytes());
    match store.commit(BRANCH, tip, tip, &cs, &format!("round {next}"), &author()) {
        Ok(CommitOutcome::Committed { .. }) => Ok(next),
        Ok(other) => Err(format!("round {next}: {other:?}")),
        Err(e) => Err(format!("round {next}: {e}")),
    }
}

/// The writer process: rounds until killed.
fn writer(path: &Path) -> ! {
    loop {
        write_next_round(path).unwrap();
    }
}

/// The tree an uninterrupted run has after each round, from a repository
/// of its own: the two parity trees, plus the round file.
struct Reference {
    store: Store,
    parity: [Option<Oid>; 2],
}

impl Reference {
    fn new(dir: &Path) -> Self {
        let store = Store::open_or_init(dir).unwrap();
        let mut parity = [None, None];
        for (p, slot) in parity.iter_mut().enumerate() {
            let mut cs = ChangeSet::new();
            round_files(p as u64, &mut cs);
            *slot = store.write_tree_id(None, &cs).unwrap();
        }
        Reference { store, parity }
    }

    fn tree(&self, round: u64) -> Option<Oid> {
        if round == 0 {
            return None;
        }
        let mut cs = ChangeSet::new();
        cs.put("round", round.to_string().into_bytes());
        self.store
            .write_tree_id(self.parity[(round % 2) as usize], &cs)
            .unwrap()
    }
}

fn spawn_writer(path: &Path, pause_ms: Option<u64>) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "kill_9_at_any_moment_leaves_a_complete_commit_and_the_next_write_converges",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(WRITER_ENV, path)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    match pause_ms {
        Some(ms) => cmd.env(PAUSE_ENV, ms.to_string()),
        None => cmd.env_remove(PAUSE_ENV),
    };
    cmd.spawn().unwrap()
}

/// Waits until `seen` holds or `limit` passes.
fn wait_for(limit: Duration, mut seen: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if seen() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

fn init_dirs(parent: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(parent)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".ev.cleartrail-init-")
        })
        .map(|e| e.path())
        .collect()
}

#[test]
fn kill_9_at_any_moment_leaves_a_complete_commit_and_the_next_write_converges() {
    if let Some(path) = std::env::var_os(WRITER_ENV) {
        writer(Path::new(&path));
    }
    let start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let reference = Reference::new(&dir.path().join("reference"));
    let path = dir.path().join("ev");

    // How long one round takes here, to spread the kills over it.
    let t = Instant::now();
    write_next_round(&path).unwrap();
    let round_time = t.elapsed();
    eprintln!("one round: {round_time:?}");
    std::fs::remove_dir_all(&path).unwrap();

    let mut kills = 0;
    let (mut in_creation, mut in_lock) = (0, 0);
    for i in 0..24u32 {
        let mode = i % 6;
        let child = if mode == 0 {
            // While the repository is created: start from nothing and kill
            // as soon as the temporary repository folder shows up.
            if path.exists() {
                std::fs::remove_dir_all(&path).unwrap();
            }
            let mut child = spawn_writer(&path, None);
            if wait_for(Duration::from_secs(5), || {
                !init_dirs(dir.path()).is_empty() || path.exists()
            }) && !path.exists()
            {
                in_creation += 1;
            }
            child.kill().unwrap();
            child
        } else if mode == 3 {
            // Between taking and releasing the ref lock.
            let mut child = spawn_writer(&path, Some(2_000));
            let lock = path.join(".git/refs/heads/ev.lock");
            assert!(
                wait_for(Duration::from_secs(60), || lock.exists()),
                "the writer never took the ref lock"
            );
            in_lock += 1;
            child.kill().unwrap();
            child
        } else {
            // Anywhere in a round (or two): delays spread over 1.6 rounds.
            let mut child = spawn_writer(&path, None);
            let frac = ((i * 7) % 16) as f64 / 10.0;
            std::thread::sleep(round_time.mul_f64(frac) + Duration::from_millis(5));
            child.kill().unwrap();
            child
        };
        let mut child = child;
        child.wait().unwrap();
        kills += 1;

        fsck(&path);
        let before = if path.join(".git").exists() {
            let store = Store::open(&path).unwrap();
            let tip = store.branch_tip(BRANCH).unwrap();
            let round = round_of(&store, tip);
            let tree = tip.map(|t| store.commit_tree(t).unwrap());
            assert_eq!(
                tree,
                reference.tree(round),
                "kill {i}: round {round} incomplete"
            );
            round
        } else {
            0
        };
        // The next run, uninterrupted, converges with no manual step.
        let written = write_next_round(&path).unwrap_or_else(|e| panic!("kill {i}: {e}"));
        assert_eq!(written, before + 1);
        let store = Store::open(&path).unwrap();
        let tip = store.branch_tip(BRANCH).unwrap().unwrap();
        assert_eq!(
            Some(store.commit_tree(tip).unwrap()),
            reference.tree(written),
            "kill {i}"
        );
    }
    fsck(&path);
    assert!(kills >= 20);
    assert_eq!(in_lock, 4);
    eprintln!(
        "{kills} kills ({in_creation} during creation, {in_lock} inside the ref lock), one round {round_time:?}, in all {:?}",
        start.elapsed()
    );
}
