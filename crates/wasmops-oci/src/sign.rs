//! Cosign-compatible key signatures.
//!
//! A signature is a "simple signing" payload naming the artifact's manifest
//! digest, signed with the private key (ECDSA P-256 / SHA-256 by default,
//! ASN.1 DER, base64 in the layer annotation
//! `dev.cosignproject.cosign/signature`). The payloads are the layers of an
//! OCI manifest stored in the same repository under the tag
//! `sha256-<hex>.sig`, where cosign looks. Keys are cosign's: an encrypted
//! `ENCRYPTED SIGSTORE PRIVATE KEY` PEM (scrypt + secretbox) and a PKIX
//! `PUBLIC KEY` PEM.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sigstore::crypto::signing_key::SigStoreKeyPair;
use sigstore::crypto::{CosignVerificationKey, SigStoreSigner, Signature, SigningScheme};

use crate::distribution::{self, Blob, Target};
use crate::registry::ProgressFn;
use crate::{MANIFEST_MEDIA_TYPE, OciError};

pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// A public key signatures are verified with.
pub type PublicKey = CosignVerificationKey;

const PAYLOAD_TYPE: &str = "cosign container image signature";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// The tag cosign keeps an artifact's signatures under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// A new ECDSA P-256 key pair: (encrypted private key PEM, public key PEM).
pub fn generate(password: &[u8]) -> Result<(String, String), OciError> {
    let err =
        |e: sigstore::errors::SigstoreError| OciError::Signature(format!("key generation: {e}"));
    let signer = SigningScheme::ECDSA_P256_SHA256_ASN1
        .create_signer()
        .map_err(err)?;
    let pair = signer.to_sigstore_keypair().map_err(err)?;
    let private = pair.private_key_to_encrypted_pem(password).map_err(err)?;
    let public = pair.public_key_to_pem().map_err(err)?;
    Ok((private.to_string(), public))
}

/// A signer from a cosign private key (encrypted, or plain PKCS#8).
pub fn signer(pem: &[u8], password: &[u8]) -> Result<SigStoreSigner, OciError> {
    let text = String::from_utf8_lossy(pem);
    let pair = if text.contains("ENCRYPTED") {
        SigStoreKeyPair::from_encrypted_pem(pem, password).map_err(|e| {
            OciError::Signature(format!(
                "cannot decrypt the private key: wrong password (COSIGN_PASSWORD) or not a cosign key ({e})"
            ))
        })?
    } else {
        SigStoreKeyPair::from_pem(pem)
            .map_err(|e| OciError::Signature(format!("not a private key PEM: {e}")))?
    };
    for scheme in [
        SigningScheme::ECDSA_P256_SHA256_ASN1,
        SigningScheme::ECDSA_P384_SHA384_ASN1,
        SigningScheme::ED25519,
    ] {
        if let Ok(s) = pair.to_sigstore_signer(&scheme) {
            return Ok(s);
        }
    }
    Err(OciError::Signature(
        "unsupported key type; use an ECDSA P-256 key (`wasmops keygen`, `cosign generate-key-pair`)".into(),
    ))
}

/// A verification key from a PKIX public key PEM.
pub fn verifier(pem: &[u8]) -> Result<CosignVerificationKey, OciError> {
    CosignVerificationKey::try_from_pem(pem).map_err(|e| {
        OciError::Signature(format!(
            "not a public key PEM ({e}); give the `.pub` file that `wasmops keygen` or `cosign generate-key-pair` wrote"
        ))
    })
}

/// The simple-signing payload for a manifest digest.
pub fn payload(identity: &str, digest: &str, annotations: &[(String, String)]) -> Vec<u8> {
    let optional = if annotations.is_empty() {
        Value::Null
    } else {
        Value::Object(
            annotations
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        )
    };
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": optional,
    }))
    .unwrap_or_default()
}

fn identity(target: &Target) -> String {
    match target {
        Target::Registry { reference, .. } => reference.repository_name(),
        Target::Layout { store, .. } => format!("oci-layout:{}", store.root().display()),
    }
}

/// Signs the artifact a target names; returns its digest and the tag the
/// signature went to. Signatures already there are kept.
pub async fn sign(
    target: &Target,
    signer: &SigStoreSigner,
    annotations: &[(String, String)],
    progress: &ProgressFn,
) -> Result<(String, String), OciError> {
    let digest = distribution::resolve(target).await?;
    let payload = payload(&identity(target), &digest, annotations);
    let signature = signer
        .sign(&payload)
        .map_err(|e| OciError::Signature(format!("signing failed: {e}")))?;
    let signature = B64.encode(signature);
    let tag = signature_tag(&digest);
    let sig_target = distribution::sibling(target, &tag)?;
    let mut layers: Vec<Value> = match distribution::manifest_at(&sig_target, &tag).await? {
        Some(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|m| m["layers"].as_array().cloned())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let payload_blob = Blob::new(payload);
    layers.retain(|l| {
        !(l["digest"] == payload_blob.digest.as_str()
            && l["annotations"][SIGNATURE_ANNOTATION] == signature.as_str())
    });
    layers.push(json!({
        "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
        "digest": payload_blob.digest,
        "size": payload_blob.data.len(),
        "annotations": { SIGNATURE_ANNOTATION: signature },
    }));
    let diff_ids: Vec<&Value> = layers.iter().map(|l| &l["digest"]).collect();
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }))
        .unwrap_or_default(),
    );
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config.digest,
            "size": config.data.len(),
        },
        "layers": layers,
    }))
    .unwrap_or_default();
    distribution::push(&sig_target, &[config, payload_blob], &manifest, progress).await?;
    Ok((digest, tag))
}

/// A signature that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub digest: String,
    /// The payload's `optional` annotations.
    pub annotations: Value,
    pub identity: String,
}

/// Verifies that the artifact a target names carries at least one
/// signature by `key` over its manifest digest.
pub async fn verify(target: &Target, key: &CosignVerificationKey) -> Result<Verified, OciError> {
    let digest = distribution::resolve(target).await?;
    let tag = signature_tag(&digest);
    let sig_target = distribution::sibling(target, &tag)?;
    let Some(bytes) = distribution::manifest_at(&sig_target, &tag).await? else {
        return Err(OciError::Signature(format!(
            "{target} ({digest}) is not signed: no signatures under tag {tag}; sign it with `wasmops sign`"
        )));
    };
    let manifest: Value = serde_json::from_slice(&bytes).map_err(|e| {
        OciError::Signature(format!("the signature manifest {tag} is not JSON: {e}"))
    })?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let mut checked = 0;
    let mut last = String::new();
    for l in &layers {
        if l["mediaType"] != SIMPLE_SIGNING_MEDIA_TYPE {
            continue;
        }
        let Some(sig) = l["annotations"][SIGNATURE_ANNOTATION]
            .as_str()
            .and_then(|s| B64.decode(s.trim()).ok())
        else {
            continue;
        };
        checked += 1;
        let d = l["digest"].as_str().unwrap_or_default();
        let size = l["size"].as_u64().unwrap_or(0);
        let payload = match distribution::small_blob(&sig_target, d, size).await {
            Ok(p) => p,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        if key
            .verify_signature(Signature::Raw(&sig), &payload)
            .is_err()
        {
            last = "the signature does not match the key".into();
            continue;
        }
        let p: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        if p["critical"]["image"]["docker-manifest-digest"] != digest.as_str() {
            last = format!(
                "a valid signature names another digest ({})",
                p["critical"]["image"]["docker-manifest-digest"]
            );
            continue;
        }
        if p["critical"]["type"] != PAYLOAD_TYPE {
            last = "a valid signature has an unknown payload type".into();
            continue;
        }
        return Ok(Verified {
            digest,
            annotations: p["optional"].clone(),
            identity: p["critical"]["identity"]["docker-reference"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        });
    }
    Err(OciError::Signature(format!(
        "no signature of {target} ({digest}) verifies with the given key ({checked} checked{}); it was signed with another key or altered",
        if last.is_empty() {
            String::new()
        } else {
            format!(": {last}")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sign() {
        let (private, public) = generate(b"pw").unwrap();
        assert!(private.contains("ENCRYPTED SIGSTORE PRIVATE KEY"));
        assert!(public.contains("BEGIN PUBLIC KEY"));
        let s = signer(private.as_bytes(), b"pw").unwrap();
        assert!(signer(private.as_bytes(), b"wrong").is_err());
        let p = payload("r/x", "sha256:00", &[]);
        let sig = s.sign(&p).unwrap();
        let v = verifier(public.as_bytes()).unwrap();
        assert!(v.verify_signature(Signature::Raw(&sig), &p).is_ok());
        assert!(v.verify_signature(Signature::Raw(&sig), b"other").is_err());
        assert_eq!(
            signature_tag("sha256:abc"),
            "sha256-abc.sig",
            "where cosign looks"
        );
    }

    #[tokio::test]
    async fn sign_and_verify_in_a_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Layout::open(dir.path(), true).unwrap();
        let info = crate::ComponentInfo {
            os: "wasip2".into(),
            created: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        store
            .push_component(b"\0asm\x0d\0\x01\0", &info, "v1")
            .unwrap();
        let target = || Target::Layout {
            store: crate::Layout::open(dir.path(), false).unwrap(),
            reference: "v1".into(),
        };
        let (private, public) = generate(b"").unwrap();
        let (_, other_public) = generate(b"").unwrap();
        let key = verifier(public.as_bytes()).unwrap();
        let e = verify(&target(), &key).await.unwrap_err().to_string();
        assert!(e.contains("not signed"), "{e}");
        let s = signer(private.as_bytes(), b"").unwrap();
        sign(
            &target(),
            &s,
            &[("env".into(), "prod".into())],
            &crate::registry::quiet(),
        )
        .await
        .unwrap();
        let v = verify(&target(), &key).await.unwrap();
        assert_eq!(v.annotations["env"], "prod");
        let e = verify(&target(), &verifier(other_public.as_bytes()).unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("another key"), "{e}");
    }
}
