//! Canonical JSON: the one byte representation of a JSON value that every
//! file and hash in the evidence repository uses.
//!
//! Rules: object keys sorted by their UTF-8 bytes (serde_json's default
//! `Map` is a `BTreeMap`), no duplicate keys, strings escaped by
//! serde_json's fixed rules, integers written plainly. Files use the pretty
//! form (two-space indent, `\n` line ends, one trailing newline); hashes use
//! the compact form, so whitespace changes never alter a digest.

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
    let mut out = serde_json::to_vec_pretty(value).expect("a serde_json::Value always serializes");
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
    fn unicode_and_control_characters_have_one_encoding() {
        let v = json!({"s": "é\u{1}\"\\/"});
        assert_eq!(
            String::from_utf8(to_compact(&v)).unwrap(),
            "{\"s\":\"é\\u0001\\\"\\\\/\"}"
        );
    }
}
