//! Store write benchmark: 100,000 synthetic artifacts in one commit, then a
//! commit of 100 changed ones, against `git fast-import` writing the same
//! blobs and tree. Run with `cargo bench --bench store` (add `-- --quick`
//! for 10,000 artifacts). Prints the median of three runs of each; the
//! first 100-change commit runs right after the full write (the new pack
//! not yet open), the "warm" figure is the median of ten more after it.

use cleartrail::artifact::{Artifact, DateSpan};
use cleartrail::store::{Author, ChangeSet, CommitOutcome, Store};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn artifact(i: usize, revision: u32) -> Artifact {
    let repo = i / 1000;
    let day =
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + chrono::Days::new((i % 365) as u64);
    Artifact {
        source: "github".into(),
        kind: "pull-request".into(),
        object_id: format!("acme/service-{repo:03}/{i}"),
        url: format!("https://github.com/acme/service-{repo:03}/pull/{i}"),
        title: format!("Change number {i}: update dependency and config"),
        period: Some(DateSpan::day(day)),
        observed: BTreeMap::from([
            ("created".into(), format!("{day}T09:00:00Z")),
            ("merged".into(), format!("{day}T17:30:00Z")),
        ]),
        content: serde_json::json!({
            "number": i,
            "state": "closed",
            "merged": true,
            "author": format!("dev{}", i % 97),
            "base": "main",
            "head_sha": format!("{:040x}", (i as u128) * 7919 + revision as u128),
            "reviews": [{"user": format!("lead{}", i % 13), "state": "APPROVED"}],
            "labels": ["dependencies"],
            "revision": revision,
        }),
        query: "github: merged pull requests".into(),
        shard: None,
        captured: None,
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn author() -> Author {
    Author {
        name: "bench".into(),
        email: "bench@example.com".into(),
        time: chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
    }
}

fn fast_import_stream(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut s = Vec::with_capacity(files.iter().map(|(_, b)| b.len() + 64).sum());
    for (i, (_, bytes)) in files.iter().enumerate() {
        write!(s, "blob\nmark :{}\ndata {}\n", i + 1, bytes.len()).unwrap();
        s.extend_from_slice(bytes);
        s.push(b'\n');
    }
    s.extend_from_slice(b"commit refs/heads/bench\ncommitter bench <bench@example.com> 1790000000 +0000\ndata 5\nbench\n");
    for (i, (path, _)) in files.iter().enumerate() {
        writeln!(s, "M 100644 :{} {path}", i + 1).unwrap();
    }
    s
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 10_000 } else { 100_000 };
    let runs = 3;
    eprintln!("generating {n} artifacts ...");
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let a = artifact(i, 0);
            (a.json_path(), a.to_bytes().0)
        })
        .collect();
    let total_bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let changed: Vec<(String, Vec<u8>)> = (0..100)
        .map(|k| {
            let i = (k * 7919) % n;
            let a = artifact(i, 1);
            (a.json_path(), a.to_bytes().0)
        })
        .collect();

    let mut full = Vec::new();
    let mut incr = Vec::new();
    let mut fi = Vec::new();
    let mut warm = Vec::new();
    for run in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_init(&dir.path().join("ev")).unwrap();
        let mut cs = ChangeSet::new();
        for (p, b) in &files {
            cs.put(p.clone(), b.clone());
        }
        let t = Instant::now();
        let out = store
            .commit("bench", None, None, &cs, "full", &author())
            .unwrap();
        full.push(t.elapsed());
        let CommitOutcome::Committed { commit, .. } = out else {
            panic!("expected a commit")
        };

        let mut cs = ChangeSet::new();
        for (p, b) in &changed {
            cs.put(p.clone(), b.clone());
        }
        let t = Instant::now();
        let out = store
            .commit(
                "bench",
                Some(commit),
                Some(commit),
                &cs,
                "100 changes",
                &author(),
            )
            .unwrap();
        incr.push(t.elapsed());
        let CommitOutcome::Committed {
            commit: mut tip, ..
        } = out
        else {
            panic!("expected a commit")
        };
        // Later syncs: the repository is warm (its pack open, its pages
        // cached), as for every run after the first of a scheduled job.
        for revision in 2..12 {
            let mut cs = ChangeSet::new();
            for k in 0..100 {
                let a = artifact((k * 7919) % n, revision);
                cs.put(a.json_path(), a.to_bytes().0);
            }
            let t = Instant::now();
            let out = store
                .commit("bench", Some(tip), Some(tip), &cs, "100 changes", &author())
                .unwrap();
            warm.push(t.elapsed());
            let CommitOutcome::Committed { commit, .. } = out else {
                panic!("expected a commit")
            };
            tip = commit;
        }

        let fdir = dir.path().join("fi");
        let init = Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&fdir)
            .status()
            .unwrap();
        assert!(init.success());
        let stream = fast_import_stream(&files);
        let t = Instant::now();
        let mut child = Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(&fdir)
            .stdin(Stdio::piped())
            .spawn()
            .expect("git fast-import");
        child.stdin.take().unwrap().write_all(&stream).unwrap();
        assert!(child.wait().unwrap().success());
        fi.push(t.elapsed());
        // Both wrote the same tree: the benchmark compares like with like.
        let ours = store.repo().find_commit(commit).unwrap().tree_id();
        let theirs = Command::new("git")
            .args(["rev-parse", "bench^{tree}"])
            .current_dir(&fdir)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&theirs.stdout).trim(),
            ours.to_string()
        );
        eprintln!(
            "run {}: full {:?}, 100 changes {:?}, fast-import {:?}",
            run + 1,
            full[run],
            incr[run],
            fi[run]
        );
    }
    let (f, i, g, w) = (median(full), median(incr), median(fi), median(warm));
    println!(
        "artifacts:            {n} ({:.1} MiB of canonical JSON)",
        total_bytes as f64 / 1048576.0
    );
    println!("full write (one commit): {:>8.1} ms", f.as_secs_f64() * 1e3);
    println!("git fast-import:         {:>8.1} ms", g.as_secs_f64() * 1e3);
    println!(
        "ratio full / fast-import: {:.2}x (target <= 1.5x)",
        f.as_secs_f64() / g.as_secs_f64()
    );
    println!("100-change commit:       {:>8.1} ms", i.as_secs_f64() * 1e3);
    println!(
        "100-change / full write:  {:.2}% (target < 1%)",
        100.0 * i.as_secs_f64() / f.as_secs_f64()
    );
    println!(
        "100-change commit, warm:  {:>8.1} ms (median of 10 later commits)",
        w.as_secs_f64() * 1e3
    );
    println!(
        "warm / full write:         {:.2}%",
        100.0 * w.as_secs_f64() / f.as_secs_f64()
    );
}
