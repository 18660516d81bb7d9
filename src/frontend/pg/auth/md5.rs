//! md5 password authentication (AuthenticationMD5Password), for clients too old for SCRAM.
//!
//! The server sends a random 4-byte salt; the client answers
//! `"md5" || hex(md5(hex(md5(password || user)) || salt))`. The stored hash is
//! `"md5" || hex(md5(password || user))`, so the server computes the expected answer from it
//! without the password. Used only for users whose stored hash is md5 and only where the
//! method is `md5` (PostgreSQL's rule); everyone else gets SCRAM.

use async_trait::async_trait;
use pgwire::api::ClientInfo;
use pgwire::api::auth::mechanism::{AuthMechanism, AuthState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};

/// One md5 challenge: created per connection with the user's stored hash.
pub struct Md5Challenge {
    /// `md5` + 32 hex digits, as stored.
    stored: String,
    salt: [u8; 4],
}

impl Md5Challenge {
    pub fn new(stored: &str) -> Md5Challenge {
        Md5Challenge {
            stored: stored.to_owned(),
            salt: rand::random(),
        }
    }

    /// The answer a client knowing the password sends for this salt.
    fn expected(&self) -> String {
        let inner = self.stored.strip_prefix("md5").unwrap_or(&self.stored);
        let mut input = inner.as_bytes().to_vec();
        input.extend_from_slice(&self.salt);
        format!("md5{:x}", md5::compute(input))
    }
}

#[async_trait]
impl AuthMechanism for Md5Challenge {
    async fn begin(&mut self, _client: &(dyn ClientInfo + Send + Sync)) -> PgWireResult<AuthState> {
        Ok(AuthState::InProgress(Authentication::MD5Password(
            self.salt.to_vec(),
        )))
    }

    async fn next(
        &mut self,
        client: &(dyn ClientInfo + Send + Sync),
        message: PasswordMessageFamily,
    ) -> PgWireResult<AuthState> {
        let answer = message.into_password()?;
        if constant_time_eq(answer.password.as_bytes(), self.expected().as_bytes()) {
            return Ok(AuthState::Ok {
                final_message: None,
                identity: None,
            });
        }
        let user = client.metadata().get("user").cloned().unwrap_or_default();
        Ok(AuthState::Failed(PgWireError::InvalidPassword(user)))
    }
}

/// Compares without an early exit, so the time taken does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer libpq computes (`pg_md5_encrypt` twice) for user "alice", password
    /// "secret", salt 01 02 03 04 — computed independently with Python's hashlib.
    #[test]
    fn expected_answer_is_libpq_s() {
        let challenge = Md5Challenge {
            stored: "md54a0a68b43b6cd5cf266fa02f196e2371".into(),
            salt: [1, 2, 3, 4],
        };
        assert_eq!(challenge.expected(), "md598a0412b9c31436fc53776e863350083");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
