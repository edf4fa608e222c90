//! Proof Key for Code Exchange (RFC 7636): challenge methods and verifier checks.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChallengeMethod {
    S256,
    Plain,
}

impl ChallengeMethod {
    /// RFC 7636 §4.3: an absent method means `plain`. Entra spells the method case-sensitively.
    pub(crate) fn parse(raw: Option<&str>) -> Option<Self> {
        match raw {
            None | Some("plain") => Some(Self::Plain),
            Some("S256") => Some(Self::S256),
            Some(_) => None,
        }
    }
}

/// RFC 7636 §4.1 and §4.2: verifier and challenge are both 43–128 unreserved characters.
pub(crate) fn is_well_formed(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub(crate) fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub(crate) fn verifier_matches(method: ChallengeMethod, challenge: &str, verifier: &str) -> bool {
    match method {
        ChallengeMethod::S256 => s256_challenge(verifier) == challenge,
        ChallengeMethod::Plain => verifier == challenge,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B. (The shared protocol notes print a different challenge ending
    /// `…JvHyQoLh7k`; that value is wrong, this one is the RFC's.)
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(s256_challenge(VERIFIER), CHALLENGE);
        assert!(verifier_matches(ChallengeMethod::S256, CHALLENGE, VERIFIER));
        assert!(!verifier_matches(ChallengeMethod::S256, CHALLENGE, &VERIFIER.replace('d', "e")));
    }

    #[test]
    fn plain_compares_directly() {
        assert!(verifier_matches(ChallengeMethod::Plain, VERIFIER, VERIFIER));
        assert!(!verifier_matches(ChallengeMethod::Plain, CHALLENGE, VERIFIER));
    }

    #[test]
    fn missing_method_means_plain_and_unknown_is_refused() {
        assert_eq!(ChallengeMethod::parse(None), Some(ChallengeMethod::Plain));
        assert_eq!(ChallengeMethod::parse(Some("S256")), Some(ChallengeMethod::S256));
        assert_eq!(ChallengeMethod::parse(Some("s256")), None);
        assert_eq!(ChallengeMethod::parse(Some("S512")), None);
    }

    #[test]
    fn verifier_shape() {
        assert!(is_well_formed(VERIFIER));
        assert!(!is_well_formed(&VERIFIER[..42]));
        assert!(is_well_formed(&"a".repeat(128)));
        assert!(!is_well_formed(&"a".repeat(129)));
        assert!(!is_well_formed(&format!("{}+", &VERIFIER[..43])));
    }
}
