//! ReadyForQuery with the session's own transaction status.
//!
//! pgwire derives the status it reports (I/T/E) from the responses of each message, which
//! cannot express every PostgreSQL transition — a COMMIT that fails ends the transaction
//! (`I`), yet an error response moves pgwire to `E`. [`SessionStatus`] wraps the connection
//! while pgwire's default query handling runs and rewrites every ReadyForQuery with the status
//! the session itself tracks, so the client always sees the truth.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Sink;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, SessionExtensions};
use pgwire::messages::response::{ReadyForQuery, TransactionStatus};
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, ProtocolVersion};

/// A connection whose ReadyForQuery messages carry `status()`.
pub struct SessionStatus<'a, C, F> {
    inner: &'a mut C,
    status: F,
}

impl<'a, C, F: Fn() -> TransactionStatus> SessionStatus<'a, C, F> {
    pub fn new(inner: &'a mut C, status: F) -> Self {
        SessionStatus { inner, status }
    }
}

impl<C, F> Sink<PgWireBackendMessage> for SessionStatus<'_, C, F>
where
    C: Sink<PgWireBackendMessage> + ClientInfo + Unpin,
    F: Fn() -> TransactionStatus + Unpin,
{
    type Error = C::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut *self.get_mut().inner).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: PgWireBackendMessage) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let item = match item {
            PgWireBackendMessage::ReadyForQuery(_) => {
                let status = (this.status)();
                this.inner.set_transaction_status(status);
                PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(status))
            }
            other => other,
        };
        Pin::new(&mut *this.inner).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut *self.get_mut().inner).poll_close(cx)
    }
}

impl<C: ClientPortalStore, F> ClientPortalStore for SessionStatus<'_, C, F> {
    type PortalStore = C::PortalStore;

    fn portal_store(&self) -> &Self::PortalStore {
        self.inner.portal_store()
    }
}

impl<C: ClientInfo, F> ClientInfo for SessionStatus<'_, C, F> {
    fn socket_addr(&self) -> SocketAddr {
        self.inner.socket_addr()
    }

    fn is_secure(&self) -> bool {
        self.inner.is_secure()
    }

    fn protocol_version(&self) -> ProtocolVersion {
        self.inner.protocol_version()
    }

    fn set_protocol_version(&mut self, version: ProtocolVersion) {
        self.inner.set_protocol_version(version)
    }

    fn pid_and_secret_key(&self) -> (i32, SecretKey) {
        self.inner.pid_and_secret_key()
    }

    fn set_pid_and_secret_key(&mut self, pid: i32, secret_key: SecretKey) {
        self.inner.set_pid_and_secret_key(pid, secret_key)
    }

    fn state(&self) -> PgWireConnectionState {
        self.inner.state()
    }

    fn set_state(&mut self, new_state: PgWireConnectionState) {
        self.inner.set_state(new_state)
    }

    fn transaction_status(&self) -> TransactionStatus {
        self.inner.transaction_status()
    }

    fn set_transaction_status(&mut self, new_status: TransactionStatus) {
        self.inner.set_transaction_status(new_status)
    }

    fn metadata(&self) -> &HashMap<String, String> {
        self.inner.metadata()
    }

    fn metadata_mut(&mut self) -> &mut HashMap<String, String> {
        self.inner.metadata_mut()
    }

    fn session_extensions(&self) -> &SessionExtensions {
        self.inner.session_extensions()
    }

    fn sni_server_name(&self) -> Option<&str> {
        self.inner.sni_server_name()
    }

    fn client_certificates<'a>(
        &self,
    ) -> Option<&[pgwire::tokio::tokio_rustls::rustls::pki_types::CertificateDer<'a>]> {
        self.inner.client_certificates()
    }
}
