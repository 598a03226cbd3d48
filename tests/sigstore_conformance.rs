//! Every bundle-verification case of the public sigstore-conformance suite,
//! read in place from the folder `CLEARTRAIL_SIGSTORE_CONFORMANCE` names
//! (`.ci/run` sets it when `../shared/fixtures/sigstore-conformance` is
//! beside the clone; the cases are never copied into the repository).
//! A case verifies exactly when its name does not end in `_fail`.
//!
//! With the variable unset the test says so and checks nothing; with it
//! set and the folder missing or short of cases, it fails.

use cleartrail::approvals::bundle::{ACTIONS_ISSUER, Signed, Signer, Trust};
use std::path::Path;

const VAR: &str = "CLEARTRAIL_SIGSTORE_CONFORMANCE";
const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";

/// The case's verdict: `Ok` or why it was refused.
fn run_case(dir: &Path) -> Result<(), String> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let bundle = read("bundle.sigstore.json").ok_or("no bundle.sigstore.json")?;
    let trust = match read("trusted_root.json") {
        Some(json) => Trust::from_json(&json),
        None => Trust::public_good(),
    }
    .map_err(|e| e.to_string())?;
    let signer = match read("key.pub") {
        Some(pem) => Signer::Key { pem },
        None => Signer::Keyless {
            issuer: read("issuer").map_or(ACTIONS_ISSUER.to_string(), |s| s.trim().to_string()),
            identity: read("identity")
                .map_or(DEFAULT_IDENTITY.to_string(), |s| s.trim().to_string()),
        },
    };
    let artifact = std::fs::read(dir.join("artifact"))
        .or_else(|_| std::fs::read(dir.parent().unwrap().join("a.txt")))
        .map_err(|e| format!("no artifact: {e}"))?;
    Trust::verify(&trust, &bundle, Signed::Bytes(&artifact), &signer)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn every_conformance_case_gives_its_expected_result() {
    let Some(root) = std::env::var_os(VAR) else {
        // CI always provides it (.ci/run); elsewhere it is optional.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {VAR} is not: the conformance cases must run in CI"
        );
        eprintln!("{VAR} is not set: the sigstore-conformance cases were not run");
        return;
    };
    let root = Path::new(&root).join("bundle-verify");
    assert!(
        root.is_dir(),
        "{VAR} is set but {} is not a folder of cases",
        root.display()
    );
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 70,
        "only {} cases in {}",
        cases.len(),
        root.display()
    );
    let mut wrong = Vec::new();
    let (mut passed, mut refused) = (0, 0);
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expect_fail = name.ends_with("_fail");
        match (run_case(dir), expect_fail) {
            (Ok(()), false) => passed += 1,
            (Err(_), true) => refused += 1,
            (Ok(()), true) => wrong.push(format!("{name}: accepted, must be refused")),
            (Err(e), false) => wrong.push(format!("{name}: refused: {e}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    eprintln!("{passed} cases verified, {refused} refused, as expected");
}
