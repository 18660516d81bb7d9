//! The PostgreSQL listener: the accept loop, the connection limit, and each connection's
//! message loop (pgwire's own loop, reshaped so that every failure answers the client).
//!
//! - At most `max_connections` sessions run at once; one more gets, after its startup packet,
//!   FATAL 53300 "sorry, too many clients already" (a bounded number of such refusals run at a
//!   time; beyond that the socket is simply closed).
//! - A malformed message, an unknown message type or one over `max_message_bytes`
//!   ([`framing`](super::framing)) gets a FATAL ErrorResponse, then the connection closes.
//! - When the node stops, the listener closes; every session finishes the message it is
//!   handling, then gets FATAL 57P01 "terminating connection due to administrator command".
//!   [`serve`] returns once every session has ended.
//! - Encryption ([`negotiate`]): with a certificate configured, an SSLRequest is answered `S`
//!   and the stream becomes TLS ([`tls`](super::tls)), as does a connection that opens with a
//!   TLS handshake (PostgreSQL 17's direct TLS, ALPN `postgresql` required); without one, `N`.
//!   GSSENCRequest is always answered `N`. Plaintext sent after an SSLRequest but before the
//!   handshake is refused (08P01), so nothing unencrypted can be smuggled into the session.
//!   Everything above then runs over the TLS stream: the message-size guard wraps it.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ClientInfo, ConnectionManager, DefaultClient, PgWireConnectionState};
use pgwire::error::PgWireError;
use pgwire::messages::response::{GssEncResponse, SslResponse};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::codec::{Framed, FramedParts};

use crate::dispatch::Dispatcher;
use crate::frontend::pg::auth::AuthPolicy;
use crate::frontend::pg::error::{PgError, fatal};
use crate::frontend::pg::framing::{LimitedStream, MessageTooLarge};
use crate::frontend::pg::session::{Handler, Prepared, Session};
use crate::frontend::pg::tls::{ALPN_POSTGRESQL, PgStream, ServerTls};

/// How long a client may take to send its startup packet.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections over the limit being answered with 53300 at once; more are just closed.
const MAX_REFUSALS: usize = 32;
/// How long the server waits for sessions to end after the node stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The first byte of a TLS handshake record: a direct-TLS client sends it where a startup
/// packet's length word would start.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Limits and security of the PostgreSQL front end.
#[derive(Clone)]
pub struct PgSettings {
    pub max_connections: usize,
    pub max_message_bytes: usize,
    /// TLS, when a certificate is configured.
    pub tls: Option<ServerTls>,
    pub auth: Arc<AuthPolicy>,
}

type Socket = Framed<LimitedStream<PgStream>, PgWireMessageServerCodec<Arc<Prepared>>>;

/// Accepts PostgreSQL clients until `stop` turns true, then waits for their sessions to end.
pub async fn serve(
    listener: TcpListener,
    dispatcher: Dispatcher,
    settings: PgSettings,
    mut stop: watch::Receiver<bool>,
) {
    let sessions = Arc::new(Semaphore::new(settings.max_connections));
    // Sessions by (pid, secret key), for CancelRequest: a client sends it on a new connection
    // to the node its session is on.
    let connections = Arc::new(ConnectionManager::new());
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        let (tcp, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("pg accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let socket = Framed::new(
            LimitedStream::new(PgStream::Plain(tcp), settings.max_message_bytes),
            PgWireMessageServerCodec::new(DefaultClient::new(addr, false)),
        );
        match sessions.clone().try_acquire_owned() {
            Ok(permit) => {
                let dispatcher = dispatcher.clone();
                let stop = stop.clone();
                let connections = connections.clone();
                let settings = settings.clone();
                tokio::spawn(async move {
                    run_connection(socket, dispatcher, connections, &settings, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    let settings = settings.clone();
                    tokio::spawn(async move {
                        refuse(socket, &settings).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    let all = u32::try_from(settings.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN_TIMEOUT, sessions.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("pg sessions still open after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Answers SSLRequest (TLS when configured, else `N`) and GSSENCRequest (always `N`), or
/// takes a direct TLS handshake; returns the socket — upgraded to TLS if it was — once the
/// startup packet (or a CancelRequest) is next, or `None` if the client went away, sent
/// garbage or failed the handshake. The whole negotiation must end within `STARTUP_TIMEOUT`.
async fn negotiate(mut socket: Socket, settings: &PgSettings) -> Option<Socket> {
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    if let Some(tls) = &settings.tls
        && opens_with_tls_handshake(&socket, deadline).await
    {
        let socket = upgrade(socket, tls, settings.max_message_bytes, deadline).await?;
        // PostgreSQL 17 refuses a direct handshake without its ALPN name: a client of some
        // other protocol must not end up talking to this one by accident.
        if socket.get_ref().get_ref().alpn_protocol() != Some(ALPN_POSTGRESQL) {
            tracing::debug!("direct TLS without ALPN \"postgresql\"; closing");
            return None;
        }
        return Some(socket);
    }
    loop {
        let message = match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(message))) => message,
            _ => return None,
        };
        let answer = match message {
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)) => {
                if let Some(tls) = &settings.tls {
                    if socket
                        .send(PgWireBackendMessage::SslResponse(SslResponse::Accept))
                        .await
                        .is_err()
                    {
                        return None;
                    }
                    return upgrade(socket, tls, settings.max_message_bytes, deadline).await;
                }
                PgWireBackendMessage::SslResponse(SslResponse::Refuse)
            }
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
                PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse)
            }
            // Not an encryption request: the startup packet (or a cancel request) is next.
            _ => {
                socket.set_state(PgWireConnectionState::AwaitingStartup);
                return Some(socket);
            }
        };
        if socket.send(answer).await.is_err() {
            return None;
        }
    }
}

/// Whether the client's first byte starts a TLS handshake record (direct TLS) rather than a
/// startup-phase packet, whose length word starts with 0 for any sane length.
async fn opens_with_tls_handshake(socket: &Socket, deadline: tokio::time::Instant) -> bool {
    let PgStream::Plain(tcp) = socket.get_ref().get_ref() else {
        return false;
    };
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await,
        Ok(Ok(1))
    ) && first[0] == TLS_HANDSHAKE_RECORD
}

/// Runs the TLS handshake on the plain socket and returns a new socket over TLS, awaiting the
/// startup packet, with the message-size guard starting afresh.
async fn upgrade(
    socket: Socket,
    tls: &ServerTls,
    max_message_bytes: usize,
    deadline: tokio::time::Instant,
) -> Option<Socket> {
    let parts = socket.into_parts();
    let addr = parts.codec.client_info.socket_addr;
    let PgStream::Plain(tcp) = parts.io.into_inner() else {
        return None;
    };
    if !parts.read_buf.is_empty() {
        // Bytes the client sent in the clear after its SSLRequest would be read as if they
        // came through TLS (CVE-2021-23214 in PostgreSQL); refuse them in the clear.
        let mut plain = Framed::new(
            LimitedStream::new(PgStream::Plain(tcp), max_message_bytes),
            PgWireMessageServerCodec::new(DefaultClient::new(addr, false)),
        );
        send_fatal(
            &mut plain,
            fatal("08P01", "received unencrypted data after SSL request"),
        )
        .await;
        return None;
    }
    let stream = match tokio::time::timeout_at(deadline, tls.acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(%addr, "pg TLS handshake failed: {e}");
            return None;
        }
        Err(_) => return None,
    };
    let mut socket = Framed::from_parts(FramedParts::new(
        LimitedStream::new(PgStream::Tls(Box::new(stream)), max_message_bytes),
        PgWireMessageServerCodec::new(DefaultClient::new(addr, true)),
    ));
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    Some(socket)
}

/// Sends a FATAL error and closes.
async fn send_fatal(socket: &mut Socket, info: PgError) {
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse((*info).into()))
        .await;
    let _ = socket.close().await;
}

/// Over the connection limit: let the client send its startup packet, answer 53300.
async fn refuse(socket: Socket, settings: &PgSettings) {
    let Some(mut socket) = negotiate(socket, settings).await else {
        return;
    };
    if let Ok(Some(Ok(PgWireFrontendMessage::Startup(_)))) =
        tokio::time::timeout(STARTUP_TIMEOUT, socket.next()).await
    {
        send_fatal(
            &mut socket,
            fatal("53300", "sorry, too many clients already"),
        )
        .await;
    }
}

/// The FATAL answer to a frame the decoder could not accept.
fn decode_failure(error: &PgWireError) -> PgError {
    if let PgWireError::IoError(io) = error
        && let Some(too_large) = io
            .get_ref()
            .and_then(|e| e.downcast_ref::<MessageTooLarge>())
    {
        return fatal("54000", too_large.to_string());
    }
    match error {
        PgWireError::MessageTooLarge(limit, length) => fatal(
            "54000",
            format!("message of {length} bytes exceeds the protocol limit of {limit} bytes"),
        ),
        other => fatal("08P01", format!("invalid frontend message: {other}")),
    }
}

/// One client connection, from encryption negotiation to the end.
async fn run_connection(
    socket: Socket,
    dispatcher: Dispatcher,
    connections: Arc<ConnectionManager>,
    settings: &PgSettings,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut socket) = negotiate(socket, settings).await else {
        return;
    };
    let cancel = Arc::new(DefaultCancelHandler::new(connections.clone()));
    let handler = Arc::new(Handler::new(
        Session::new(dispatcher),
        connections,
        settings.auth.clone(),
    ));
    let startup_deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    loop {
        let in_startup = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = tokio::select! {
            next = socket.next() => next,
            () = stopped(&mut stop) => {
                send_fatal(&mut socket, fatal("57P01", "terminating connection due to administrator command")).await;
                return;
            }
            _ = tokio::time::sleep_until(startup_deadline), if in_startup => {
                send_fatal(&mut socket, fatal("08P01", "startup timed out")).await;
                return;
            }
        };
        let message = match next {
            None => return,
            Some(Err(e)) => {
                send_fatal(&mut socket, decode_failure(&e)).await;
                return;
            }
            Some(Ok(PgWireFrontendMessage::Terminate(_))) => return,
            Some(Ok(message)) => message,
        };
        let is_cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let is_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let result = process_message(
            message,
            &mut socket,
            handler.clone(),
            handler.clone(),
            handler.clone(),
            handler.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(e) = result {
            let fatal = e.is_fatal();
            if process_error(&mut socket, e, is_extended).await.is_err() || fatal {
                return;
            }
        }
        if is_cancel {
            return;
        }
    }
}
