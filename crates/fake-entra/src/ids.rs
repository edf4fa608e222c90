//! Identifiers the fake hands out: random GUIDs and opaque codes, and the deterministic user object ids.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use sha2::{Digest as _, Sha256};

/// Entra's user codes avoid characters that read alike (no 0/O, 1/I/L), so a person can type them.
const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const USER_CODE_LEN: usize = 9;

/// Formats 16 bytes as a lowercase GUID (`8-4-4-4-12`), the way Entra prints every id.
pub(crate) fn guid_from_bytes(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

pub(crate) fn random_guid() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    guid_from_bytes(&bytes)
}

/// A GUID derived from `seed`, so a user keeps the same object id across runs and processes.
pub(crate) fn deterministic_guid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    guid_from_bytes(&bytes)
}

/// `len` random bytes, base64url without padding: the body of every opaque code and token signature.
pub(crate) fn random_b64url(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill(bytes.as_mut_slice());
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn user_code() -> String {
    let mut rng = rand::rng();
    (0..USER_CODE_LEN).map(|_| USER_CODE_ALPHABET[rng.random_range(0..USER_CODE_ALPHABET.len())] as char).collect()
}

/// Normalises what a person typed as a user code: case and separators do not matter.
pub(crate) fn normalize_user_code(typed: &str) -> String {
    typed.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_guid_is_stable_and_guid_shaped() {
        let a = deterministic_guid("alice@contoso.com");
        assert_eq!(a, deterministic_guid("alice@contoso.com"));
        assert_ne!(a, deterministic_guid("bob@contoso.com"));
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
    }

    #[test]
    fn user_codes_use_the_unambiguous_alphabet() {
        let code = user_code();
        assert_eq!(code.len(), USER_CODE_LEN);
        assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        assert_eq!(normalize_user_code("abc-d ef"), "ABCDEF");
    }
}
