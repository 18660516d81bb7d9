//! Stored password hashes, in PostgreSQL's own `pg_authid.rolpassword` formats, so that an
//! operator can copy one out of PostgreSQL (or make one with `phalanx pg-password`) and no
//! plaintext password is ever written to disk:
//!
//! - `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 fields): the
//!   RFC 5802/7677 verifier. It cannot log in by itself: a client must prove it knows the
//!   password behind `StoredKey`.
//! - `md5<32 hex digits>`: `md5(password || user name)`. For md5 authentication this hash *is*
//!   the credential (whoever holds it can log in), which is why SCRAM is the default.
//!
//! Anything else — a plaintext password in particular — is refused when the config is loaded.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::gen_salted_password;
use ring::{digest, hmac};

/// PostgreSQL's default `scram_iterations`.
pub const SCRAM_ITERATIONS: usize = 4096;
/// Salt length of new SCRAM verifiers (PostgreSQL's).
const SCRAM_SALT_BYTES: usize = 16;
/// SHA-256 output: the length of StoredKey and ServerKey.
const SHA256_BYTES: usize = 32;

/// A SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: usize,
    pub salt: Vec<u8>,
    /// `SHA-256(HMAC(SaltedPassword, "Client Key"))`
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`
    pub server_key: Vec<u8>,
}

/// A user's stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    Scram(ScramVerifier),
    /// `md5` and 32 lowercase hex digits, as stored.
    Md5(String),
}

/// A password hash that is not in one of the accepted formats.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error(
        "malformed SCRAM-SHA-256 verifier ({0}); expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
    )]
    Scram(&'static str),
    #[error("malformed md5 hash: expected \"md5\" followed by 32 hexadecimal digits")]
    Md5,
    #[error(
        "not a password hash: expected \"SCRAM-SHA-256$...\" or \"md5...\" (plaintext passwords are not accepted; make a hash with `phalanx pg-password`)"
    )]
    Unknown,
}

impl PasswordHash {
    /// Parses a hash in `pg_authid.rolpassword` format.
    pub fn parse(text: &str) -> Result<PasswordHash, HashError> {
        if let Some(rest) = text.strip_prefix("SCRAM-SHA-256$") {
            return parse_scram(rest).map(PasswordHash::Scram);
        }
        if let Some(hex) = text.strip_prefix("md5") {
            let valid = hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
            return if valid {
                Ok(PasswordHash::Md5(format!(
                    "md5{}",
                    hex.to_ascii_lowercase()
                )))
            } else {
                Err(HashError::Md5)
            };
        }
        Err(HashError::Unknown)
    }

    /// A new SCRAM-SHA-256 verifier of `password` with a random salt.
    pub fn scram(password: &str) -> PasswordHash {
        let salt: [u8; SCRAM_SALT_BYTES] = rand::random();
        scram_with_salt(password, &salt, SCRAM_ITERATIONS)
    }

    /// The md5 hash PostgreSQL stores for `user` with `password`.
    pub fn md5(user: &str, password: &str) -> PasswordHash {
        let digest = md5::compute(format!("{password}{user}"));
        PasswordHash::Md5(format!("md5{digest:x}"))
    }
}

/// The verifier of `password` for a given salt (SASLprep-normalized, as clients do; RFC 5802
/// section 3).
pub fn scram_with_salt(password: &str, salt: &[u8], iterations: usize) -> PasswordHash {
    let salted = gen_salted_password(password, salt, iterations);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    PasswordHash::Scram(ScramVerifier {
        iterations,
        salt: salt.to_vec(),
        stored_key: digest::digest(&digest::SHA256, client_key.as_ref())
            .as_ref()
            .to_vec(),
        server_key: hmac::sign(&key, b"Server Key").as_ref().to_vec(),
    })
}

fn parse_scram(rest: &str) -> Result<ScramVerifier, HashError> {
    let (parameters, keys) = rest
        .split_once('$')
        .ok_or(HashError::Scram("missing '$' before the keys"))?;
    let (iterations, salt) = parameters
        .split_once(':')
        .ok_or(HashError::Scram("missing ':' after the iteration count"))?;
    let (stored_key, server_key) = keys.split_once(':').ok_or(HashError::Scram(
        "missing ':' between StoredKey and ServerKey",
    ))?;
    let iterations: usize = iterations
        .parse()
        .map_err(|_| HashError::Scram("iteration count is not a number"))?;
    if iterations == 0 {
        return Err(HashError::Scram("iteration count is zero"));
    }
    let decode = |field: &str, what: &'static str| {
        STANDARD.decode(field).map_err(|_| HashError::Scram(what))
    };
    let salt = decode(salt, "salt is not base64")?;
    let stored_key = decode(stored_key, "StoredKey is not base64")?;
    let server_key = decode(server_key, "ServerKey is not base64")?;
    if salt.is_empty() {
        return Err(HashError::Scram("empty salt"));
    }
    if stored_key.len() != SHA256_BYTES || server_key.len() != SHA256_BYTES {
        return Err(HashError::Scram("keys must be 32 bytes"));
    }
    Ok(ScramVerifier {
        iterations,
        salt,
        stored_key,
        server_key,
    })
}

impl fmt::Display for PasswordHash {
    /// The `pg_authid.rolpassword` text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Scram(v) => write!(
                f,
                "SCRAM-SHA-256${}:{}${}:{}",
                v.iterations,
                STANDARD.encode(&v.salt),
                STANDARD.encode(&v.stored_key),
                STANDARD.encode(&v.server_key)
            ),
            PasswordHash::Md5(hash) => f.write_str(hash),
        }
    }
}

impl fmt::Debug for PasswordHash {
    /// Never prints key material (an md5 hash is as good as the password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Scram(v) => write!(f, "SCRAM-SHA-256 ({} iterations)", v.iterations),
            PasswordHash::Md5(_) => f.write_str("md5"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example credentials (password "pencil", its salt, 4096 iterations); the keys
    /// were computed independently with Python's hashlib/hmac.
    #[test]
    fn scram_verifier_matches_an_independent_computation() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let verifier = scram_with_salt("pencil", &salt, 4096);
        assert_eq!(
            verifier.to_string(),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
             WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn formats_round_trip_and_garbage_is_refused() {
        let scram = PasswordHash::scram("secret");
        let text = scram.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        assert_eq!(PasswordHash::parse(&text), Ok(scram));
        // md5("secret" || "alice"), as PostgreSQL stores it.
        let md5 = PasswordHash::md5("alice", "secret");
        assert_eq!(md5.to_string(), "md54a0a68b43b6cd5cf266fa02f196e2371");
        assert_eq!(PasswordHash::parse(&md5.to_string()), Ok(md5));
        for bad in [
            "secret",
            "md5abc",
            "SCRAM-SHA-256$4096:c2FsdA==",
            "SCRAM-SHA-256$x:c2FsdA==$a:b",
            "SCRAM-SHA-256$4096:c2FsdA==$c2FsdA==:c2FsdA==",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(format!("{:?}", PasswordHash::md5("a", "b")), "md5");
    }
}
