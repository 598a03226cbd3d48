//! Whole-command benchmark: what a user runs, at the size a real
//! organization has. A local git source with N first-parent commits in the
//! period (100,000 by default; `-- --quick` for 10,000, `-- --n N` for any
//! size; `-- --keep` keeps the source and evidence repositories for
//! profiling; `-- --runs R` repeats each measure R times, 3 by default),
//! then the `cleartrail` binary itself:
//!
//! 1. rounds of: a cold `run` into a new evidence repository, a `run` with
//!    nothing new (must make no commit), `gaps`, `packet --out`, `verify`,
//!    `propose --dry-run` (the pull request of every artifact);
//! 2. 100 new commits in the source, then rounds of: a cold `run` of the
//!    grown source into a scratch repository, and a `run` after the 100
//!    new commits (each from a copy of the same repository);
//! 3. `git fast-import` of the same evidence files as the first cold run
//!    wrote, as the yardstick for writing that many objects.
//!
//! Each is timed (wall clock) with its peak RSS (from `wait4`'s rusage).
//! A shared 2-core machine drifts by 20-40% over minutes, so a ratio to
//! the cold run is taken within each round, from measures made back to
//! back; the table gives the median wall time (and the range), the highest
//! peak RSS, each round's ratio and their median. Repeated cold runs and
//! repeated runs after 100 new commits must give the same tree. Run with
//! `cargo bench --bench run`. It also reports the largest folder and the
//! largest file on the evidence branch (GitHub lists 1,000 entries).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cleartrail");
/// 2025-01-01T00:00:00Z: the period is the calendar year 2025.
const YEAR_START: i64 = 1_735_689_600;

#[path = "support/measure.rs"]
mod measure;
use measure::{Measured, measure};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Appends `count` first-parent commits (numbered from `from`) to the
/// source's `main` with `git fast-import`: squash-merge style subjects
/// (`... (#N)`), one small file changed each, dates spread over 2025.
fn add_commits(src: &Path, from: usize, count: usize, total: usize) {
    let mut stream = Vec::new();
    for i in from..from + count {
        // Spread evenly over the year, in order.
        let t = YEAR_START + (i as i64) * (364 * 86_400) / (total as i64);
        let msg = format!(
            "Update service module {i} (#{})\n\nReviewed-by: Lead <lead@example.com>\n",
            i + 1
        );
        let body = format!("value {i}\n");
        write!(
            stream,
            "commit refs/heads/main\nauthor Dev {a} <dev{a}@example.com> {t} +0000\ncommitter Dev {a} <dev{a}@example.com> {t} +0000\ndata {}\n{msg}",
            msg.len(),
            a = i % 97
        )
        .unwrap();
        if i == from && from > 0 {
            writeln!(stream, "from refs/heads/main^0").unwrap();
        }
        write!(
            stream,
            "M 100644 inline src/m{}.txt\ndata {}\n{body}\n",
            i % 500,
            body.len()
        )
        .unwrap();
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(src)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success());
}

/// Every blob of a tree, as (path, bytes).
fn tree_files(repo: &Path, rev: &str) -> Vec<(String, Vec<u8>)> {
    let r = git2::Repository::open(repo).unwrap();
    let tree = r.revparse_single(rev).unwrap().peel_to_tree().unwrap();
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            let b = r.find_blob(e.id()).unwrap();
            out.push((format!("{dir}{}", e.name().unwrap()), b.content().to_vec()));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

/// `git fast-import` of the same files as one commit into a new repository.
fn fast_import(files: &[(String, Vec<u8>)], dir: &Path) -> Duration {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "--bare"]);
    let mut stream = Vec::with_capacity(files.iter().map(|f| f.1.len() + 100).sum());
    write!(
        stream,
        "commit refs/heads/evidence\ncommitter b <b@example.com> 1790000000 +0000\ndata 2\nx\n"
    )
    .unwrap();
    for (p, b) in files {
        write!(stream, "M 100644 inline {p}\ndata {}\n", b.len()).unwrap();
        stream.extend_from_slice(b);
        stream.push(b'\n');
    }
    let start = Instant::now();
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success());
    start.elapsed()
}

/// The largest folder (entries) and the largest file (bytes) of a tree.
fn extremes(files: &[(String, Vec<u8>)]) -> ((String, usize), (String, usize)) {
    let mut dirs: std::collections::HashMap<String, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for (p, _) in files {
        let parts: Vec<&str> = p.split('/').collect();
        for i in 0..parts.len() {
            let dir = parts[..i].join("/");
            dirs.entry(dir).or_default().insert(parts[i].to_string());
        }
    }
    let folder = dirs
        .into_iter()
        .map(|(d, s)| (d, s.len()))
        .max_by_key(|(d, n)| (*n, d.clone()))
        .unwrap_or_default();
    let file = files
        .iter()
        .map(|(p, b)| (p.clone(), b.len()))
        .max_by_key(|(p, n)| (*n, p.clone()))
        .unwrap_or_default();
    (folder, file)
}

fn cleartrail(cfg: &Path, repo: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--config")
        .arg(cfg)
        .arg("--repo")
        .arg(repo)
        .arg("-q")
        // Pinned "now": as-of dates and commit times do not vary.
        .env("SOURCE_DATE_EPOCH", "1767225600");
    c
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Repeats of one measure.
struct Runs {
    walls: Vec<Duration>,
    peak_rss_kib: i64,
}

impl Runs {
    fn of(all: &[Measured]) -> Runs {
        let mut walls: Vec<Duration> = all.iter().map(|m| m.wall).collect();
        walls.sort();
        Runs {
            walls,
            peak_rss_kib: all.iter().map(|m| m.peak_rss_kib).max().unwrap_or(0),
        }
    }

    fn median(&self) -> f64 {
        secs(self.walls[self.walls.len() / 2])
    }

    fn range(&self) -> String {
        format!(
            "{:.2}-{:.2}",
            secs(self.walls[0]),
            secs(self.walls[self.walls.len() - 1])
        )
    }
}

/// A copy of a repository (to replay the same run from the same state).
fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut n = 100_000usize;
    if args.iter().any(|a| a == "--quick") {
        n = 10_000;
    }
    if let Some(i) = args.iter().position(|a| a == "--n") {
        n = args[i + 1].parse().expect("--n N");
    }
    let work: PathBuf = tempfile::tempdir().unwrap().keep();
    let src = work.join("source");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    eprintln!("building a source repository of {n} commits...");
    add_commits(&src, 0, n, n + 100);
    git(&src, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let cfg = work.join("cleartrail.yml");
    std::fs::write(
        &cfg,
        "version: 1\nperiod: 2025\nsources:\n  app:\n    type: git\n    path: source\n    branch: main\n",
    )
    .unwrap();
    let ev = work.join("evidence");
    let branch = "refs/heads/cleartrail/evidence";
    // The evidence repository has a default branch, as on GitHub: the
    // evidence branch forks from it and `propose` compares with it.
    std::fs::create_dir_all(&ev).unwrap();
    git(&ev, &["init", "-q", "-b", "main"]);
    git(
        &ev,
        &[
            "-c",
            "user.name=B",
            "-c",
            "user.email=b@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "Start the evidence repository",
        ],
    );

    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .map_or(3, |i| args[i + 1].parse().expect("--runs R"));
    assert!(runs >= 1, "--runs R needs R >= 1");
    let tree = |repo: &Path| git(repo, &["rev-parse", &format!("{branch}^{{tree}}")]);

    // Every measured command runs before this process reads the evidence
    // into memory: a child's peak RSS (from wait4) starts from the
    // parent's when it is spawned.
    //
    // The machine's speed drifts by 20-40% over minutes, so each ratio is
    // taken within a round: a cold run, then the measures compared with
    // it, back to back. The table gives the median of the rounds' ratios.
    let packet_dir = work.join("packet");
    let readers = |ev: &Path| -> [Measured; 4] {
        let gaps = measure(&mut cleartrail(&cfg, ev, &["gaps", "--format", "json"]));
        if packet_dir.exists() {
            std::fs::remove_dir_all(&packet_dir).unwrap();
        }
        let packet = measure(&mut cleartrail(
            &cfg,
            ev,
            &[
                "packet",
                "--period",
                "2025",
                "--out",
                packet_dir.to_str().unwrap(),
            ],
        ));
        let verify =
            measure(Command::new(BIN).args(["verify", "--repo", ev.to_str().unwrap(), "-q"]));
        assert!(
            verify.stdout.contains(" 0 findings"),
            "verify: {}\n{}",
            verify.stdout,
            verify.stderr
        );
        // The pull request of every artifact: its diff, the evaluation,
        // the body and the listing pages (no push, no API: --dry-run).
        let propose = measure(&mut cleartrail(
            &cfg,
            ev,
            &[
                "propose",
                "--dry-run",
                "--github-repository",
                "acme/evidence",
            ],
        ));
        assert!(
            propose.stdout.contains("The full listing"),
            "propose: {}\n{}",
            propose.stdout,
            propose.stderr
        );
        [gaps, packet, verify, propose]
    };
    eprintln!("{runs} rounds of: cold run, run with nothing new, gaps, packet, verify...");
    let mut colds = Vec::new();
    let (mut agains, mut gapss, mut packets, mut verifies, mut proposes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tip1 = String::new();
    for k in 0..runs {
        let into = if k == 0 {
            ev.clone()
        } else {
            work.join(format!("evidence-{k}"))
        };
        colds.push(measure(&mut cleartrail(&cfg, &into, &["run"])));
        if k == 0 {
            tip1 = git(&ev, &["rev-parse", branch]);
        } else {
            assert_eq!(tree(&into), tree(&ev), "two cold runs gave different trees");
            std::fs::remove_dir_all(&into).unwrap();
        }
        agains.push(measure(&mut cleartrail(&cfg, &ev, &["run"])));
        let tip = git(&ev, &["rev-parse", branch]);
        assert_eq!(tip1, tip, "a run with nothing new made a commit");
        let [g, p, v, pr] = readers(&ev);
        gapss.push(g);
        packets.push(p);
        verifies.push(v);
        proposes.push(pr);
    }

    eprintln!(
        "{runs} rounds of: cold run and a run after 100 new commits (from a copy of the same repository)..."
    );
    add_commits(&src, n, 100, n + 100);
    let before = work.join("evidence-before-100");
    copy_dir(&ev, &before);
    let mut colds_after = Vec::new();
    let mut hundreds = Vec::new();
    let mut after = None;
    for k in 0..runs {
        let scratch = work.join(format!("evidence-cold-{k}"));
        colds_after.push(measure(&mut cleartrail(&cfg, &scratch, &["run"])));
        std::fs::remove_dir_all(&scratch).unwrap();
        if k > 0 {
            copy_dir(&before, &ev);
        }
        hundreds.push(measure(&mut cleartrail(&cfg, &ev, &["run"])));
        let tip = git(&ev, &["rev-parse", branch]);
        assert_ne!(tip1, tip, "100 new commits made no commit");
        let t = tree(&ev);
        assert!(
            after.get_or_insert_with(|| t.clone()) == &t,
            "two runs after the same 100 commits gave different trees"
        );
    }
    std::fs::remove_dir_all(&before).unwrap();

    // The yardstick: the same files as the cold run wrote, through
    // `git fast-import`.
    let fi = {
        let files = tree_files(&ev, tip1.trim());
        let mut walls: Vec<Duration> = (0..runs)
            .map(|k| {
                let dir = work.join(format!("fast-import-{k}"));
                let d = fast_import(&files, &dir);
                std::fs::remove_dir_all(&dir).unwrap();
                d
            })
            .collect();
        walls.sort();
        walls
    };
    let fi_median = secs(fi[fi.len() / 2]);
    let final_files = tree_files(&ev, branch);
    let ((dir, entries), (file, size)) = extremes(&final_files);
    let total: usize = final_files.iter().map(|f| f.1.len()).sum();

    let cold = Runs::of(&colds);
    let c = cold.median();
    println!(
        "\nwhole-command benchmark: {n} commits in the period, {} files ({:.1} MiB) on the evidence branch; {runs} rounds",
        final_files.len(),
        total as f64 / 1048576.0
    );
    println!(
        "| measure | wall (median) | range | peak RSS (max) | ratio (median of rounds) | each round | target |"
    );
    println!("|---|--:|--:|--:|--:|---|---|");
    /// What a row's ratio is taken against.
    enum Base<'a> {
        FastImport,
        Cold(&'a [Measured]),
        None,
    }
    let row = |name: &str, m: &[Measured], base: Base<'_>, target: &str| {
        let r = Runs::of(m);
        let (ratio, each) = match base {
            Base::Cold(base) => {
                let mut each: Vec<f64> = m
                    .iter()
                    .zip(base)
                    .map(|(x, b)| 100.0 * secs(x.wall) / secs(b.wall))
                    .collect();
                let list = each
                    .iter()
                    .map(|e| format!("{e:.1}%"))
                    .collect::<Vec<_>>()
                    .join(", ");
                each.sort_by(f64::total_cmp);
                (format!("{:.1}% of cold", each[each.len() / 2]), list)
            }
            Base::FastImport => (format!("{:.2}x fast-import", c / fi_median), String::new()),
            Base::None => (String::new(), String::new()),
        };
        println!(
            "| {name} | {:.2} s | {} s | {} MiB | {ratio} | {each} | {target} |",
            r.median(),
            r.range(),
            r.peak_rss_kib / 1024
        );
    };
    row(
        "cold run",
        &colds,
        Base::FastImport,
        "<= 1.5x fast-import, RSS <= 300 MiB",
    );
    println!(
        "| git fast-import, same files | {fi_median:.2} s | {:.2}-{:.2} s | | | | |",
        secs(fi[0]),
        secs(fi[fi.len() - 1])
    );
    row(
        "cold run, 100 more commits",
        &colds_after,
        Base::None,
        "RSS <= 300 MiB; the base of the next row",
    );
    row(
        "run, 100 new commits",
        &hundreds,
        Base::Cold(&colds_after),
        "<= 15%",
    );
    for (name, m, target) in [
        ("run, nothing new", &agains, "<= 10%, no commit"),
        ("gaps", &gapss, "<= 15%"),
        ("packet", &packets, "<= 15%"),
        ("verify", &verifies, "<= 15%"),
        (
            "propose --dry-run, every artifact new",
            &proposes,
            "body <= 65,536 chars",
        ),
    ] {
        row(name, m, Base::Cold(&colds), target);
    }
    println!("largest folder: {dir}/ with {entries} entries (limit 1,000)");
    println!("largest file: {file} with {size} bytes (limit 1 MB)");
    if args.iter().any(|a| a == "--keep") {
        eprintln!("kept for profiling: {}", work.display());
    } else {
        std::fs::remove_dir_all(&work).ok();
    }
}
