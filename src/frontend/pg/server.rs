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

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::{ClientInfo, ConnectionManager, DefaultClient, PgWireConnectionState};
use pgwire::error::PgWireError;
use pgwire::messages::response::{GssEncResponse, SslResponse};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::codec::Framed;

use crate::dispatch::Dispatcher;
use crate::frontend::pg::error::{PgError, fatal};
use crate::frontend::pg::framing::{LimitedStream, MessageTooLarge};
use crate::frontend::pg::session::{Handler, Prepared, Session};

/// How long a client may take to send its startup packet.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections over the limit being answered with 53300 at once; more are just closed.
const MAX_REFUSALS: usize = 32;
/// How long the server waits for sessions to end after the node stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of the PostgreSQL front end.
#[derive(Debug, Clone, Copy)]
pub struct PgSettings {
    pub max_connections: usize,
    pub max_message_bytes: usize,
}

type Socket = Framed<LimitedStream<TcpStream>, PgWireMessageServerCodec<Arc<Prepared>>>;

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
            LimitedStream::new(tcp, settings.max_message_bytes),
            PgWireMessageServerCodec::new(DefaultClient::new(addr, false)),
        );
        match sessions.clone().try_acquire_owned() {
            Ok(permit) => {
                let dispatcher = dispatcher.clone();
                let stop = stop.clone();
                let connections = connections.clone();
                tokio::spawn(async move {
                    run_connection(socket, dispatcher, connections, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(socket).await;
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

/// Refuses SSL/GSS encryption (TLS comes in a later increment) and returns once the startup
/// packet is next; `false` if the client went away or sent garbage.
async fn negotiate(socket: &mut Socket) -> bool {
    loop {
        let message = match tokio::time::timeout(STARTUP_TIMEOUT, socket.next()).await {
            Ok(Some(Ok(message))) => message,
            _ => return false,
        };
        let answer = match message {
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(_)) => {
                PgWireBackendMessage::SslResponse(SslResponse::Refuse)
            }
            PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(_)) => {
                PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse)
            }
            // Not an encryption request: the startup packet (or a cancel request) is next.
            _ => {
                socket.set_state(PgWireConnectionState::AwaitingStartup);
                return true;
            }
        };
        if socket.send(answer).await.is_err() {
            return false;
        }
    }
}

/// Sends a FATAL error and closes.
async fn send_fatal(socket: &mut Socket, info: PgError) {
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse((*info).into()))
        .await;
    let _ = socket.close().await;
}

/// Over the connection limit: let the client send its startup packet, answer 53300.
async fn refuse(mut socket: Socket) {
    if !negotiate(&mut socket).await {
        return;
    }
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
    mut socket: Socket,
    dispatcher: Dispatcher,
    connections: Arc<ConnectionManager>,
    mut stop: watch::Receiver<bool>,
) {
    if !negotiate(&mut socket).await {
        return;
    }
    let cancel = Arc::new(DefaultCancelHandler::new(connections.clone()));
    let handler = Arc::new(Handler::new(Session::new(dispatcher), connections));
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
