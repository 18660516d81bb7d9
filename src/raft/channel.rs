//! The node-to-node channel: one long-lived connection per peer that carries many small
//! application RPCs at once — remote reads, read index requests, health probes, forwarded
//! writes and transaction steps of up to [`MAX_CHANNEL_REQUEST_BYTES`] — multiplexed
//! by request id and written in batches, so that concurrent reads share system calls and
//! buffers instead of paying a whole HTTP exchange each (on loopback, the HTTP client's
//! request building and its per-request socket writes cost more than the point read itself).
//!
//! It is opened as an HTTP/1.1 upgrade on the raft port (`POST /internal/channel` with
//! `Upgrade: phalanx-channel/1`), so it needs no port of its own. The per-request HTTP RPCs
//! remain for everything else (Raft messages, larger requests, snapshots, membership changes)
//! and are the fallback towards a peer that does not offer the channel.
//!
//! Frames, both directions: `[u32 big-endian length][u64 id][u8 kind][postcard payload]`, the
//! length counting what follows it. A request's kind names the RPC ([`Method`]); a reply's says
//! whether the payload is the RPC's answer ([`REPLY_OK`]) or an error text ([`REPLY_ERROR`]).
//! Replies come in any order. Each side has one writer task that drains every frame queued
//! since its last write into one write. A caller that stops waiting sends a cancel frame
//! (kind `0xff`, its request's id) and the server drops that request's handler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

/// The path of the upgrade request (server: `raft::rpc_server`).
pub const PATH: &str = "/internal/channel";
/// The protocol named in the `Upgrade` headers.
pub const PROTOCOL: &str = "phalanx-channel/1";
/// Largest frame either side accepts (a remote read's rows can be large).
const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;
/// Larger requests (a big forwarded write) travel over per-request HTTP, so that they do not
/// hold up the small ones behind them.
pub const MAX_CHANNEL_REQUEST_BYTES: usize = 64 * 1024;
/// A writer stops gathering queued frames into one write past this many bytes.
const MAX_WRITE_BYTES: usize = 256 * 1024;
/// How long opening a channel (TCP connect and the upgrade exchange) may take.
const OPEN_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a peer that answered the upgrade with something else is asked over HTTP instead.
const NOT_OFFERED_RETRY: Duration = Duration::from_secs(30);

pub const REPLY_OK: u8 = 0;
pub const REPLY_ERROR: u8 = 1;
/// A request-direction frame with no payload: the caller of request `id` stopped waiting, so
/// the server drops its handler if it still runs — as an HTTP server drops the handler of a
/// request whose client closed the connection. A forwarded write then never starts once its
/// sender has answered "outcome unknown" (the write pipeline skips a request nobody awaits).
const CANCEL: u8 = 0xff;
/// Bytes before a frame's payload, after the length: id and kind.
const HEADER_BYTES: usize = 9;

/// The RPCs the channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `dispatch::RemoteRead` → `Result<ReadOutcome, RequestError>`.
    Query = 1,
    /// `()` → `Result<LogIndex, RequestError>`.
    ReadIndex = 2,
    /// `()` → `dispatch::load::HealthReport`.
    Health = 3,
    /// A forwarded write, `Vec<Statement>` → `Result<WriteOutcome, RequestError>`.
    Execute = 4,
    /// A step of a forwarded explicit transaction, `TxnRequest` → its answer.
    Transaction = 5,
}

impl Method {
    pub fn from_kind(kind: u8) -> Option<Method> {
        match kind {
            1 => Some(Method::Query),
            2 => Some(Method::ReadIndex),
            3 => Some(Method::Health),
            4 => Some(Method::Execute),
            5 => Some(Method::Transaction),
            _ => None,
        }
    }
}

/// Why a call over the channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The peer does not offer the channel: ask it over HTTP.
    #[error("peer does not offer the channel")]
    NotOffered,
    /// The request was never sent: the connection could not be opened.
    #[error("cannot open a channel: {0}")]
    Unreachable(String),
    /// The request may have reached the peer; the connection closed before its answer.
    #[error("channel closed: {0}")]
    Closed(String),
    /// The peer answered with an error text (it could not decode or serve the request).
    #[error("peer refused the request: {0}")]
    Refused(String),
    #[error("no answer in time")]
    Timeout,
}

/// Encodes one frame.
fn encode_frame(id: u64, kind: u8, payload: &[u8]) -> Result<Bytes, ChannelError> {
    let length = HEADER_BYTES + payload.len();
    if length > MAX_FRAME_BYTES {
        return Err(ChannelError::Refused(format!(
            "frame of {length} bytes is over the {MAX_FRAME_BYTES}-byte limit"
        )));
    }
    let mut buffer = BytesMut::with_capacity(4 + length);
    buffer.put_u32(length as u32);
    buffer.put_u64(id);
    buffer.put_u8(kind);
    buffer.put_slice(payload);
    Ok(buffer.freeze())
}

/// Splits a received frame (without its length) into id, kind and payload.
fn parse(mut frame: BytesMut) -> Option<(u64, u8, Bytes)> {
    if frame.len() < HEADER_BYTES {
        return None;
    }
    let id = frame.get_u64();
    let kind = frame.get_u8();
    Some((id, kind, frame.freeze()))
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

/// Writes every queued frame, gathering those already waiting into one write, until the
/// queue closes or the connection fails.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut queue: mpsc::UnboundedReceiver<Bytes>,
) -> std::io::Result<()> {
    let mut buffer = BytesMut::new();
    while let Some(first) = queue.recv().await {
        buffer.extend_from_slice(&first);
        while buffer.len() < MAX_WRITE_BYTES {
            match queue.try_recv() {
                Ok(next) => buffer.extend_from_slice(&next),
                Err(_) => break,
            }
        }
        writer.write_all(&buffer).await?;
        writer.flush().await?;
        buffer.clear();
    }
    writer.shutdown().await
}

/// The calls waiting for their replies on one open channel.
#[derive(Default)]
struct Pending {
    /// Set once the connection is gone; no call registers after that.
    closed: Option<String>,
    waiting: HashMap<u64, oneshot::Sender<Result<Bytes, ChannelError>>>,
}

/// One open connection to a peer.
struct Channel {
    queue: mpsc::UnboundedSender<Bytes>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// Mirrors `pending.closed` for a lock-free check.
    closed: AtomicBool,
}

impl Channel {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    /// Starts the reader and writer tasks over an upgraded connection.
    fn start<IO>(io: IO) -> Arc<Channel>
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (queue, outgoing) = mpsc::unbounded_channel();
        let channel = Arc::new(Channel {
            queue,
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        });
        let writer = channel.clone();
        tokio::spawn(async move {
            if let Err(e) = write_frames(write, outgoing).await {
                writer.close(format!("write failed: {e}"));
            }
        });
        let reader = channel.clone();
        tokio::spawn(async move {
            let why = reader.read_replies(read).await;
            reader.close(why);
        });
        channel
    }

    /// Hands each reply to its caller until the connection ends; returns why it ended.
    async fn read_replies<R: AsyncRead + Unpin>(&self, read: R) -> String {
        let mut frames = FramedRead::new(read, codec());
        while let Some(frame) = frames.next().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => return format!("read failed: {e}"),
            };
            let Some((id, kind, payload)) = parse(frame) else {
                return "malformed reply frame".to_owned();
            };
            let reply = match kind {
                REPLY_OK => Ok(payload),
                _ => Err(ChannelError::Refused(
                    String::from_utf8_lossy(&payload).into_owned(),
                )),
            };
            // A caller that timed out has gone; its late reply is dropped.
            if let Some(waiter) = self.pending().waiting.remove(&id) {
                let _ = waiter.send(reply);
            }
        }
        "the peer closed the connection".to_owned()
    }

    /// Marks the channel gone and fails every call still waiting.
    fn close(&self, why: String) {
        let waiting = {
            let mut pending = self.pending();
            if pending.closed.is_none() {
                pending.closed = Some(why.clone());
            }
            std::mem::take(&mut pending.waiting)
        };
        self.closed.store(true, Ordering::SeqCst);
        for waiter in waiting.into_values() {
            let _ = waiter.send(Err(ChannelError::Closed(why.clone())));
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Sends one request and waits for its reply (the caller bounds the wait).
    async fn call(&self, method: Method, payload: &[u8]) -> Result<Bytes, ChannelError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = encode_frame(id, method as u8, payload)?;
        let (waiter, reply) = oneshot::channel();
        {
            let mut pending = self.pending();
            if let Some(why) = &pending.closed {
                return Err(ChannelError::Unreachable(why.clone()));
            }
            pending.waiting.insert(id, waiter);
        }
        // Removes the waiter however the call ends (answered, timed out, cancelled).
        let _forget = ForgetOnDrop { channel: self, id };
        if self.queue.send(request).is_err() {
            return Err(ChannelError::Unreachable("the writer stopped".into()));
        }
        match reply.await {
            Ok(answer) => answer,
            Err(_) => Err(ChannelError::Closed("the reader stopped".into())),
        }
    }
}

struct ForgetOnDrop<'a> {
    channel: &'a Channel,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        let unanswered = self.channel.pending().waiting.remove(&self.id).is_some();
        if unanswered && let Ok(cancel) = encode_frame(self.id, CANCEL, &[]) {
            // Best effort: a closed channel has dropped the handler already.
            let _ = self.channel.queue.send(cancel);
        }
    }
}

/// The client side: one channel per peer address, opened on first use and reopened after it
/// closes.
pub struct Channels {
    http: reqwest::Client,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
}

#[derive(Default)]
struct Slot {
    open: Option<Arc<Channel>>,
    /// When the peer answered the upgrade with something else: HTTP until then + a while.
    not_offered: Option<Instant>,
}

impl Channels {
    pub fn new(http: reqwest::Client) -> Channels {
        Channels {
            http,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Calls `method` on the peer at `addr` (its raft address) with an encoded request;
    /// returns the encoded answer. Bounded by `timeout`, opening the channel included.
    pub async fn call(
        &self,
        addr: &str,
        method: Method,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, ChannelError> {
        let attempt = async {
            let channel = self.channel(addr).await?;
            channel.call(method, payload).await
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(Err(ChannelError::Timeout))
    }

    /// The open channel to `addr`, opened now if there is none.
    async fn channel(&self, addr: &str) -> Result<Arc<Channel>, ChannelError> {
        let slot = {
            let mut slots = lock(&self.slots);
            slots.entry(addr.to_owned()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(channel) = &slot.open
            && !channel.is_closed()
        {
            return Ok(channel.clone());
        }
        if let Some(since) = slot.not_offered
            && since.elapsed() < NOT_OFFERED_RETRY
        {
            return Err(ChannelError::NotOffered);
        }
        slot.open = None;
        match tokio::time::timeout(OPEN_TIMEOUT, self.open(addr)).await {
            Ok(Ok(channel)) => {
                slot.not_offered = None;
                slot.open = Some(channel.clone());
                Ok(channel)
            }
            Ok(Err(ChannelError::NotOffered)) => {
                slot.not_offered = Some(Instant::now());
                Err(ChannelError::NotOffered)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ChannelError::Unreachable(format!(
                "no upgrade answer within {} ms",
                OPEN_TIMEOUT.as_millis()
            ))),
        }
    }

    async fn open(&self, addr: &str) -> Result<Arc<Channel>, ChannelError> {
        use reqwest::header::{CONNECTION, UPGRADE};
        let response = self
            .http
            .post(format!("http://{addr}{PATH}"))
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, PROTOCOL)
            .send()
            .await
            .map_err(|e| ChannelError::Unreachable(e.to_string()))?;
        if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            tracing::info!(
                peer = addr,
                status = %response.status(),
                "peer does not offer the node-to-node channel; using per-request HTTP"
            );
            return Err(ChannelError::NotOffered);
        }
        let upgraded = response
            .upgrade()
            .await
            .map_err(|e| ChannelError::Unreachable(e.to_string()))?;
        Ok(Channel::start(upgraded))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server side of one channel: reads requests, has `serve` answer each (concurrently),
/// and writes the replies back as they finish, until the peer closes the connection or
/// `stop` turns true.
pub async fn serve<IO, S, Fut>(io: IO, serve: S, mut stop: tokio::sync::watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
    S: Fn(Method, Bytes) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Vec<u8>, String>> + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (replies, outgoing) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(write_frames(write, outgoing));
    let mut frames = FramedRead::new(read, codec());
    // The handlers still running, by request id, so that a cancel can drop one.
    let running: Arc<Mutex<HashMap<u64, tokio::task::AbortHandle>>> = Arc::default();
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                tracing::debug!("node-to-node channel read failed: {e}");
                break;
            }
            None => break,
        };
        let Some((id, kind, payload)) = parse(frame) else {
            tracing::warn!("malformed frame on the node-to-node channel; closing it");
            break;
        };
        if kind == CANCEL {
            if let Some(handler) = lock(&running).remove(&id) {
                handler.abort();
            }
            continue;
        }
        let replies = replies.clone();
        let serve = serve.clone();
        let done = running.clone();
        // Registered before it can finish, so its own removal below always finds it.
        let mut handlers = lock(&running);
        let handler = tokio::spawn(async move {
            let answer = match Method::from_kind(kind) {
                Some(method) => serve(method, payload).await,
                None => Err(format!("unknown channel method {kind}")),
            };
            let reply = match answer {
                Ok(body) => encode_frame(id, REPLY_OK, &body),
                Err(why) => encode_frame(id, REPLY_ERROR, why.as_bytes()),
            };
            let reply = reply.or_else(|e| encode_frame(id, REPLY_ERROR, e.to_string().as_bytes()));
            if let Ok(reply) = reply {
                let _ = replies.send(reply);
            }
            lock(&done).remove(&id);
        });
        handlers.insert(id, handler.abort_handle());
    }
    // The writer ends once every request in flight has sent its reply.
    drop(replies);
    if let Ok(Err(e)) = writer.await {
        tracing::debug!("node-to-node channel write failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let encoded = encode_frame(42, Method::Query as u8, b"payload").unwrap();
        let mut bytes = BytesMut::from(&encoded[..]);
        let length = bytes.get_u32() as usize;
        assert_eq!(length, bytes.len());
        let (id, kind, payload) = parse(bytes).unwrap();
        assert_eq!((id, kind, &payload[..]), (42, 1, &b"payload"[..]));
        assert!(parse(BytesMut::from(&[0u8; 8][..])).is_none());
    }

    /// A call whose caller gives up (here: a timeout) sends a cancel frame, and the server
    /// drops the handler that was still running it.
    #[tokio::test]
    async fn a_call_given_up_drops_its_handler_on_the_server() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        // The handler holds `started` until it is dropped; it never finishes by itself.
        let (started_tx, mut started_rx) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
        tokio::spawn(serve(
            server_io,
            move |_method, _payload: Bytes| {
                let started = started_tx.clone();
                async move {
                    let (held, _dropped_when_cancelled) = oneshot::channel::<()>();
                    let _ = started.send(held);
                    std::future::pending::<()>().await;
                    Ok(Vec::new())
                }
            },
            stop,
        ));
        let channel = Channel::start(client_io);
        let call = tokio::time::timeout(
            Duration::from_millis(50),
            channel.call(Method::Execute, b"w"),
        );
        assert!(call.await.is_err(), "the handler never answers");
        let mut held = started_rx.recv().await.expect("the handler started");
        // Dropping the handler drops its receiver: the held sender sees it closed.
        tokio::time::timeout(Duration::from_secs(5), held.closed())
            .await
            .expect("the server dropped the handler after the cancel");
    }

    /// Many calls at once over one in-memory connection, answered out of order, each
    /// getting its own reply; the server's refusals and an unknown method reach the caller.
    #[tokio::test]
    async fn concurrent_calls_get_their_own_replies() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(
            server_io,
            |method, payload: Bytes| async move {
                match method {
                    Method::Query => {
                        // Later requests (larger numbers) answer sooner.
                        let n = u64::from_be_bytes(payload[..8].try_into().unwrap());
                        tokio::time::sleep(Duration::from_millis(50 - n)).await;
                        Ok((n * 2).to_be_bytes().to_vec())
                    }
                    _ => Err("not served here".to_owned()),
                }
            },
            stop,
        ));
        let channel = Channel::start(client_io);
        let calls = (0..40u64).map(|n| {
            let channel = channel.clone();
            async move {
                let answer = channel.call(Method::Query, &n.to_be_bytes()).await.unwrap();
                (n, u64::from_be_bytes(answer[..8].try_into().unwrap()))
            }
        });
        for (n, doubled) in futures::future::join_all(calls).await {
            assert_eq!(doubled, n * 2);
        }
        match channel.call(Method::Health, &[]).await {
            Err(ChannelError::Refused(why)) => assert_eq!(why, "not served here"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(channel.pending().waiting.is_empty());
    }

    /// When the peer goes away, calls waiting fail at once and later calls are not sent.
    #[tokio::test]
    async fn a_closed_connection_fails_waiting_and_later_calls() {
        let (client_io, server_io) = tokio::io::duplex(1024);
        let channel = Channel::start(client_io);
        let waiting = {
            let channel = channel.clone();
            tokio::spawn(async move { channel.call(Method::Query, b"x").await })
        };
        // The request reached the other end: then the other end goes away unanswered.
        let mut server = FramedRead::new(server_io, codec());
        let request = server.next().await.unwrap().unwrap();
        assert_eq!(parse(request).unwrap().1, Method::Query as u8);
        drop(server);
        assert!(matches!(
            waiting.await.unwrap(),
            Err(ChannelError::Closed(_))
        ));
        assert!(channel.is_closed());
        assert!(matches!(
            channel.call(Method::Query, b"y").await,
            Err(ChannelError::Unreachable(_))
        ));
    }
}
