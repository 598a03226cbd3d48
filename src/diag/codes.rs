//! The one registry of finding codes: every code a diagnostic can carry
//! (verify findings, check results, gap statuses), with what it means. A
//! code, once published, keeps its meaning; tests check that codes are
//! unique, kebab-case and documented in the README.

/// Codes of `cleartrail verify` findings.
pub const VERIFY: &[(&str, &str)] = &[
    (
        "branch-missing",
        "the evidence branch does not exist, locally or as a remote-tracking branch",
    ),
    (
        "layout-unsupported",
        "the branch's layout version file is missing or names a version this cleartrail does not read",
    ),
    (
        "object-unreadable",
        "a file's git object cannot be read (missing, or its content does not match its id)",
    ),
    (
        "artifact-invalid",
        "an artifact file is not valid JSON, lacks a required field or has an unknown schema",
    ),
    (
        "artifact-hash-mismatch",
        "an artifact does not hash (RFC 8785, every field but `sha256`) to its recorded `sha256`",
    ),
    (
        "artifact-missing",
        "an artifact that a verified listing names is not on the branch (it was deleted)",
    ),
    (
        "artifact-unlisted",
        "an artifact that no listing names (added outside cleartrail)",
    ),
    (
        "artifact-misplaced",
        "an artifact file is not at the path its id and shard map to",
    ),
    (
        "captured-missing",
        "the captured document an artifact names is not beside it",
    ),
    (
        "captured-hash-mismatch",
        "a captured document's bytes do not hash to the recorded SHA-256",
    ),
    (
        "collection-invalid",
        "a collection record is unreadable, lacks a field, or its totals do not summarize its groups",
    ),
    (
        "collection-digest-mismatch",
        "the artifacts held in a month group do not give the recorded digest (one was altered or swapped)",
    ),
    (
        "collection-count-mismatch",
        "the number of artifacts held in a month group differs from the record (one was added or removed)",
    ),
    (
        "collection-query-mismatch",
        "what a query has found, as its record keeps it per month, is no longer exactly on the branch",
    ),
    (
        "collection-missing",
        "artifacts are held for a source and kind that has no collection record",
    ),
    (
        "tombstone-invalid",
        "a tombstone is unreadable, misplaced, or its artifact is still present",
    ),
    (
        "tombstone-missing",
        "the tombstones of a source and kind differ from what its collection record counts (one was deleted, added or edited)",
    ),
    (
        "derived-missing",
        "a derived file listed in `.cleartrail/derived.json` is not on the branch",
    ),
    (
        "derived-mismatch",
        "a derived file (check result, mapping, page, README) was edited outside cleartrail, or its manifest is missing",
    ),
    (
        "packet-mismatch",
        "a committed packet's file differs from, or is missing against, the digest its manifest lists",
    ),
    (
        "approval-invalid",
        "an approval record is unreadable, not an approval statement, at a path other than its own, without its bundle (or a bundle without its record), or a file under approvals/ is none of these",
    ),
    (
        "approval-signature",
        "an approval record's bundle does not verify: signature, certificate chain, log entry or timestamp, or a signer other than the configured one (workflow identity, repository id, GitHub-hosted runner, or key)",
    ),
    (
        "approval-payload-mismatch",
        "an approval record file is not exactly the statement its bundle signs",
    ),
    (
        "approval-self",
        "an approval record whose reviewer is the pull request's author",
    ),
    (
        "approval-repository",
        "an approval record names another repository (name or id) than the configured one",
    ),
    (
        "approval-subject-mismatch",
        "a file an approval record approved has neither now nor at the approved head the digest the record lists",
    ),
    (
        "approval-unverifiable",
        "approval records are on the branch but no `approvals:` configuration says how to verify them",
    ),
    (
        "export-missing",
        "a file of the committed packet is absent from its export (`verify --against-drive` / `--against-dir`)",
    ),
    (
        "export-mismatch",
        "an exported file's content differs from the packet's manifest, a path holds several files, or the export record disagrees with the packet or the files found",
    ),
    (
        "export-extra",
        "the export holds a file that the committed packet does not list",
    ),
    (
        "stray-file",
        "a file in a folder cleartrail owns that no record accounts for (added by hand)",
    ),
];

/// Codes of gaps (`gaps --format github`), one per status that is a gap.
pub const GAPS: &[(&str, &str)] = &[
    (
        "gap-missing",
        "an in-scope control has a requirement with no matching evidence (error)",
    ),
    (
        "gap-failing",
        "an in-scope control's evidence fails an error-level check (error)",
    ),
    (
        "gap-stale",
        "an in-scope control's evidence is older than its freshness, or outside the period (warning)",
    ),
    (
        "gap-unapproved",
        "an in-scope control's evidence is not yet approved (warning)",
    ),
];

/// The gap code of a control status, `None` for `covered`.
pub fn gap(status: crate::controls::evaluate::Status) -> Option<&'static str> {
    use crate::controls::evaluate::Status;
    match status {
        Status::Missing => Some(GAPS[0].0),
        Status::Failing => Some(GAPS[1].0),
        Status::Stale => Some(GAPS[2].0),
        Status::Unapproved => Some(GAPS[3].0),
        Status::Covered => None,
    }
}

/// Every code with its meaning: verify findings, checks, then gaps.
pub fn all() -> Vec<(&'static str, &'static str)> {
    VERIFY
        .iter()
        .copied()
        .chain(crate::checks::CHECKS.iter().map(|c| (c.code, c.doc)))
        .chain(GAPS.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn codes_are_unique_kebab_case_and_documented() {
        let readme = include_str!("../../README.md");
        let mut seen = BTreeSet::new();
        for (code, doc) in all() {
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{code} is not kebab-case"
            );
            assert!(!doc.trim().is_empty(), "{code} has no description");
            assert!(
                readme.contains(&format!("`{code}`")),
                "{code} is not documented in README.md"
            );
        }
    }
}
