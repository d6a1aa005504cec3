//! The CA's P-256 key: RustCrypto for what the key *is* (PKCS#8 files,
//! encryption, the public key and algorithm identifier the x509-cert builder
//! asks for), ring for the one hot operation, the ECDSA signature.
//!
//! ring's P-256 is the constant-time assembly implementation rustls already
//! uses in this workspace (eos-register's TLS); RustCrypto's pure-Rust field
//! arithmetic made up ~85% of a validate + sign (docs/PERFORMANCE.md). Both
//! halves are built from the same secret scalar and checked to agree on the
//! public key when the CA is loaded.

use std::fmt;

use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use signature::Keypair;
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier};

/// A P-256 CA key that signs with ring.
pub(crate) struct CaKey {
    /// The key as RustCrypto holds it: files, public key, algorithm id.
    key: SigningKey,
    /// The same scalar in ring, for signing.
    fast: EcdsaKeyPair,
    rng: SystemRandom,
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaKey(<redacted>)")
    }
}

impl CaKey {
    /// Pair a RustCrypto key with its ring twin; refuses a mismatch.
    pub(crate) fn new(key: SigningKey) -> Result<CaKey, String> {
        let rng = SystemRandom::new();
        let public = key.verifying_key().to_sec1_point(false);
        let secret = zeroize::Zeroizing::new(key.to_bytes());
        let fast = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            secret.as_slice(),
            public.as_bytes(),
            &rng,
        )
        .map_err(|e| format!("the CA key is not a usable P-256 key: {e}"))?;
        if fast.public_key().as_ref() != public.as_bytes() {
            return Err("the CA key's public half does not match its private half".to_owned());
        }
        Ok(CaKey { key, fast, rng })
    }

    /// The RustCrypto key (PKCS#8 export).
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
}

impl Keypair for CaKey {
    type VerifyingKey = VerifyingKey;

    fn verifying_key(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }
}

impl DynSignatureAlgorithmIdentifier for CaKey {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        self.key.signature_algorithm_identifier()
    }
}

impl signature::Signer<DerSignature> for CaKey {
    fn try_sign(&self, msg: &[u8]) -> Result<DerSignature, signature::Error> {
        let sig = self
            .fast
            .sign(&self.rng, msg)
            .map_err(|_| signature::Error::new())?;
        DerSignature::from_bytes(sig.as_ref())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use p256::elliptic_curve::Generate;
    use signature::{Signer, Verifier};

    use super::*;

    #[test]
    fn ring_signatures_verify_with_the_rustcrypto_public_key() {
        let key = CaKey::new(SigningKey::try_generate().unwrap()).unwrap();
        let msg = b"to be signed";
        let sig: DerSignature = key.try_sign(msg).unwrap();
        key.verifying_key().verify(msg, &sig).unwrap();
        assert!(key.verifying_key().verify(b"something else", &sig).is_err());
    }
}
