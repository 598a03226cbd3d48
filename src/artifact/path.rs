//! The path-escaping rule that turns any object id into a safe, stable path
//! inside the evidence repository.
//!
//! An object id is split on `/` into segments; each segment is escaped on
//! its own and the escaped segments are joined with `/` again. In a segment:
//!
//! - ASCII letters, digits, `-`, `_`, `.`, `+`, `@`, `=` and `,` are kept;
//!   every other byte (of the UTF-8 encoding) is written `%XX` (upper-case
//!   hex), `%` itself included, so the rule is reversible;
//! - a leading `.` is written `%2E` (no hidden files, no `.git`, no `..`),
//!   and so is a trailing `.`;
//! - an empty segment (from `a//b`, or a leading or trailing `/`) is a lone
//!   `%`, which no escape of a real byte can produce;
//! - a segment whose name before the first `.` is a Windows device name
//!   (`CON`, `PRN`, `AUX`, `NUL`, `COM1`-`COM9`, `LPT1`-`LPT9`, any case)
//!   gets its first character escaped;
//! - a segment ending in `.json` has that dot escaped, so a captured
//!   document never collides with the `.json` artifact file beside it, nor
//!   a folder with an artifact file;
//! - a segment longer than 120 bytes after escaping is cut to 100 bytes
//!   (never inside an escape) and suffixed `~` plus the first 16 hex digits
//!   of the SHA-256 of the unescaped segment: stable and collision-resistant.
//!
//! Letter case is kept: two ids that differ only by case stay two paths,
//! which collide on case-insensitive file systems when checked out (not in
//! Git itself).

use super::canonical::sha256_hex;
use chrono::{Datelike, NaiveDate};

/// The shard folder of a dated object: `<yyyy-mm>/<bucket>`, where the
/// month is the object's own (its period start) and the bucket is two
/// lower-case hex digits: the first two of the object id's last segment
/// when that is a hex id of 7 or more digits (a commit id: an auditor finds
/// commit `ab12...` under `ab`), else the first two of the SHA-256 of the
/// object id. At most 256 buckets a month keep every folder far below the
/// 1,000 entries GitHub's web view lists, at 100,000 objects a month.
pub fn month_shard(date: NaiveDate, object_id: &str) -> String {
    let last = object_id.rsplit('/').next().unwrap_or(object_id);
    let bucket = if last.len() >= 7 && last.bytes().all(|b| b.is_ascii_hexdigit()) {
        last[..2].to_ascii_lowercase()
    } else {
        sha256_hex(object_id.as_bytes())[..2].to_string()
    };
    format!("{:04}-{:02}/{bucket}", date.year(), date.month())
}

const MAX_SEGMENT: usize = 120;
const CUT_SEGMENT: usize = 100;

fn is_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'@' | b'=' | b',')
}

fn is_device_name(segment: &str) -> bool {
    let stem = segment.split('.').next().unwrap_or("").to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && matches!(stem.as_bytes()[3], b'1'..=b'9'))
}

fn push_escape(out: &mut String, b: u8) {
    out.push('%');
    out.push_str(&format!("{b:02X}"));
}

/// Escapes one segment (no `/` inside) by the rule above.
pub fn escape_segment(segment: &str) -> String {
    if segment.is_empty() {
        return "%".to_string();
    }
    let bytes = segment.as_bytes();
    let device = is_device_name(segment);
    let json_dot = if segment.to_ascii_lowercase().ends_with(".json") {
        Some(segment.len() - 5)
    } else {
        None
    };
    let mut out = String::with_capacity(segment.len() + 8);
    for (i, &b) in bytes.iter().enumerate() {
        let escape = !is_kept(b)
            || (i == 0 && (b == b'.' || device))
            || (i == bytes.len() - 1 && b == b'.')
            || Some(i) == json_dot;
        if escape {
            push_escape(&mut out, b);
        } else {
            out.push(b as char);
        }
    }
    if out.len() > MAX_SEGMENT {
        let mut cut = CUT_SEGMENT;
        // Never cut an escape in half: back off to before a '%'.
        while out.as_bytes()[cut - 1] == b'%' || (cut >= 2 && out.as_bytes()[cut - 2] == b'%') {
            cut -= 1;
        }
        let digest = sha256_hex(segment.as_bytes());
        out.truncate(cut);
        out.push('~');
        out.push_str(&digest[..16]);
    }
    out
}

/// Escapes a whole object id into a relative path.
pub fn escape_object_path(object_id: &str) -> String {
    object_id
        .split('/')
        .map(escape_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Escapes a name used as a single path segment (a source name, a kind).
pub fn escape_name(name: &str) -> String {
    escape_segment(name)
}

/// Reverses [`escape_object_path`] for segments that were not shortened.
/// Returns `None` for a shortened segment (its original is in the artifact).
pub fn unescape_object_path(path: &str) -> Option<String> {
    let mut out = Vec::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        if seg.contains('~') {
            return None;
        }
        if seg == "%" {
            continue;
        }
        let b = seg.as_bytes();
        let mut j = 0;
        while j < b.len() {
            if b[j] == b'%' && j + 2 < b.len() {
                let h = std::str::from_utf8(&b[j + 1..j + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                j += 3;
            } else {
                out.push(b[j]);
                j += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_shards_use_commit_ids_or_a_hash_bucket() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 14).unwrap();
        assert_eq!(month_shard(d, "app/AB12CD3"), "2026-03/ab");
        // Not a hex id: a bucket from the SHA-256 of the whole object id.
        let b = &sha256_hex(b"acme/api#123")[..2];
        assert_eq!(month_shard(d, "acme/api#123"), format!("2026-03/{b}"));
        assert_eq!(
            month_shard(d, "app/abc"),
            format!("2026-03/{}", &sha256_hex(b"app/abc")[..2])
        );
    }

    #[test]
    fn plain_ids_are_kept() {
        assert_eq!(escape_object_path("app/0123abcd"), "app/0123abcd");
        assert_eq!(escape_object_path("octo/repo/pull/12"), "octo/repo/pull/12");
        assert_eq!(escape_object_path("a.b-c_d+e@f=g,h"), "a.b-c_d+e@f=g,h");
    }

    #[test]
    fn traversal_and_hidden_names_are_escaped() {
        assert_eq!(escape_object_path(".."), "%2E%2E");
        assert_eq!(escape_object_path("a/../b"), "a/%2E%2E/b");
        assert_eq!(escape_object_path(".git/config"), "%2Egit/config");
        assert_eq!(escape_object_path("/abs//x/"), "%/abs/%/x/%");
        assert_eq!(escape_object_path("trailing."), "trailing%2E");
    }

    #[test]
    fn unsafe_bytes_are_percent_encoded() {
        assert_eq!(escape_object_path("a b"), "a%20b");
        assert_eq!(escape_object_path("100%"), "100%25");
        assert_eq!(escape_object_path("é"), "%C3%A9");
        assert_eq!(
            escape_object_path("a\\b:c*d?e\"f<g>h|i"),
            "a%5Cb%3Ac%2Ad%3Fe%22f%3Cg%3Eh%7Ci"
        );
        assert_eq!(escape_object_path("repo#12"), "repo%2312");
    }

    #[test]
    fn windows_device_names_are_escaped() {
        assert_eq!(escape_object_path("CON"), "%43ON");
        assert_eq!(escape_object_path("docs/nul.txt"), "docs/%6Eul.txt");
        assert_eq!(escape_object_path("com1"), "%63om1");
        assert_eq!(escape_object_path("COM10"), "COM10");
        assert_eq!(escape_object_path("console"), "console");
    }

    #[test]
    fn a_json_last_segment_cannot_collide_with_artifact_files() {
        assert_eq!(escape_object_path("p/data.json"), "p/data%2Ejson");
        assert_eq!(escape_object_path("x.json/y"), "x%2Ejson/y");
    }

    #[test]
    fn long_segments_are_shortened_stably() {
        let long = "x".repeat(300);
        let a = escape_object_path(&long);
        assert_eq!(a.len(), CUT_SEGMENT + 1 + 16);
        assert_eq!(a, escape_object_path(&long));
        let other = format!("{}y", "x".repeat(299));
        assert_ne!(a, escape_object_path(&other));
        // A cut never lands inside an escape.
        let spaced = " ".repeat(200);
        let e = escape_object_path(&spaced);
        let head = e.split('~').next().unwrap();
        assert_eq!(head.len() % 3, 0, "{e}");
    }

    #[test]
    fn escaping_is_reversible() {
        for id in [
            "app/0123",
            "a b/%/é",
            "..",
            "/x//y/",
            "CON.txt",
            "p/data.json",
            "trailing.",
        ] {
            let p = escape_object_path(id);
            assert_eq!(unescape_object_path(&p).as_deref(), Some(id), "{id} -> {p}");
        }
    }

    #[test]
    fn escaped_paths_only_hold_safe_characters() {
        let nasty = "\u{0}\n\t../..\\?#%é😀 CON .git";
        let p = escape_object_path(nasty);
        assert!(
            p.bytes()
                .all(|b| is_kept(b) || b == b'%' || b == b'/' || b == b'~'),
            "{p}"
        );
        for seg in p.split('/') {
            assert!(!seg.starts_with('.'), "{p}");
            assert!(!seg.is_empty(), "{p}");
        }
    }
}
