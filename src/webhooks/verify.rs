//! Lean's webhook signature: `lean-signature: sha512=<lowercase hex HMAC-SHA512 of
//! the raw body>`, keyed with the webhook secret, compared in constant time.

use hmac::{Hmac, Mac};
use serde::Serialize;

/// What to do with a webhook whose signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Refuse it (401) and record it as rejected.
    Enforce,
    /// Accept it and mark it invalid.
    #[default]
    Report,
    /// Do not check.
    Off,
}

/// The verdict on one delivery's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// The signature is Lean's HMAC-SHA512 of this body.
    Valid,
    /// It is not, and here is why.
    Invalid(String),
    /// No `lean-signature` header.
    Missing,
    /// Not checked (policy `off`, or no secret configured).
    Unchecked,
}

impl Verdict {
    /// `valid`, `invalid`, `missing` or `unchecked`.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid(_) => "invalid",
            Verdict::Missing => "missing",
            Verdict::Unchecked => "unchecked",
        }
    }
}

/// Checks `header` (the `lean-signature` value, if any) against `body`.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&[u8]>) -> Verdict {
    let Some(header) = header else {
        return Verdict::Missing;
    };
    let Ok(header) = std::str::from_utf8(header) else {
        return Verdict::Invalid("the header is not text".into());
    };
    let header = header.trim();
    let Some(digest) = header.strip_prefix("sha512=") else {
        let scheme = header.split_once('=').map_or("none", |(s, _)| s);
        return Verdict::Invalid(format!(
            "scheme `{scheme}`: Lean signs with `sha512=` (HMAC-SHA512), not SHA-256 or others"
        ));
    };
    let mac = || {
        // HMAC takes keys of any length.
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret).ok()?;
        mac.update(body);
        Some(mac)
    };
    let Some(mac) = mac() else {
        return Verdict::Invalid("the secret cannot key HMAC-SHA512".into());
    };
    match hex::decode(digest) {
        Ok(bytes) if bytes.len() == 64 => match mac.verify_slice(&bytes) {
            Ok(()) => Verdict::Valid,
            Err(_) => Verdict::Invalid(
                "the digest does not match this body and secret (body changed, or another secret)"
                    .into(),
            ),
        },
        Ok(bytes) if bytes.len() == 32 => Verdict::Invalid(
            "the digest is 32 bytes, a SHA-256 size: Lean signs with HMAC-SHA512".into(),
        ),
        Ok(bytes) => Verdict::Invalid(format!(
            "the digest is {} bytes; HMAC-SHA512 gives 64",
            bytes.len()
        )),
        Err(_) => {
            let looks_base64 = digest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            Verdict::Invalid(if looks_base64 {
                "the digest is base64; Lean sends lowercase hex".into()
            } else {
                "the digest is not hex".into()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"whsec-test";
    const BODY: &[u8] = br#"{"type":"entity.reconnected","payload":{"id":"e","reconnect_id":"r"},"message":"m","timestamp":"t","event_id":"ev"}"#;

    fn hmac_bytes(secret: &[u8], body: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret).unwrap();
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    #[test]
    fn leans_own_signature_is_valid() {
        let header = crate::lean::webhook_signature(SECRET, BODY);
        assert_eq!(
            verify(SECRET, BODY, Some(header.as_bytes())),
            Verdict::Valid
        );
        let upper = header.to_uppercase().replacen("SHA512=", "sha512=", 1);
        assert_eq!(
            verify(SECRET, BODY, Some(upper.as_bytes())),
            Verdict::Valid,
            "hex case does not matter"
        );
    }

    #[test]
    fn a_body_changed_by_one_byte_is_invalid() {
        let header = crate::lean::webhook_signature(SECRET, BODY);
        let mut changed = BODY.to_vec();
        changed[10] ^= 1;
        assert!(
            matches!(verify(SECRET, &changed, Some(header.as_bytes())), Verdict::Invalid(r) if r.contains("does not match"))
        );
    }

    #[test]
    fn a_sha256_signature_is_invalid_and_says_so() {
        use hmac::Mac as _;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
        mac.update(BODY);
        let hex256 = hex::encode(mac.finalize().into_bytes());
        let as_sha256 = format!("sha256={hex256}");
        assert!(
            matches!(verify(SECRET, BODY, Some(as_sha256.as_bytes())), Verdict::Invalid(r) if r.contains("sha512"))
        );
        let mislabelled = format!("sha512={hex256}");
        assert!(
            matches!(verify(SECRET, BODY, Some(mislabelled.as_bytes())), Verdict::Invalid(r) if r.contains("SHA-256"))
        );
    }

    #[test]
    fn a_missing_header_is_missing() {
        assert_eq!(verify(SECRET, BODY, None), Verdict::Missing);
    }

    #[test]
    fn a_base64_digest_is_invalid_and_says_so() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(hmac_bytes(SECRET, BODY));
        let header = format!("sha512={b64}");
        assert!(
            matches!(verify(SECRET, BODY, Some(header.as_bytes())), Verdict::Invalid(r) if r.contains("base64"))
        );
    }

    #[test]
    fn another_secret_is_invalid() {
        let header = crate::lean::webhook_signature(b"other", BODY);
        assert!(matches!(
            verify(SECRET, BODY, Some(header.as_bytes())),
            Verdict::Invalid(_)
        ));
    }
}
