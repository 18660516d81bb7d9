//! Who may open a PostgreSQL session: the node's [`AuthPolicy`] and each connection's
//! [`Login`] handshake.
//!
//! The policy works like a two-line `pg_hba.conf`: one method for clients connecting from a
//! loopback address (`pg_auth_loopback`, default `trust`), one for everyone else
//! (`pg_auth_remote`, default `scram-sha-256`), with PostgreSQL's meanings:
//!
//! | method | what the client must do |
//! |---|---|
//! | `trust` | nothing: any user name is accepted |
//! | `scram-sha-256` | SCRAM-SHA-256 (SCRAM-SHA-256-PLUS with channel binding over TLS) against the user's stored verifier |
//! | `md5` | md5 if the user's stored hash is md5, SCRAM otherwise |
//! | `reject` | nothing works: FATAL 28000 |
//!
//! With `pg_tls_required`, a session that did not negotiate TLS is refused first (FATAL 28000,
//! like a `hostssl`-only `pg_hba.conf`). Users and their hashes come from the config
//! (`[[pg_users]]`, [`hash`]); no plaintext password exists on the server.
//!
//! Failures never tell an unknown user from a wrong password: an unknown user (or a user whose
//! stored hash the method cannot use) gets a SCRAM exchange against a mock verifier, derived
//! from a secret every node shares (a digest of the configured hashes), so its salt is stable
//! across attempts and nodes like a real one; it ends in the same FATAL 28P01
//! `password authentication failed for user "x"`. The server log says what really happened.
//!
//! # Life of a login
//!
//! 1. The startup packet reaches `session::Handler::on_startup`, which calls [`Login::start`]:
//!    the policy picks the method from the client's address and user, and the mechanism's
//!    first challenge (AuthenticationSASL or AuthenticationMD5Password) goes out; `trust`
//!    finishes at once.
//! 2. Each password message goes to [`Login::advance`]; the mechanism (pgwire's SCRAM over
//!    [`UserStore`], or [`md5::Md5Challenge`]) checks it.
//! 3. On success the handler sends SCRAM's final message, AuthenticationOk, ParameterStatus,
//!    BackendKeyData and ReadyForQuery; on failure the error is FATAL and the connection closes.

pub mod cli;
pub mod hash;
pub mod md5;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pgwire::api::ClientInfo;
use pgwire::api::auth::mechanism::{AuthMechanism, AuthMechanismFactory, AuthState};
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret};
use pgwire::api::auth::{AuthSource, LoginInfo, Password};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use ring::{digest, hmac};
use serde::{Deserialize, Serialize};

use crate::frontend::pg::error::{PgError, fatal};
use hash::{PasswordHash, SCRAM_ITERATIONS};

/// How a class of clients authenticates (PostgreSQL's `pg_hba.conf` method names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthMethod {
    #[serde(rename = "trust")]
    Trust,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "reject")]
    Reject,
}

impl AuthMethod {
    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::Trust => "trust",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Md5 => "md5",
            AuthMethod::Reject => "reject",
        }
    }
}

/// The validated authentication settings of a node (`NodeConfig::pg_auth_settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub loopback: AuthMethod,
    pub remote: AuthMethod,
    pub tls_required: bool,
    /// Stored hash by user name.
    pub users: BTreeMap<String, PasswordHash>,
}

/// The node's authentication policy, shared by every connection.
pub struct AuthPolicy {
    loopback: AuthMethod,
    remote: AuthMethod,
    tls_required: bool,
    store: Arc<UserStore>,
    /// SCRAM for plaintext connections: SCRAM-SHA-256 only.
    scram: ScramAuth,
    /// SCRAM for TLS connections: also SCRAM-SHA-256-PLUS (tls-server-end-point channel
    /// binding) when the certificate's signature algorithm allows it.
    scram_tls: ScramAuth,
}

impl AuthPolicy {
    /// `certificate_pem`: the TLS certificate chain, if TLS is on, for channel binding.
    pub fn new(settings: AuthSettings, certificate_pem: Option<&[u8]>) -> AuthPolicy {
        let store = Arc::new(UserStore::new(settings.users));
        let scram = ScramAuth::new(store.clone());
        let mut scram_tls = scram.clone();
        if let Some(pem) = certificate_pem
            && let Err(e) = scram_tls.configure_certificate(pem)
        {
            tracing::warn!("SCRAM channel binding is off: {e}");
        }
        AuthPolicy {
            loopback: settings.loopback,
            remote: settings.remote,
            tls_required: settings.tls_required,
            store,
            scram,
            scram_tls,
        }
    }

    /// The method for a client at `address`.
    pub fn method_for(&self, address: IpAddr) -> AuthMethod {
        if is_loopback(address) {
            self.loopback
        } else {
            self.remote
        }
    }

    /// The mechanism that checks `user` under `method` (`None`: trust).
    fn mechanism(
        &self,
        method: AuthMethod,
        user: &str,
        secure: bool,
    ) -> Option<Box<dyn AuthMechanism>> {
        let scram = if secure { &self.scram_tls } else { &self.scram };
        match (method, self.store.users.get(user)) {
            (AuthMethod::Trust | AuthMethod::Reject, _) => None,
            (AuthMethod::Md5, Some(PasswordHash::Md5(stored))) => {
                Some(Box::new(md5::Md5Challenge::new(stored)))
            }
            (AuthMethod::Md5 | AuthMethod::ScramSha256, _) => Some(scram.create()),
        }
    }
}

/// Loopback, including IPv4-mapped IPv6 loopback (`::ffff:127.0.0.1`).
fn is_loopback(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// What the handler sends next.
#[derive(Debug)]
pub enum LoginStep {
    /// A challenge; the client answers with a password message.
    Challenge(Authentication),
    /// Authenticated; send this final message (SCRAM's server signature) first, if any.
    Done(Option<Authentication>),
}

/// One connection's authentication handshake.
pub struct Login {
    policy: Arc<AuthPolicy>,
    /// The mechanism between its challenge and the client's answer. A std mutex, never held
    /// across an `.await`: the mechanism is taken out while it runs.
    pending: Mutex<Option<Box<dyn AuthMechanism>>>,
}

impl Login {
    pub fn new(policy: Arc<AuthPolicy>) -> Login {
        Login {
            policy,
            pending: Mutex::new(None),
        }
    }

    /// After the startup packet (its parameters are in the client's metadata): refuses, trusts
    /// or sends the first challenge.
    pub async fn start(
        &self,
        client: &(dyn ClientInfo + Send + Sync),
        user: &str,
    ) -> Result<LoginStep, PgError> {
        let address = client.socket_addr();
        if self.policy.tls_required && !client.is_secure() {
            tracing::info!(%address, user, "pg session refused: no TLS (pg_tls_required)");
            return Err(fatal(
                "28000",
                format!(
                    "connection refused for host \"{}\", user \"{user}\", no encryption: this server requires SSL (pg_tls_required)",
                    address.ip()
                ),
            ));
        }
        let method = self.policy.method_for(address.ip());
        if method == AuthMethod::Reject {
            tracing::info!(%address, user, "pg session refused by the auth method reject");
            return Err(fatal(
                "28000",
                format!(
                    "connection rejected for host \"{}\", user \"{user}\" (authentication method reject)",
                    address.ip()
                ),
            ));
        }
        let Some(mut mechanism) = self.policy.mechanism(method, user, client.is_secure()) else {
            return Ok(LoginStep::Done(None));
        };
        let state = mechanism.begin(client).await;
        self.step(state, mechanism, address, user)
    }

    /// A password message (md5 answer, SASLInitialResponse or SASLResponse).
    pub async fn advance(
        &self,
        client: &(dyn ClientInfo + Send + Sync),
        user: &str,
        message: PasswordMessageFamily,
    ) -> Result<LoginStep, PgError> {
        let taken = self.lock_pending().take();
        let Some(mut mechanism) = taken else {
            return Err(fatal(
                "08P01",
                "unexpected password message: no authentication in progress",
            ));
        };
        let state = mechanism.next(client, message).await;
        self.step(state, mechanism, client.socket_addr(), user)
    }

    fn step(
        &self,
        state: PgWireResult<AuthState>,
        mechanism: Box<dyn AuthMechanism>,
        address: SocketAddr,
        user: &str,
    ) -> Result<LoginStep, PgError> {
        match state {
            Ok(AuthState::InProgress(challenge)) => {
                *self.lock_pending() = Some(mechanism);
                Ok(LoginStep::Challenge(challenge))
            }
            Ok(AuthState::Ok { final_message, .. }) => {
                tracing::debug!(%address, user, "pg password authentication succeeded");
                Ok(LoginStep::Done(final_message))
            }
            Ok(AuthState::Failed(error)) | Err(error) => {
                let known = self.policy.store.users.contains_key(user);
                tracing::info!(%address, user, known_user = known, "pg authentication failed: {error}");
                Err(failure(&error, user))
            }
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Option<Box<dyn AuthMechanism>>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The client-facing error of a failed handshake: a wrong password (or an unknown user) is
/// 28P01 with PostgreSQL's words; a malformed exchange is a protocol violation.
fn failure(error: &PgWireError, user: &str) -> PgError {
    match error {
        PgWireError::InvalidPassword(_) => fatal(
            "28P01",
            format!("password authentication failed for user \"{user}\""),
        ),
        PgWireError::UserError(info) => fatal(&info.code, info.message.clone()),
        other => fatal("08P01", format!("authentication failed: {other}")),
    }
}

/// The configured users, as pgwire's SCRAM implementation asks for them.
pub struct UserStore {
    users: BTreeMap<String, PasswordHash>,
    /// Keys the mock verifiers of unknown users.
    mock_key: hmac::Key,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl UserStore {
    fn new(users: BTreeMap<String, PasswordHash>) -> UserStore {
        // Every node with the same config derives the same key, and it is as secret as the
        // hashes themselves: an attacker cannot tell a mock salt from a real one by comparing
        // nodes or attempts.
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(b"phalanx mock SCRAM verifier\0");
        for (name, hash) in &users {
            context.update(name.as_bytes());
            context.update(b"\0");
            context.update(hash.to_string().as_bytes());
            context.update(b"\0");
        }
        let secret = context.finish();
        UserStore {
            users,
            mock_key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_ref()),
        }
    }

    /// A verifier no password matches, stable for a user name.
    fn mock_verifier(&self, user: &str) -> ScramSecret {
        let derive = |label: &str| {
            let mut input = label.as_bytes().to_vec();
            input.extend_from_slice(user.as_bytes());
            hmac::sign(&self.mock_key, &input).as_ref().to_vec()
        };
        let mut salt = derive("salt\0");
        salt.truncate(16);
        ScramSecret::Verifier {
            salt,
            iterations: SCRAM_ITERATIONS,
            stored_key: derive("stored key\0"),
            server_key: derive("server key\0"),
        }
    }
}

#[async_trait]
impl AuthSource for UserStore {
    /// Never used: no plaintext or salted password exists on the server, only verifiers.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_owned(),
        ))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().unwrap_or_default();
        let secret = match self.users.get(user) {
            Some(PasswordHash::Scram(v)) => ScramSecret::Verifier {
                salt: v.salt.clone(),
                iterations: v.iterations,
                stored_key: v.stored_key.clone(),
                server_key: v.server_key.clone(),
            },
            _ => self.mock_verifier(user),
        };
        Ok((secret, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(loopback: AuthMethod, remote: AuthMethod) -> AuthPolicy {
        let users = BTreeMap::from([
            ("scram".to_owned(), PasswordHash::scram("pw")),
            ("old".to_owned(), PasswordHash::md5("old", "pw")),
        ]);
        AuthPolicy::new(
            AuthSettings {
                loopback,
                remote,
                tls_required: false,
                users,
            },
            None,
        )
    }

    #[test]
    fn the_method_follows_the_client_address() {
        let p = policy(AuthMethod::Trust, AuthMethod::ScramSha256);
        for loopback in ["127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = loopback.parse().expect("ip");
            assert_eq!(p.method_for(ip), AuthMethod::Trust, "{loopback}");
        }
        for remote in ["10.0.0.1", "::ffff:10.0.0.1", "fe80::1"] {
            let ip: IpAddr = remote.parse().expect("ip");
            assert_eq!(p.method_for(ip), AuthMethod::ScramSha256, "{remote}");
        }
    }

    #[test]
    fn md5_only_for_md5_users_under_the_md5_method() {
        let p = policy(AuthMethod::Md5, AuthMethod::ScramSha256);
        assert!(p.mechanism(AuthMethod::Trust, "old", false).is_none());
        // The first challenge tells which mechanism was chosen.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let client =
            pgwire::api::DefaultClient::<()>::new("127.0.0.1:1".parse().expect("a"), false);
        let challenge = |method, user: &str| {
            let mut mechanism = p.mechanism(method, user, false).expect("a mechanism");
            match runtime.block_on(mechanism.begin(&client)) {
                Ok(AuthState::InProgress(Authentication::MD5Password(_))) => "md5",
                Ok(AuthState::InProgress(Authentication::SASL(_))) => "scram",
                other => panic!("unexpected first state {other:?}"),
            }
        };
        assert_eq!(challenge(AuthMethod::Md5, "old"), "md5");
        assert_eq!(challenge(AuthMethod::Md5, "scram"), "scram");
        // Unknown users look like SCRAM users; md5 users under scram-sha-256 cannot pass.
        assert_eq!(challenge(AuthMethod::Md5, "nobody"), "scram");
        assert_eq!(challenge(AuthMethod::ScramSha256, "old"), "scram");
    }

    #[test]
    fn mock_verifiers_are_stable_and_depend_on_the_user_and_config() {
        let a = UserStore::new(BTreeMap::new());
        let b = UserStore::new(BTreeMap::new());
        let salt = |store: &UserStore, user: &str| match store.mock_verifier(user) {
            ScramSecret::Verifier { salt, .. } => salt,
            ScramSecret::SaltedPassword { .. } => Vec::new(),
        };
        assert_eq!(salt(&a, "x"), salt(&b, "x"), "same config, same mock");
        assert_ne!(salt(&a, "x"), salt(&a, "y"));
        let c = UserStore::new(BTreeMap::from([("u".to_owned(), PasswordHash::scram("p"))]));
        assert_ne!(
            salt(&a, "x"),
            salt(&c, "x"),
            "the key depends on the configured hashes"
        );
        assert_eq!(salt(&a, "x").len(), 16);
    }

    #[test]
    fn failures_do_not_tell_unknown_users_from_wrong_passwords() {
        let e = failure(&PgWireError::InvalidPassword("whatever".into()), "bob");
        assert_eq!(
            (e.severity.as_str(), e.code.as_str(), e.message.as_str()),
            (
                "FATAL",
                "28P01",
                "password authentication failed for user \"bob\""
            )
        );
    }
}
