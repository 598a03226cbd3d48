//! Sigstore bundles verified offline, through the sigstore project's
//! modular crates (`sigstore-verify`, `sigstore-trust-root`,
//! `sigstore-types`): the certificate chain to the trusted root's Fulcio,
//! its SCT, the transparency log entry (inclusion proof, checkpoint,
//! inclusion promise) or RFC 3161 timestamps, the signature over the
//! artifact or the DSSE envelope, and who signed: a certificate's issuer
//! and identity, or a configured public key.
//!
//! Nothing here reaches the network: the trusted root is a file (or the
//! public-good root the crate embeds).
//!
//! Key mode, for those who sign without Fulcio and Rekor: a PKCS#8 P-256
//! key signs the statement as a DSSE envelope in a v0.3 bundle that names
//! the key by a hint only. Such a bundle has no log entry or timestamp
//! (nothing to reach from an air-gapped machine), so it is verified by its
//! DSSE signature against the public key configured, which is all it
//! claims; a key-mode bundle that does carry a log entry is verified in
//! full.

use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::{Bundle, DerPublicKey, SignatureContent};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

/// The public-good instance's issuer for GitHub Actions tokens.
pub const ACTIONS_ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Who must have signed.
#[derive(Debug, Clone)]
pub enum Signer {
    /// A Fulcio certificate for exactly this identity (the SAN: for a
    /// workflow, `https://github.com/OWNER/REPO/.github/workflows/F@REF`)
    /// from this OIDC issuer.
    Keyless { issuer: String, identity: String },
    /// A key of one's own (PEM, SubjectPublicKeyInfo).
    Key { pem: String },
}

/// What was signed: the bytes, or (for a DSSE in-toto statement) the
/// SHA-256 of one of its subjects.
#[derive(Debug, Clone, Copy)]
pub enum Signed<'a> {
    Bytes(&'a [u8]),
    Sha256([u8; 32]),
}

/// A bundle that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The DSSE payload and its type, for an envelope.
    pub payload: Option<(String, Vec<u8>)>,
    /// The certificate's identity, when keyless.
    pub identity: Option<String>,
    /// When the log integrated the entry (seconds since the epoch).
    pub integrated_time: Option<i64>,
    /// The certificate's claims about the workflow run, when keyless:
    /// the repository's immutable id, and the runner (`github-hosted`).
    pub repository_id: Option<String>,
    pub runner_environment: Option<String>,
    /// The ref the run was on, the workflow that ran (which differs from
    /// the identity's when it called a reusable workflow), and its event.
    pub source_ref: Option<String>,
    pub build_config: Option<String>,
    pub trigger: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a Sigstore bundle: {0}")]
    Malformed(String),
    #[error("not a trusted root: {0}")]
    TrustRoot(String),
    #[error("not a PEM public key: {0}")]
    Key(String),
    #[error("not a PKCS#8 P-256 private key (PEM `PRIVATE KEY`): {0}")]
    PrivateKey(String),
    /// Verification ran and refused: the crate's reason, whole.
    #[error("{0}")]
    Refused(String),
}

/// The trust a verification starts from.
pub struct Trust {
    root: TrustedRoot,
}

impl Trust {
    /// A trusted root as Sigstore writes it (`trusted_root.json`).
    pub fn from_json(json: &str) -> Result<Trust, BundleError> {
        TrustedRoot::from_json(json)
            .map(|root| Trust { root })
            .map_err(|e| BundleError::TrustRoot(e.to_string()))
    }

    /// The public-good instance's root, as embedded in the crate.
    pub fn public_good() -> Result<Trust, BundleError> {
        Trust::from_json(sigstore_verify::trust_root::SIGSTORE_PRODUCTION_TRUSTED_ROOT)
    }

    /// Verifies `bundle` (its JSON) over `signed`, signed by `signer`.
    pub fn verify(
        &self,
        bundle: &str,
        signed: Signed<'_>,
        signer: &Signer,
    ) -> Result<Verified, BundleError> {
        let bundle =
            Bundle::from_json(bundle).map_err(|e| BundleError::Malformed(e.to_string()))?;
        let verifier =
            Verifier::new(&self.root).map_err(|e| BundleError::TrustRoot(e.to_string()))?;
        let artifact = match signed {
            Signed::Bytes(b) => sigstore_verify::types::Artifact::from_blob(b),
            Signed::Sha256(d) => sigstore_verify::types::Artifact::from_digest(
                sigstore_verify::types::Sha256Hash::new(d),
            ),
        };
        let logged = !bundle.verification_material.tlog_entries.is_empty()
            || !bundle
                .verification_material
                .timestamp_verification_data
                .rfc3161_timestamps
                .is_empty();
        if let (Signer::Key { pem }, false) = (signer, logged) {
            return dsse_with_key(&bundle, pem, signed);
        }
        let result = match signer {
            Signer::Keyless { issuer, identity } => {
                let policy = VerificationPolicy::new(identity.as_str(), issuer.as_str());
                verifier.verify(artifact, &bundle, &policy)
            }
            Signer::Key { pem } => {
                let key =
                    DerPublicKey::from_pem(pem).map_err(|e| BundleError::Key(e.to_string()))?;
                verifier.verify(artifact, &bundle, &PublicKeyVerificationPolicy::new(key))
            }
        }
        .map_err(|e| BundleError::Refused(format!("{e:#}")))?;
        let payload = match &bundle.content {
            SignatureContent::DsseEnvelope(env) => {
                Some((env.payload_type.clone(), env.payload.as_bytes().to_vec()))
            }
            _ => None,
        };
        let claims = result.certificate().map(|c| &c.ci_claims);
        Ok(Verified {
            payload,
            identity: result.identity().map(|i| i.as_str().to_string()),
            integrated_time: result.integrated_time().map(|t| t.as_second()),
            repository_id: claims.and_then(|c| c.source_repository_identifier.clone()),
            runner_environment: claims.and_then(|c| c.runner_environment.clone()),
            source_ref: claims.and_then(|c| c.source_repository_ref.clone()),
            build_config: claims.and_then(|c| c.build_config_uri.clone()),
            trigger: claims.and_then(|c| c.build_trigger.clone()),
        })
    }
}

/// The DSSE envelope's one signature checked against `pem` over its PAE;
/// the envelope must be an in-toto statement.
fn dsse_with_key(bundle: &Bundle, pem: &str, signed: Signed<'_>) -> Result<Verified, BundleError> {
    use sigstore_verify::crypto::VerificationKey;
    let SignatureContent::DsseEnvelope(env) = &bundle.content else {
        return Err(BundleError::Refused(
            "a key-mode bundle without a log entry must hold a DSSE envelope".into(),
        ));
    };
    if env.payload_type != IN_TOTO {
        return Err(BundleError::Refused(format!(
            "payload type `{}`, not an in-toto statement",
            env.payload_type
        )));
    }
    // The crate parses an envelope with exactly one signature only.
    let sig = &env.signature;
    let key = DerPublicKey::from_pem(pem).map_err(|e| BundleError::Key(e.to_string()))?;
    VerificationKey::from_spki(&key)
        .and_then(|k| k.verify(env.pae(), &sig.sig))
        .map_err(|e| BundleError::Refused(format!("DSSE signature: {e}")))?;
    // As the full verifier does: what was asked about must be a subject.
    let digest = match signed {
        Signed::Bytes(b) => crate::artifact::canonical::sha256_hex(b),
        Signed::Sha256(d) => d.iter().map(|b| format!("{b:02x}")).collect(),
    };
    let statement: serde_json::Value = serde_json::from_slice(env.payload.as_bytes())
        .map_err(|e| BundleError::Refused(format!("the payload is not JSON: {e}")))?;
    let bound = statement["subject"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["digest"]["sha256"] == digest.as_str());
    if !bound {
        return Err(BundleError::Refused(format!(
            "no subject of the statement has sha256 {digest}"
        )));
    }
    Ok(Verified {
        payload: Some((env.payload_type.clone(), env.payload.as_bytes().to_vec())),
        identity: None,
        integrated_time: None,
        repository_id: None,
        runner_environment: None,
        source_ref: None,
        build_config: None,
        trigger: None,
    })
}

/// A key of one's own signing statements (key mode).
pub struct KeySigner {
    pair: sigstore_verify::crypto::KeyPair,
}

impl KeySigner {
    /// A PKCS#8 P-256 private key in PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<KeySigner, BundleError> {
        use base64::Engine as _;
        let bad = |m: &str| BundleError::PrivateKey(m.to_string());
        if pem.contains("BEGIN EC PRIVATE KEY") {
            return Err(bad(
                "a SEC1 key: convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`",
            ));
        }
        if pem.contains("ENCRYPTED PRIVATE KEY") {
            return Err(bad("an encrypted key: ClearTrail reads unencrypted PKCS#8"));
        }
        let body: String = pem
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
            .skip(1)
            .take_while(|l| !l.starts_with("-----END PRIVATE KEY-----"))
            .collect();
        if body.is_empty() {
            return Err(bad("no `-----BEGIN PRIVATE KEY-----` block"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| bad(&e.to_string()))?;
        let pair = sigstore_verify::crypto::KeyPair::from_pkcs8_der(&der)
            .map_err(|e| bad(&e.to_string()))?;
        Ok(KeySigner { pair })
    }

    /// The public key (PEM), for the configuration that verifies.
    pub fn public_pem(&self) -> Result<String, BundleError> {
        self.pair
            .public_key_der()
            .map(|k| k.to_pem())
            .map_err(|e| BundleError::Key(e.to_string()))
    }

    /// Whether `pem` (a public key) is this key's: compared as DER, since
    /// PEM line breaks vary between tools.
    pub fn is_pair_of(&self, pem: &str) -> Result<bool, BundleError> {
        let theirs = DerPublicKey::from_pem(pem).map_err(|e| BundleError::Key(e.to_string()))?;
        let mine = self
            .pair
            .public_key_der()
            .map_err(|e| BundleError::Key(e.to_string()))?;
        Ok(theirs.as_bytes() == mine.as_bytes())
    }

    /// The key's hint: the SHA-256 of its SubjectPublicKeyInfo, in hex.
    pub fn hint(&self) -> Result<String, BundleError> {
        let der = self
            .pair
            .public_key_der()
            .map_err(|e| BundleError::Key(e.to_string()))?;
        Ok(crate::artifact::canonical::sha256_hex(der.as_bytes()))
    }

    /// `statement` (an in-toto statement's bytes) as a DSSE envelope in a
    /// v0.3 bundle naming this key; the bundle's JSON.
    pub fn sign_statement(&self, statement: &[u8]) -> Result<String, BundleError> {
        use sigstore_verify::bundle::{BundleV03, VerificationMaterialV03};
        use sigstore_verify::types::{DsseEnvelope, DsseSignature, KeyId, PayloadBytes, pae};
        let sig = self
            .pair
            .sign(&pae(IN_TOTO, statement))
            .map_err(|e| BundleError::PrivateKey(e.to_string()))?;
        let env = DsseEnvelope::new(
            IN_TOTO,
            PayloadBytes::new(statement.to_vec()),
            DsseSignature::new(sig, KeyId::new("")),
        );
        BundleV03::new(
            VerificationMaterialV03::PublicKey { hint: self.hint()? },
            SignatureContent::DsseEnvelope(env),
        )
        .into_bundle()
        .to_json()
        .map_err(|e| BundleError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_pem() -> (String, std::path::PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&p)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (std::fs::read_to_string(&p).unwrap(), p, dir)
    }

    #[test]
    fn a_key_signed_statement_verifies_with_its_key_only_and_untouched() {
        let (pem, _, _dir) = key_pem();
        let signer = KeySigner::from_pem(&pem).unwrap();
        let statement = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"0000000000000000000000000000000000000000000000000000000000000000"}}],"predicateType":"https://cleartrail.dev/approval/v1","predicate":{}}"#;
        let bundle = signer.sign_statement(statement).unwrap();
        let trust = Trust::public_good().unwrap();
        let mine = Signer::Key {
            pem: signer.public_pem().unwrap(),
        };
        let v = trust
            .verify(&bundle, Signed::Sha256([0; 32]), &mine)
            .unwrap();
        assert_eq!(v.payload.unwrap().1, statement);

        // Another key: refused.
        let (other, _, _d2) = key_pem();
        let theirs = Signer::Key {
            pem: KeySigner::from_pem(&other).unwrap().public_pem().unwrap(),
        };
        let e = trust
            .verify(&bundle, Signed::Sha256([0; 32]), &theirs)
            .unwrap_err();
        assert!(e.to_string().contains("DSSE signature"), "{e}");

        // A byte of the payload changed (re-encoded): refused.
        let mut doc: serde_json::Value = serde_json::from_str(&bundle).unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let payload = doc["dsseEnvelope"]["payload"].as_str().unwrap();
        let mut bytes = b64.decode(payload).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 1;
        doc["dsseEnvelope"]["payload"] = b64.encode(&bytes).into();
        let e = trust
            .verify(&doc.to_string(), Signed::Sha256([0; 32]), &mine)
            .unwrap_err();
        assert!(e.to_string().contains("DSSE signature"), "{e}");

        // A keyless policy never accepts a key-signed bundle.
        let keyless = Signer::Keyless {
            issuer: ACTIONS_ISSUER.into(),
            identity: "x".into(),
        };
        assert!(
            trust
                .verify(&bundle, Signed::Sha256([0; 32]), &keyless)
                .is_err()
        );
    }

    #[test]
    fn keys_in_other_forms_are_refused_with_how_to_convert() {
        let e = KeySigner::from_pem(
            "-----BEGIN EC PRIVATE KEY-----\nAA==\n-----END EC PRIVATE KEY-----\n",
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("openssl pkcs8 -topk8"), "{e}");
        assert!(KeySigner::from_pem("hello").is_err());
    }
}
