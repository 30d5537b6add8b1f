//! Passwords: bcrypt, as etcd stores them. Hashing and checking cost
//! milliseconds by design, so the member that takes a request does both off
//! the async workers, and the Raft log only ever holds the hash.

use base64::Engine as _;

use crate::error::EtcdError;

/// Go's bcrypt, which etcd uses, rejects costs outside this range.
pub const MIN_COST: u32 = 4;
pub const MAX_COST: u32 = 31;
pub const DEFAULT_COST: u32 = 10;

/// The hash of `password`, base64-encoded as etcd's `hashedPassword` field carries it.
pub fn hash(password: &str, cost: u32) -> Result<String, EtcdError> {
    let parts = bcrypt::hash_with_result(password, cost).map_err(|err| EtcdError::Internal(err.to_string()))?;
    // Go's bcrypt writes "$2a$"; a store restored into etcd keeps working.
    let hashed = parts.format_for_version(bcrypt::Version::TwoA);
    Ok(base64::engine::general_purpose::STANDARD.encode(hashed))
}

/// The stored hash from a request's `hashedPassword`; etcd answers a bad one
/// as if the user had no password.
pub fn decode_hash(hashed: &str) -> Result<Vec<u8>, EtcdError> {
    base64::engine::general_purpose::STANDARD.decode(hashed).map_err(|_| EtcdError::NoPasswordUser)
}

/// Whether `password` matches a stored hash; any malformed hash matches nothing.
pub fn matches(password: &str, stored: &[u8]) -> bool {
    std::str::from_utf8(stored).is_ok_and(|stored| bcrypt::verify(password, stored).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_password_only() {
        let stored = decode_hash(&hash("s3cret", MIN_COST).expect("hash")).expect("base64");
        assert!(stored.starts_with(b"$2a$04$"), "Go's format and the cost");
        assert!(matches("s3cret", &stored));
        assert!(!matches("s3cret ", &stored));
        assert!(!matches("s3cret", b"not a hash"));
    }

    #[test]
    fn a_hash_from_go_matches() {
        // bcrypt.GenerateFromPassword([]byte("password"), 4) in Go.
        let from_go = b"$2a$04$0ibniZzG52u9SVJfsETeB.H.3.GZFyBaTTWVjQpG4nregzbiMnhf6";
        assert!(matches("password", from_go));
    }
}
