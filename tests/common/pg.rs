//! PostgreSQL clients for tests: tokio-postgres connections to a node, and a raw protocol
//! session that exposes what drivers hide (each ReadyForQuery's transaction status byte).

use std::io::{Read, Write};
use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::Cluster;

/// Connects to node `i`; the connection task's outcome is returned by the handle.
pub async fn connect(
    cluster: &Cluster,
    i: usize,
) -> Result<
    (
        Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ),
    tokio_postgres::Error,
> {
    cluster.pg_connect(i).await
}

/// A follower of the current leader.
pub async fn follower(cluster: &Cluster) -> usize {
    let leader = cluster
        .wait_for_leader(&cluster.all(), Duration::from_secs(30))
        .await;
    (leader + 1) % cluster.nodes.len()
}

/// Sends CancelRequests (without TLS) until the task running the statement to cancel has
/// finished. Repeating is safe only while that statement cannot finish on its own (it waits for
/// a row another session's open transaction holds), which is how tests use it.
pub async fn cancel_until_finished<T>(
    cancel: &tokio_postgres::CancelToken,
    blocked: &tokio::task::JoinHandle<T>,
) {
    super::eventually(
        Duration::from_secs(10),
        "the canceled statement returns",
        || {
            let cancel = cancel.clone();
            let finished = blocked.is_finished();
            async move {
                if finished {
                    return Ok(());
                }
                cancel
                    .cancel_query(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                Err("still waiting".to_owned())
            }
        },
    )
    .await;
}

/// The SQLSTATE of an error (or a description of an error without one).
pub fn code(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

/// The data rows of a simple query's answer, as text.
pub fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// A raw protocol session (blocking socket) past startup.
pub struct RawPg {
    pub socket: std::net::TcpStream,
}

/// What a simple query answered: CommandComplete tags, the SQLSTATE of each ErrorResponse and
/// of each NoticeResponse, and the status byte of the final ReadyForQuery (`I`, `T` or `E`).
#[derive(Debug, Default)]
pub struct RawReply {
    pub tags: Vec<String>,
    pub errors: Vec<String>,
    pub notices: Vec<String>,
    pub status: char,
}

impl RawPg {
    pub fn connect(addr: &str) -> RawPg {
        let mut socket = std::net::TcpStream::connect(addr).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        body.extend_from_slice(b"user\0raw\0\0");
        let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend(body);
        socket.write_all(&packet).expect("startup");
        let mut session = RawPg { socket };
        let reply = session.read_reply();
        assert!(reply.errors.is_empty(), "startup failed: {reply:?}");
        session
    }

    /// Sends a simple query and reads the answer up to ReadyForQuery.
    pub fn query(&mut self, sql: &str) -> RawReply {
        let mut message = vec![b'Q'];
        message.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        message.extend_from_slice(sql.as_bytes());
        message.push(0);
        self.socket.write_all(&message).expect("send query");
        self.read_reply()
    }

    fn read_reply(&mut self) -> RawReply {
        let mut reply = RawReply::default();
        loop {
            let mut header = [0u8; 5];
            self.socket
                .read_exact(&mut header)
                .expect("read message header");
            let length = i32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut body = vec![0u8; length.saturating_sub(4)];
            self.socket
                .read_exact(&mut body)
                .expect("read message body");
            match header[0] {
                b'C' => reply
                    .tags
                    .push(String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into()),
                b'E' => reply.errors.push(field(&body, b'C')),
                b'N' => reply.notices.push(field(&body, b'C')),
                b'Z' => {
                    reply.status = body.first().copied().unwrap_or(b'?') as char;
                    return reply;
                }
                _ => {}
            }
        }
    }
}

/// One field of an ErrorResponse/NoticeResponse body.
pub fn field(body: &[u8], kind: u8) -> String {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&kind))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}
