//! Canonical JSON: the one byte representation of a JSON value that every
//! file and hash in the evidence repository uses.
//!
//! Files use serde_json's pretty form with keys sorted (two-space indent,
//! `\n` line ends, one trailing newline): readable in a browser and in a
//! diff. Digests never depend on that form: artifact digests use RFC 8785,
//! the JSON Canonicalization Scheme, produced by `serde_json_canonicalizer`
//! (UTF-16 key order, ECMAScript number form), so any JCS implementation in
//! any language gives the same bytes.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The compact canonical bytes of a value (what `sha256` fields cover).
pub fn to_compact(value: &Value) -> Vec<u8> {
    // serde_json's Value map is ordered (BTreeMap) because the
    // `preserve_order` feature is never enabled in this crate.
    serde_json::to_vec(value).expect("a serde_json::Value always serializes")
}

/// The pretty canonical bytes of a value, with a trailing newline (what
/// files hold).
pub fn to_pretty(value: &Value) -> Vec<u8> {
    to_pretty_sorted(value)
}

/// [`to_pretty`] straight from a value whose keys serialize in sorted
/// order already (a struct with its fields declared so), without building
/// a `Value` first: for large files rewritten whenever evidence changes.
pub fn to_pretty_sorted<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("evidence types serialize to JSON");
    out.push(b'\n');
    out
}

/// Serializes any value through `Value` so that struct field order never
/// matters: keys always come out sorted.
pub fn value_of<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("evidence types serialize to JSON")
}

/// Lower-case hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// SHA-256 over the compact canonical form of a value.
pub fn digest_value(value: &Value) -> String {
    sha256_hex(&to_compact(value))
}

/// The RFC 8785 bytes of a value.
pub fn jcs(value: &Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(value).expect("a serde_json::Value always canonicalizes")
}

/// The digest of a document: SHA-256 of the RFC 8785 form of every field
/// except `sha256` itself.
pub fn document_digest(doc: &Value) -> String {
    hex(&document_digest_bytes(doc))
}

/// [`document_digest`] as bytes.
pub fn document_digest_bytes(doc: &Value) -> [u8; 32] {
    match doc {
        Value::Object(m) if m.contains_key("sha256") => {
            let mut m = m.clone();
            m.remove("sha256");
            Sha256::digest(jcs(&Value::Object(m))).into()
        }
        other => Sha256::digest(jcs(other)).into(),
    }
}

/// The digest of an artifact file's document, read straight from its text:
/// equal to [`document_digest_bytes`] of the parsed file, for any valid
/// JSON object. `text` must parse as JSON (the caller has parsed it);
/// `None` only when it does not.
///
/// Canonicalizing 200,000 artifacts is most of `verify`'s time, yet the
/// files this crate writes are RFC 8785 text already, apart from
/// indentation: keys sorted, strings escaped and integers written the same
/// way. So the file's tokens are checked to be in that form while the
/// whitespace between them and the `sha256` member are dropped; when they
/// are, those bytes are the RFC 8785 form and are hashed as they are.
/// Anything that is not provably canonical here (a float, a key outside
/// ASCII, an escape RFC 8785 writes differently, keys out of order or
/// repeated) goes through the full canonicalization, so the digest never
/// depends on how a file happens to be formatted.
pub fn file_document_digest(text: &str) -> Option<[u8; 32]> {
    match compact_if_canonical(text) {
        Some(compact) => Some(Sha256::digest(compact).into()),
        None => serde_json::from_str::<Value>(text)
            .ok()
            .map(|doc| document_digest_bytes(&doc)),
    }
}

/// The bytes of a JSON object without whitespace between tokens and
/// without its top-level `sha256` member, when they are exactly the RFC
/// 8785 form of what remains; `None` when that cannot be shown by looking
/// at the tokens alone. Assumes valid JSON.
fn compact_if_canonical(text: &str) -> Option<Vec<u8>> {
    /// One open object or array.
    struct Frame {
        object: bool,
        /// In an object, the next string is a key.
        expect_key: bool,
        /// The previous key of this object, as a range of `bytes`.
        last_key: Option<(usize, usize)>,
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut stack: Vec<Frame> = Vec::new();
    // The current top-level member: where it starts in `out`, and whether
    // it is the `sha256` member that the digest leaves out.
    let mut member_start = 0;
    let mut dropping = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\n' | b'\r' | b'\t' => {
                i += bytes[i..]
                    .iter()
                    .position(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t'))
                    .unwrap_or(bytes.len() - i);
                continue;
            }
            b'"' => {
                let start = i;
                i += 1;
                let mut plain = true;
                loop {
                    // Runs of plain text between escapes are most of a file.
                    let run = memchr::memchr2(b'"', b'\\', &bytes[i..])?;
                    let between = &bytes[i..i + run];
                    if between.iter().any(|&c| c < 0x20) {
                        return None;
                    }
                    plain &= between.is_ascii();
                    i += run;
                    if bytes[i] == b'"' {
                        break;
                    }
                    plain = false;
                    match *bytes.get(i + 1)? {
                        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => i += 2,
                        // RFC 8785 writes `\u00xx` (lower-case hex) only for
                        // control characters without a short form.
                        b'u' => {
                            let hex = bytes.get(i + 2..i + 6)?;
                            let short =
                                matches!(hex, b"0008" | b"0009" | b"000a" | b"000c" | b"000d");
                            let control = hex[..2] == *b"00"
                                && matches!(hex[2], b'0' | b'1')
                                && matches!(hex[3], b'0'..=b'9' | b'a'..=b'f');
                            if short || !control {
                                return None;
                            }
                            i += 6;
                        }
                        _ => return None,
                    }
                }
                i += 1;
                if let Some(frame) = stack.last_mut().filter(|f| f.object && f.expect_key) {
                    // Key order is by UTF-16 code units, which is byte
                    // order only for plain ASCII keys.
                    let key = (start + 1, i - 1);
                    if !plain
                        || frame
                            .last_key
                            .is_some_and(|(s, e)| bytes[s..e] >= bytes[key.0..key.1])
                    {
                        return None;
                    }
                    frame.last_key = Some(key);
                    frame.expect_key = false;
                    if stack.len() == 1 {
                        dropping = &bytes[key.0..key.1] == b"sha256";
                    }
                }
                out.extend_from_slice(&bytes[start..i]);
                continue;
            }
            b'{' | b'[' => {
                stack.push(Frame {
                    object: b == b'{',
                    expect_key: b == b'{',
                    last_key: None,
                });
                out.push(b);
                if stack.len() == 1 {
                    member_start = out.len();
                }
                i += 1;
                continue;
            }
            b'}' | b']' => {
                if stack.len() == 1 && dropping {
                    out.truncate(member_start);
                    if out.last() == Some(&b',') {
                        out.pop();
                    }
                    dropping = false;
                }
                stack.pop()?;
            }
            b',' => {
                let top = stack.len() == 1;
                if let Some(frame) = stack.last_mut() {
                    frame.expect_key = frame.object;
                }
                if top {
                    i += 1;
                    if dropping {
                        out.truncate(member_start);
                        dropping = false;
                    } else {
                        out.push(b',');
                        member_start = out.len();
                    }
                    continue;
                }
            }
            b'-' | b'0'..=b'9' => {
                // Integers of up to 15 digits are the only numbers whose
                // RFC 8785 form (ECMAScript's) is their JSON text for sure.
                let start = i;
                if b == b'-' {
                    i += 1;
                }
                let digits = i;
                while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let n = &bytes[digits..i];
                let fraction = matches!(bytes.get(i), Some(b'.' | b'e' | b'E'));
                if n.is_empty()
                    || n.len() > 15
                    || (n[0] == b'0' && (n.len() > 1 || b == b'-'))
                    || fraction
                {
                    return None;
                }
                out.extend_from_slice(&bytes[start..i]);
                continue;
            }
            _ => {}
        }
        out.push(b);
        i += 1;
    }
    (stack.is_empty() && out.first() == Some(&b'{')).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"z":true,"m":[{"y":1,"x":2}]}}"#).unwrap();
        assert_eq!(
            String::from_utf8(to_compact(&v)).unwrap(),
            r#"{"a":{"m":[{"x":2,"y":1}],"z":true},"b":1}"#
        );
    }

    #[test]
    fn pretty_form_is_fixed_and_ends_with_newline() {
        let v = json!({"b": "x", "a": [1, 2]});
        assert_eq!(
            String::from_utf8(to_pretty(&v)).unwrap(),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"x\"\n}\n"
        );
    }

    #[test]
    fn digest_ignores_input_formatting_and_key_order() {
        let a: Value = serde_json::from_str("{ \"k\" : \"v\", \"n\": 1 }").unwrap();
        let b: Value = serde_json::from_str("{\"n\":1,\"k\":\"v\"}").unwrap();
        assert_eq!(digest_value(&a), digest_value(&b));
        let c: Value = serde_json::from_str("{\"n\":2,\"k\":\"v\"}").unwrap();
        assert_ne!(digest_value(&a), digest_value(&c));
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest_value(&json!({})), sha256_hex(b"{}"));
    }

    #[test]
    fn document_digest_covers_every_field_but_its_own() {
        let doc = json!({"a": 1, "period": {"start": "2026-01-01"}, "sha256": "x"});
        let d = document_digest(&doc);
        let mut moved = doc.clone();
        moved["period"]["start"] = json!("2025-01-01");
        assert_ne!(document_digest(&moved), d);
        let mut resealed = doc.clone();
        resealed["sha256"] = json!("y");
        assert_eq!(document_digest(&resealed), d);
        // RFC 8785 sorts keys by UTF-16 code units: U+FFFD sorts after
        // U+1F600 (a surrogate pair, 0xD83D...), unlike UTF-8 byte order.
        let v = json!({"\u{fffd}": 1, "\u{1f600}": 2});
        assert_eq!(
            String::from_utf8(jcs(&v)).unwrap(),
            "{\"\u{1f600}\":2,\"\u{fffd}\":1}"
        );
        // ECMAScript number form.
        assert_eq!(String::from_utf8(jcs(&json!(1.0e21))).unwrap(), "1e+21");
    }

    /// A tiny deterministic generator of JSON values that exercise every
    /// branch of the fast path: keys in and out of ASCII, escapes, floats,
    /// long integers, nesting, and a top-level `sha256`.
    fn random_value(seed: &mut u64, depth: u32) -> Value {
        fn next(seed: &mut u64, n: u64) -> u64 {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed % n
        }
        const STRINGS: &[&str] = &[
            "",
            "a",
            "b",
            "sha256",
            "Reviewed-by",
            "é",
            "\u{1f600}",
            "\u{fffd}",
            "\u{1}",
            "\n\t\"\\/",
            "\u{7f}",
            "z",
            "A",
            "\u{1f}x",
        ];
        match if depth == 0 {
            next(seed, 6)
        } else {
            next(seed, 8)
        } {
            0 => Value::Null,
            1 => Value::Bool(next(seed, 2) == 0),
            2 => json!(next(seed, 1_000_000_000) as i64 - 500_000_000),
            3 => json!(next(seed, u64::MAX - 1) as i64),
            // Quarters are exact in binary, so text round trips are too.
            4 => json!((next(seed, 100_000) as f64) / 4.0),
            5 => Value::String(STRINGS[next(seed, STRINGS.len() as u64) as usize].to_string()),
            6 => Value::Array(
                (0..next(seed, 4))
                    .map(|_| random_value(seed, depth - 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..next(seed, 5))
                    .map(|_| {
                        let k = STRINGS[next(seed, STRINGS.len() as u64) as usize].to_string();
                        (k, random_value(seed, depth - 1))
                    })
                    .collect(),
            ),
        }
    }

    #[test]
    fn file_digest_is_the_full_canonicalization_for_any_text() {
        let cases = [
            r#"{"a":1,"sha256":"x","z":[1,{"b":true,"a":null}]}"#,
            "{\n  \"a\": 1,\n  \"sha256\": \"x\",\n  \"z\": [\n    1\n  ]\n}\n",
            r#"{"sha256":"x","a":1}"#,
            r#"{"a":1,"sha256":"x"}"#,
            r#"{"sha256":"x"}"#,
            r#"{"sha256":{"sha256":[1,2]},"t":"u"}"#,
            r#"{"a":{"sha256":"kept"}}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"a":"\u001f"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\n\b\f\r\t\"\\"}"#,
            r#"{"a":1.0,"b":1e3,"c":-0,"d":0,"e":-12}"#,
            r#"{"a":1234567890123456,"b":123456789012345}"#,
            r#"{"é":1,"e":2}"#,
            "{\"\u{fffd}\":1,\"\u{1f600}\":2}",
            r#"{"a\"b":1,"a":2}"#,
            r#"[{"sha256":"x"}]"#,
            r#"{}"#,
            r#""text""#,
            r#"{"a":[],"b":{},"c":[{}]}"#,
        ];
        for c in cases {
            let v: Value = serde_json::from_str(c).unwrap();
            assert_eq!(
                file_document_digest(c),
                Some(document_digest_bytes(&v)),
                "{c}"
            );
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        let mut fast = 0;
        for _ in 0..3000 {
            let mut v = random_value(&mut seed, 4);
            if let Value::Object(m) = &mut v {
                m.insert("sha256".into(), json!("recorded"));
            }
            for text in [to_pretty(&v), to_compact(&v)] {
                let text = String::from_utf8(text).unwrap();
                fast += usize::from(compact_if_canonical(&text).is_some());
                assert_eq!(
                    file_document_digest(&text),
                    Some(document_digest_bytes(&v)),
                    "{text}"
                );
            }
        }
        // Both paths were exercised, not only the full one.
        assert!(
            (100..5900).contains(&fast),
            "{fast} of 6000 took the fast path"
        );
        assert_eq!(file_document_digest("{\"a\":"), None);
    }

    #[test]
    fn files_this_crate_writes_take_the_fast_path() {
        let doc = json!({
            "content": {"message": "Fix\n\ttabs \"quoted\" \\ \u{1} é", "n": -42, "ok": true, "none": null},
            "id": "git:commit:app/1",
            "sha256": "abc",
            "title": "Ünïcode",
        });
        let pretty = String::from_utf8(to_pretty(&doc)).unwrap();
        let compact = compact_if_canonical(&pretty).expect("fast path");
        let mut without = doc.clone();
        without.as_object_mut().unwrap().remove("sha256");
        assert_eq!(compact, jcs(&without));
        // Not provably canonical: the full path decides.
        assert_eq!(compact_if_canonical(r#"{"b":1,"a":2}"#), None);
        assert_eq!(compact_if_canonical(r#"{"a":1.5}"#), None);
        assert_eq!(compact_if_canonical(r#"{"a":"\/"}"#), None);
    }

    #[test]
    fn unicode_and_control_characters_have_one_encoding() {
        let v = json!({"s": "é\u{1}\"\\/"});
        assert_eq!(
            String::from_utf8(to_compact(&v)).unwrap(),
            "{\"s\":\"é\\u0001\\\"\\\\/\"}"
        );
    }
}
