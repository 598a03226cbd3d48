//! Signatures of commits and tags: which kind (GPG, SSH, X.509), which key,
//! whether it is the forge's own web signing key, and whether it verifies
//! against keys the configuration names.
//!
//! Verification runs the tools git itself runs: `ssh-keygen -Y` against an
//! `allowed_signers` file, and `gpg --verify` in a private, temporary
//! GNUPGHOME holding only the configured keyring (never the user's own
//! keyring, whose trust would otherwise leak into the evidence).
//!
//! Statuses: `verified` (a configured key made it), `unverified` (keys for
//! that kind of signature are configured and it does not verify against
//! them), `unknown` (no keys configured for that kind, or X.509, which is
//! not verified here).

use super::super::ConnectorError;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Key ids of forges' own web signing keys: commits a forge makes for a
/// user (web edits, squash merges from the web UI) carry these, not the
/// user's key. GitHub's `web-flow` GPG keys: 4AEE18F83AFDEB23 (in use until
/// 2024) and B5690EEEBB952194 (its successor). Matched against the key id,
/// the last 16 hex digits of a v4 fingerprint.
pub const FORGE_KEYS: &[(&str, &str)] = &[
    ("4AEE18F83AFDEB23", "GitHub (web-flow)"),
    ("B5690EEEBB952194", "GitHub (web-flow)"),
];

/// What a signature is, read from its bytes alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `gpg`, `ssh` or `x509`.
    pub kind: &'static str,
    /// GPG: issuer fingerprint (or long key id when only that is given);
    /// SSH: `SHA256:` fingerprint of the signing key.
    pub key: Option<String>,
}

/// Reads the kind and key of an armored signature.
pub fn parse(sig: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(sig);
    if text.contains("-----BEGIN SSH SIGNATURE-----") {
        let key = armored_body(&text, "SSH SIGNATURE")
            .and_then(|b| base64_decode(&b))
            .and_then(|b| ssh_key_fingerprint(&b));
        Parsed { kind: "ssh", key }
    } else if text.contains("-----BEGIN PGP SIGNATURE-----") {
        let key = armored_body(&text, "PGP SIGNATURE")
            .and_then(|b| base64_decode(&b))
            .and_then(|b| pgp_issuer(&b));
        Parsed { kind: "gpg", key }
    } else {
        // gitsign and smimesign write CMS (`SIGNED MESSAGE`); anything
        // else signed that is not OpenPGP or SSH is treated as X.509 too.
        Parsed {
            kind: "x509",
            key: None,
        }
    }
}

/// The forge whose web key made a signature, if any.
pub fn forge_of(p: &Parsed) -> Option<&'static str> {
    let key = p.key.as_deref()?;
    if p.kind != "gpg" || key.len() < 16 {
        return None;
    }
    let id = &key[key.len() - 16..];
    FORGE_KEYS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(id))
        .map(|(_, name)| *name)
}

/// The base64 body of an ASCII-armored block, without headers and the
/// OpenPGP checksum line.
fn armored_body(text: &str, label: &str) -> Option<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let block = &text[start..stop];
    let lines: Vec<&str> = block.lines().map(str::trim).collect();
    // OpenPGP armor may have `Key: value` headers, ended by a blank line.
    let body_from = if lines.iter().any(|l| l.contains(": ")) {
        lines.iter().position(|l| l.is_empty()).map_or(0, |i| i + 1)
    } else {
        0
    };
    Some(
        lines[body_from..]
            .iter()
            .filter(|l| !l.starts_with('='))
            .copied()
            .collect(),
    )
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        if c == b'=' {
            break;
        }
        if c.is_ascii_whitespace() {
            continue;
        }
        let v = B64.iter().position(|b| *b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn base64_encode_nopad(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + 3);
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=n {
            out.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// The issuer of the first OpenPGP signature packet: its fingerprint
/// (subpacket 33) when present, else its key id (subpacket 16, or the v3
/// header field).
fn pgp_issuer(data: &[u8]) -> Option<String> {
    let (tag, body) = pgp_packet(data)?;
    if tag != 2 {
        return None;
    }
    match *body.first()? {
        3 => body.get(7..15).map(hex_upper),
        v @ 4..=6 => {
            // v4: 2-octet subpacket area lengths; v5/v6: 4-octet.
            let wide = v != 4;
            let mut at = 4;
            let mut areas = Vec::new();
            for _ in 0..2 {
                let (len, width) = if wide {
                    (
                        u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize,
                        4,
                    )
                } else {
                    (
                        u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?) as usize,
                        2,
                    )
                };
                at += width;
                areas.push(body.get(at..at + len)?);
                at += len;
            }
            let mut key_id = None;
            for area in areas {
                let mut sp = area;
                while !sp.is_empty() {
                    let (len, hdr) = match sp[0] {
                        o @ 0..=191 => (o as usize, 1),
                        o @ 192..=254 => {
                            (((o as usize - 192) << 8) + *sp.get(1)? as usize + 192, 2)
                        }
                        255 => (
                            u32::from_be_bytes(sp.get(1..5)?.try_into().ok()?) as usize,
                            5,
                        ),
                    };
                    let packet = sp.get(hdr..hdr + len)?;
                    sp = &sp[hdr + len..];
                    let (&kind, value) = packet.split_first()?;
                    match kind & 0x7f {
                        33 if value.len() > 1 => return Some(hex_upper(&value[1..])),
                        16 if value.len() == 8 => key_id = Some(hex_upper(value)),
                        _ => {}
                    }
                }
            }
            key_id
        }
        _ => None,
    }
}

/// The tag and body of the first OpenPGP packet (old or new format).
fn pgp_packet(data: &[u8]) -> Option<(u8, &[u8])> {
    let first = *data.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    if first & 0x40 != 0 {
        let tag = first & 0x3f;
        let (len, hdr) = match *data.get(1)? {
            o @ 0..=191 => (o as usize, 2),
            o @ 192..=223 => (((o as usize - 192) << 8) + *data.get(2)? as usize + 192, 3),
            255 => (
                u32::from_be_bytes(data.get(2..6)?.try_into().ok()?) as usize,
                6,
            ),
            _ => return None,
        };
        Some((tag, data.get(hdr..hdr + len)?))
    } else {
        let tag = (first >> 2) & 0x0f;
        let (len, hdr) = match first & 3 {
            0 => (*data.get(1)? as usize, 2),
            1 => (
                u16::from_be_bytes(data.get(1..3)?.try_into().ok()?) as usize,
                3,
            ),
            2 => (
                u32::from_be_bytes(data.get(1..5)?.try_into().ok()?) as usize,
                5,
            ),
            _ => (data.len() - 1, 1),
        };
        Some((tag, data.get(hdr..hdr + len)?))
    }
}

/// `SHA256:<base64>` of the public key in an SSHSIG blob, as
/// `ssh-keygen -l` prints it.
fn ssh_key_fingerprint(blob: &[u8]) -> Option<String> {
    let rest = blob.strip_prefix(b"SSHSIG")?;
    let rest = rest.get(4..)?; // version
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let key = rest.get(4..4 + len)?;
    Some(format!(
        "SHA256:{}",
        base64_encode_nopad(&Sha256::digest(key))
    ))
}

/// The outcome of checking one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: &'static str,
    pub signer: Option<String>,
    pub detail: Option<String>,
}

impl Outcome {
    fn unknown(detail: &str) -> Self {
        Outcome {
            status: "unknown",
            signer: None,
            detail: Some(detail.into()),
        }
    }
}

/// The `signature` field of a commit, change or tag artifact.
pub fn to_json(parsed: Option<&Parsed>, outcome: Option<&Outcome>) -> Value {
    let Some(p) = parsed else {
        return json!({"type": null, "key": null, "status": null, "signer": null, "forge": false, "detail": null});
    };
    let forge = forge_of(p);
    let o = outcome.cloned().unwrap_or(Outcome::unknown("not checked"));
    json!({
        "type": p.kind,
        "key": p.key,
        "status": o.status,
        "signer": o.signer.or(forge.map(str::to_string)),
        "forge": forge.is_some(),
        "detail": o.detail,
    })
}

/// Checks signatures against the keys a source's configuration names.
pub struct Verifier {
    source: String,
    allowed_signers: Option<PathBuf>,
    gpg_keyring: Option<PathBuf>,
    /// Scratch folder: the private GNUPGHOME and signature files.
    scratch: Option<Scratch>,
    gpg_ready: bool,
}

impl Verifier {
    pub fn new(
        source: &str,
        allowed_signers: Option<PathBuf>,
        gpg_keyring: Option<PathBuf>,
    ) -> Self {
        Verifier {
            source: source.to_string(),
            allowed_signers,
            gpg_keyring,
            scratch: None,
            gpg_ready: false,
        }
    }

    fn scratch(&mut self) -> Result<&Path, ConnectorError> {
        if self.scratch.is_none() {
            self.scratch = Some(Scratch::new().map_err(|source| ConnectorError::Io {
                path: format!(
                    "temporary folder for verifying signatures of source `{}`",
                    self.source
                ),
                source,
            })?);
        }
        Ok(&self.scratch.as_ref().expect("created above").0)
    }

    /// Verifies `sig` over `data`, made at `when` (for key validity
    /// windows). A tool that cannot be run, or a keyring that cannot be
    /// imported, fails the source: "unknown" would hide a broken setup.
    pub fn verify(
        &mut self,
        parsed: &Parsed,
        sig: &[u8],
        data: &[u8],
        when: chrono::DateTime<chrono::Utc>,
    ) -> Result<Outcome, ConnectorError> {
        match parsed.kind {
            "ssh" => match self.allowed_signers.clone() {
                Some(file) => self.verify_ssh(&file, sig, data, when),
                None => Ok(Outcome::unknown("no allowed_signers file configured")),
            },
            "gpg" => match self.gpg_keyring.clone() {
                Some(file) => self.verify_gpg(&file, sig, data),
                None => Ok(Outcome::unknown("no gpg_keyring configured")),
            },
            _ => Ok(Outcome::unknown("X.509 signatures are not verified")),
        }
    }

    fn tool_err(&self, tool: &str, source: std::io::Error) -> ConnectorError {
        ConnectorError::Io {
            path: format!(
                "`{tool}` (verifying signatures of source `{}`)",
                self.source
            ),
            source,
        }
    }

    fn write_sig(&mut self, sig: &[u8]) -> Result<PathBuf, ConnectorError> {
        let path = self.scratch()?.join("signature");
        std::fs::write(&path, sig).map_err(|source| ConnectorError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(path)
    }

    fn verify_ssh(
        &mut self,
        allowed: &Path,
        sig: &[u8],
        data: &[u8],
        when: chrono::DateTime<chrono::Utc>,
    ) -> Result<Outcome, ConnectorError> {
        let sig_file = self.write_sig(sig)?;
        let time = format!("-Overify-time={}", when.format("%Y%m%d%H%M%SZ"));
        let found = run(
            Command::new("ssh-keygen")
                .args(["-Y", "find-principals", "-f"])
                .arg(allowed)
                .arg("-s")
                .arg(&sig_file)
                .arg(&time),
            None,
        )
        .map_err(|e| self.tool_err("ssh-keygen", e))?;
        let Some(principal) = found
            .stdout
            .lines()
            .next()
            .filter(|_| found.ok)
            .map(str::to_string)
        else {
            return Ok(Outcome {
                status: "unverified",
                signer: None,
                detail: Some("no principal in allowed_signers holds this key".into()),
            });
        };
        let res = run(
            Command::new("ssh-keygen")
                .args(["-Y", "verify", "-n", "git", "-f"])
                .arg(allowed)
                .arg("-I")
                .arg(&principal)
                .arg("-s")
                .arg(&sig_file)
                .arg(&time),
            Some(data),
        )
        .map_err(|e| self.tool_err("ssh-keygen", e))?;
        Ok(if res.ok {
            Outcome {
                status: "verified",
                signer: Some(principal),
                detail: None,
            }
        } else {
            Outcome {
                status: "unverified",
                signer: None,
                detail: Some(first_line(&res.stderr, "ssh-keygen rejected the signature")),
            }
        })
    }

    fn verify_gpg(
        &mut self,
        keyring: &Path,
        sig: &[u8],
        data: &[u8],
    ) -> Result<Outcome, ConnectorError> {
        let home = self.scratch()?.join("gnupg");
        if !self.gpg_ready {
            std::fs::create_dir_all(&home).map_err(|source| ConnectorError::Io {
                path: home.display().to_string(),
                source,
            })?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700));
            }
            let res = run(
                Command::new("gpg")
                    .arg("--homedir")
                    .arg(&home)
                    .args(["--batch", "--no-tty", "--import"])
                    .arg(keyring),
                None,
            )
            .map_err(|e| self.tool_err("gpg", e))?;
            if !res.ok {
                return Err(ConnectorError::Io {
                    path: keyring.display().to_string(),
                    source: std::io::Error::other(format!(
                        "gpg could not import the keyring of source `{}`: {}",
                        self.source,
                        first_line(&res.stderr, "no keys imported")
                    )),
                });
            }
            self.gpg_ready = true;
        }
        let sig_file = self.write_sig(sig)?;
        let res = run(
            Command::new("gpg")
                .arg("--homedir")
                .arg(&home)
                .args(["--batch", "--no-tty", "--status-fd", "1", "--verify"])
                .arg(&sig_file)
                .arg("-"),
            Some(data),
        )
        .map_err(|e| self.tool_err("gpg", e))?;
        let status = |word: &str| {
            res.stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("[GNUPG:] {word} ")))
                .map(str::to_string)
        };
        if res.ok
            && let Some(good) = status("GOODSIG")
        {
            let signer = good.split_once(' ').map(|(_, uid)| uid.to_string());
            return Ok(Outcome {
                status: "verified",
                signer,
                detail: None,
            });
        }
        let detail = if status("BADSIG").is_some() {
            "bad signature: the signed content does not match".to_string()
        } else if status("NO_PUBKEY").is_some() {
            "the signing key is not in the configured keyring".to_string()
        } else if let Some(s) = status("EXPKEYSIG") {
            format!("the signing key has expired ({s})")
        } else if let Some(s) = status("REVKEYSIG") {
            format!("the signing key is revoked ({s})")
        } else {
            first_line(&res.stderr, "gpg rejected the signature")
        };
        Ok(Outcome {
            status: "unverified",
            signer: None,
            detail: Some(detail),
        })
    }
}

fn first_line(text: &str, default: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(default)
        .to_string()
}

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> std::io::Result<Ran> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("piped");
        let data = data.to_vec();
        // Written from a thread so a tool that answers before reading all
        // of its input cannot deadlock us.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
        let out = child.wait_with_output()?;
        let _ = writer.join();
        return Ok(Ran {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let out = child.wait_with_output()?;
    Ok(Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A private temporary folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for _ in 0..100 {
            let n = N.fetch_add(1, Ordering::Relaxed);
            // A short path: gpg puts sockets in its home, and socket paths
            // are limited to about 100 bytes.
            let dir =
                std::env::temp_dir().join(format!("ctv-{}-{n}-{nanos:x}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Scratch(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other("no free temporary folder name"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let enc = base64_encode_nopad(s);
            assert_eq!(base64_decode(&enc).unwrap(), s);
        }
        assert_eq!(base64_encode_nopad(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode_nopad(b"fo"), "Zm8");
    }

    #[test]
    fn pgp_issuer_from_a_v4_signature_packet() {
        // A new-format signature packet with a hashed issuer fingerprint
        // subpacket (33) and an unhashed issuer key id subpacket (16).
        let fpr: Vec<u8> = (1..=20).collect();
        let mut hashed = vec![22u8, 33, 4];
        hashed.extend(&fpr);
        let unhashed = [9u8, 16, 0xB5, 0x69, 0x0E, 0xEE, 0xBB, 0x95, 0x21, 0x94];
        let mut body = vec![4u8, 0, 1, 8];
        body.extend((hashed.len() as u16).to_be_bytes());
        body.extend(&hashed);
        body.extend((unhashed.len() as u16).to_be_bytes());
        body.extend(unhashed);
        let mut packet = vec![0xC2, body.len() as u8];
        packet.extend(&body);
        assert_eq!(pgp_issuer(&packet).unwrap(), hex_upper(&fpr));
        // Without the fingerprint, the key id; and that key id is GitHub's.
        let mut body = vec![4u8, 0, 1, 8, 0, 0];
        body.extend((unhashed.len() as u16).to_be_bytes());
        body.extend(unhashed);
        let mut old = vec![0x88, body.len() as u8];
        old.extend(&body);
        let key = pgp_issuer(&old).unwrap();
        assert_eq!(key, "B5690EEEBB952194");
        let p = Parsed {
            kind: "gpg",
            key: Some(key),
        };
        assert_eq!(forge_of(&p), Some("GitHub (web-flow)"));
        assert_eq!(
            forge_of(&Parsed {
                kind: "gpg",
                key: Some(hex_upper(&fpr))
            }),
            None
        );
    }

    #[test]
    fn unsigned_has_null_type_and_status() {
        let v = to_json(None, None);
        assert_eq!(v["type"], Value::Null);
        assert_eq!(v["status"], Value::Null);
        assert_eq!(v["forge"], false);
    }
}
