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

    #[test]
    fn unicode_and_control_characters_have_one_encoding() {
        let v = json!({"s": "é\u{1}\"\\/"});
        assert_eq!(
            String::from_utf8(to_compact(&v)).unwrap(),
            "{\"s\":\"é\\u0001\\\"\\\\/\"}"
        );
    }
}
