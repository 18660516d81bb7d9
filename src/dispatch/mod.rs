//! The dispatcher: decides where each request runs.
//!
//! - Writes (and every statement of an explicit transaction, see [`transaction`]) run on the
//!   leader. On a follower,
//!   [`Dispatcher::execute`] forwards the transaction over the internal RPC and relays the
//!   leader's answer; when leadership moves, it follows the new leader until its deadline.
//!   A forward is retried only when it provably did not reach a leader.
//! - Each autocommit read ([`Dispatcher::query`]) runs on the node the balancer
//!   ([`balance`], over the pure [`scheduler`]s) picks among the members that are healthy
//!   ([`health`]), allowed by the matching routing rule ([`routing`]) and fresh enough for the
//!   read's [`Consistency`] ([`staleness`] for `bounded`); it is retried on another node when
//!   the chosen one fails before it answers.

pub mod balance;
pub mod error;
pub mod health;
pub mod lease;
pub mod load;
pub mod maintenance;
pub mod routing;
pub mod scheduler;
pub mod settings;
pub mod staleness;
pub mod transaction;
pub mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::dispatch::error::RequestError;
use crate::dispatch::transaction::OpenTransactions;
use crate::dispatch::write::{WriteOutcome, WritePipeline};
use crate::raft::liveness::LeaderContact;
use crate::raft::metrics;
use crate::raft::network::{PeerClient, PeerError, paths};
use crate::raft::types::{LogIndex, NodeAddr, NodeId, Raft};
use crate::storage::engine::{Engine, ReadError};
use crate::storage::request::{QueryResult, Statement};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Sees every write acknowledged before the read began (read index from the leader).
    #[default]
    Linearizable,
    /// Sees at least the given index (the client's own last write: read-your-writes).
    Session,
    /// Served by a node whose data is at most the read's `max_lag` behind the leader's
    /// ([`staleness`] defines it); a node too far behind is skipped, and if none is fresh
    /// enough — this node included — the read fails with `Unavailable` (HTTP 503, SQLSTATE
    /// 57P03) rather than answer older data.
    Bounded,
    /// Whatever this node has applied; still answers in a minority partition.
    Any,
}

/// A read's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadOutcome {
    pub result: QueryResult,
    pub node: NodeId,
    /// The applied index the data was read at (at least).
    pub index: LogIndex,
}

/// Where a leader-only operation runs.
enum Route {
    /// This node leads.
    Local,
    /// Through the leader at this address.
    Forward(NodeAddr),
}

/// Deadlines of the request path.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// A write, including forwarding and waiting for a new leader.
    pub write: Duration,
    /// A read, including waiting for this node to apply the needed index.
    pub read: Duration,
    /// How long without a leader (none known, or none heard from) before a request is refused
    /// with `NoLeader`; a few election timeouts, so a normal election is waited out.
    pub leader_wait: Duration,
    /// A leader silent for longer than this is presumed gone (the election timeout).
    pub leader_silence: Duration,
}

/// Routes requests; one per node, cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    pub node_id: NodeId,
    pub raft: Raft,
    pub engine: Engine,
    pub pipeline: WritePipeline,
    pub peers: PeerClient,
    pub timeouts: Timeouts,
    pub leader_contact: LeaderContact,
    /// Explicit transactions open on this node while it leads.
    pub transactions: Arc<OpenTransactions>,
    /// Shares a follower's read-index requests to the leader among concurrent reads.
    pub read_index_rounds: Arc<ReadIndexRounds>,
    /// Answers the leader's own linearizable reads from its lease, and starts every leadership
    /// transfer (which must close that path first).
    pub lease_reads: Arc<lease::LeaseReads>,
    /// Picks the node each autocommit read runs on, and counts what each node served.
    pub balancer: Arc<balance::ReadBalancer>,
    /// Which nodes may serve reads.
    pub health: Arc<health::Health>,
    /// This node's own load, reported with its health-probe answers.
    pub local_load: Arc<load::LocalLoad>,
    /// What the leader had applied when, for `bounded` reads.
    pub staleness: Arc<staleness::Staleness>,
    /// The staleness bound of a `bounded` read whose client names none
    /// (`read_max_lag_ms`).
    pub default_max_lag: Duration,
}

/// A read sent to another node to serve (`/internal/query`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteRead {
    pub statement: Statement,
    /// The index the node must have applied first.
    pub needed: LogIndex,
    /// How long the node may wait for it.
    pub wait_ms: u64,
}

/// Coalesces a follower's read-index requests: one request to the leader at a time, and a read
/// that arrives while one is in flight waits for it and then either reuses the answer of a
/// request that *started after it arrived* (so the index still covers every write acknowledged
/// before the read began: linearizable) or sends the next request for everyone waiting.
#[derive(Default)]
pub struct ReadIndexRounds {
    /// Requests started so far.
    started: std::sync::atomic::AtomicU64,
    /// Held while a request is in flight; holds the last answer and the number it started as.
    last: tokio::sync::Mutex<Option<(u64, Result<LogIndex, RequestError>)>>,
}

impl ReadIndexRounds {
    async fn join<F, Fut>(&self, request: F) -> Result<LogIndex, RequestError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<LogIndex, RequestError>>,
    {
        use std::sync::atomic::Ordering;
        let arrived = self.started.load(Ordering::SeqCst);
        let mut last = self.last.lock().await;
        if let Some((round, answer)) = last.as_ref()
            && *round > arrived
        {
            return answer.clone();
        }
        let round = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = request().await;
        *last = Some((round, answer.clone()));
        answer
    }
}

impl Dispatcher {
    /// Runs one transaction on the leader, wherever it is.
    pub async fn execute(&self, statements: Vec<Statement>) -> Result<WriteOutcome, RequestError> {
        let deadline = Instant::now() + self.timeouts.write;
        let statements = &statements;
        self.on_leader(deadline, move |route| async move {
            match route {
                Route::Local => self.pipeline.submit(statements.clone()).await,
                Route::Forward(leader) => self.forward_execute(&leader, statements, deadline).await,
            }
        })
        .await
    }

    /// Runs `attempt` on the leader — locally when this node leads, else through the leader's
    /// address — retrying while there is no reachable leader (`NotLeader`) until a leader turns
    /// up, `leader_wait` passes without one, or `deadline` passes. A leader known to openraft
    /// but silent for longer than the election timeout counts as none: on a minority side it is
    /// unreachable, and asking it would only end in a timeout.
    async fn on_leader<T, F, Fut>(
        &self,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<T, RequestError>
    where
        F: FnMut(Route) -> Fut,
        Fut: std::future::Future<Output = Result<T, RequestError>>,
    {
        let mut leaderless_since: Option<Instant> = None;
        loop {
            let result = match self.raft.as_leader() {
                Ok(_) => attempt(Route::Local).await,
                Err(forward) => match forward.leader_node {
                    Some(leader)
                        if self
                            .leader_contact
                            .heard_within(self.timeouts.leader_silence) =>
                    {
                        attempt(Route::Forward(leader)).await
                    }
                    _ => Err(RequestError::NotLeader { leader: None }),
                },
            };
            match result {
                Err(RequestError::NotLeader { .. }) => {
                    let since = *leaderless_since.get_or_insert_with(Instant::now);
                    if Instant::now() >= deadline || since.elapsed() >= self.timeouts.leader_wait {
                        return Err(self.no_leader_error());
                    }
                    self.wait_for_leader_change(deadline).await;
                }
                other => return other,
            }
        }
    }

    async fn forward_execute(
        &self,
        leader: &NodeAddr,
        statements: &[Statement],
        deadline: Instant,
    ) -> Result<WriteOutcome, RequestError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let call = self.peers.call::<_, Result<WriteOutcome, RequestError>>(
            &leader.raft,
            paths::EXECUTE,
            &statements,
            remaining,
        );
        let reply = tokio::select! {
            reply = call => reply,
            // A few election timeouts, as for a transaction step: a live leader on a loaded
            // machine can miss a heartbeat or two, and giving up early would answer "outcome
            // unknown" for a write that simply committed. A dead leader usually fails the
            // call at once (connection refused or reset).
            () = self.leader_silent_for(self.timeouts.leader_wait) => {
                return Err(RequestError::OutcomeUnknown(format!(
                    "lost contact with the leader at {} while it ran the write; it may or may not have been applied",
                    leader.raft
                )));
            }
        };
        match reply {
            Ok(answer) => answer,
            // Never reached the leader: safe to try again once a leader is known.
            Err(PeerError::Unreachable { .. }) => Err(RequestError::NotLeader { leader: None }),
            Err(PeerError::Timeout { addr }) => Err(RequestError::Timeout(format!(
                "leader at {addr} did not answer in time; the write may or may not have been applied"
            ))),
            Err(e) => Err(RequestError::OutcomeUnknown(e.to_string())),
        }
    }

    /// Resolves once no leader has been heard from for `silence`.
    async fn leader_silent_for(&self, silence: Duration) {
        let check_every = (silence / 4).max(Duration::from_millis(10));
        while self.leader_contact.heard_within(silence) {
            tokio::time::sleep(check_every).await;
        }
    }

    /// Sleeps until openraft reports a different leader (or none), bounded by `deadline`, so
    /// the retry loop waits for a condition rather than spinning.
    async fn wait_for_leader_change(&self, deadline: Instant) {
        let before = metrics::snapshot(&self.raft).current_leader;
        // Re-check at least every 50 ms: the leader may be known but not yet reachable.
        let until = (Instant::now() + Duration::from_millis(50)).min(deadline);
        metrics::wait_until(&self.raft, until, |m| m.current_leader != before).await;
    }

    fn no_leader_error(&self) -> RequestError {
        let m = metrics::snapshot(&self.raft);
        let voters = m.membership_config.membership().voter_ids().count();
        RequestError::NoLeader(format!(
            "no leader reachable from node {} (term {}, {} voters): this node cannot reach a \
             majority of the cluster, so it refuses writes and linearizable reads",
            self.node_id, m.current_term, voters
        ))
    }

    /// Serves one autocommit read at `consistency`: on the node the balancer picks among the
    /// healthy members, retried on another when that node fails before it answers.
    pub async fn query(
        &self,
        statement: Statement,
        consistency: Consistency,
        min_index: LogIndex,
        context: &routing::ReadContext,
    ) -> Result<ReadOutcome, RequestError> {
        let deadline = Instant::now() + self.timeouts.read;
        let max_lag = context.max_lag.unwrap_or(self.default_max_lag);
        let routed = self.balancer.route(&statement.sql, context);
        let rule = routed.as_ref().map(|r| r.position);
        let rule_key = routed.as_ref().and_then(|r| r.key);
        let target = routed.map(|r| r.target);
        let bytes_in = statement_bytes(&statement);
        let needed = match consistency {
            Consistency::Any | Consistency::Bounded => 0,
            Consistency::Session => min_index,
            Consistency::Linearizable => self.read_index(deadline).await?.max(min_index),
        };
        let key = self.balancer.key(
            balance::first_table(&statement.sql).as_deref(),
            context.session,
            context.client_addr,
            rule_key,
        );
        // A routing rule may narrow the nodes or name the scheduler.
        let (allowed, scheduler): (Option<Vec<NodeId>>, _) = match &target {
            None => (None, None),
            Some(routing::RuleTarget::Tag(tag)) => (Some(self.balancer.tagged(tag)), None),
            Some(routing::RuleTarget::Leader) => (
                Some(
                    metrics::snapshot(&self.raft)
                        .current_leader
                        .into_iter()
                        .collect(),
                ),
                None,
            ),
            Some(routing::RuleTarget::Scheduler(kind)) => (None, Some(*kind)),
        };
        let mut failed: Vec<NodeId> = Vec::new();
        // A statement that issues Snowflake IDs runs where the client is connected: its IDs
        // carry this node's worker id, as every other way of getting IDs here does.
        let local_only = statement.sql.contains("snowflake_id(");
        loop {
            let members = if local_only {
                Vec::new()
            } else {
                self.read_members()
            };
            let eligible: Vec<balance::Eligible> = members
                .iter()
                .map(|(node, _)| balance::Eligible {
                    node: *node,
                    load: self.health.load(*node),
                    eligible: allowed.as_ref().is_none_or(|a| a.contains(node))
                        && (*node == self.node_id
                            || (self.health.is_healthy(*node) && !failed.contains(node)))
                        && (consistency != Consistency::Bounded
                            || self.fresh_enough(*node, max_lag)),
                })
                .collect();
            let node = match self.balancer.start(&eligible, key, scheduler) {
                Some(node) => node,
                None if allowed.is_some() => {
                    return Err(RequestError::Unavailable(format!(
                        "no healthy node the routing rule allows ({target:?})"
                    )));
                }
                None if consistency == Consistency::Bounded
                    && !self.fresh_enough(self.node_id, max_lag) =>
                {
                    return Err(RequestError::Unavailable(format!(
                        "no node is within {} ms of the leader for a bounded read \
                         (retry, raise max_lag_ms, or read with another consistency)",
                        max_lag.as_millis()
                    )));
                }
                None => {
                    // Nothing else may serve it (this node drained, say): serve it here.
                    self.balancer.start_on(self.node_id);
                    self.node_id
                }
            };
            let started = Instant::now();
            let result = match members.iter().find(|(id, _)| *id == node) {
                Some((_, addr)) if node != self.node_id => {
                    self.remote_read(node, addr, &statement, needed, deadline)
                        .await
                }
                _ => self.serve_read(statement.clone(), needed, deadline).await,
            };
            let bytes_out = result.as_ref().map_or(0, |r| result_bytes(&r.result));
            // A SQL error is the statement's fault, not the node's.
            let node_ok = !matches!(
                &result,
                Err(e) if !matches!(e, RequestError::Sql(_))
            );
            self.balancer.finish(
                node,
                rule,
                balance::ReadTraffic {
                    ok: node_ok,
                    bytes_in,
                    bytes_out,
                    latency: started.elapsed(),
                },
            );
            match result {
                Err(e)
                    if node != self.node_id && retry_elsewhere(&e) && Instant::now() < deadline =>
                {
                    tracing::debug!(node, error = %e, "read failed on a node; retrying elsewhere");
                    self.health.record_read_failure(node);
                    failed.push(node);
                }
                other => return other,
            }
        }
    }

    /// The members that may serve reads, with their addresses.
    fn read_members(&self) -> Vec<(NodeId, NodeAddr)> {
        use openraft::type_config::async_runtime::WatchReceiver;
        // Borrowed, not cloned: this runs for every read.
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect()
    }

    /// Serves a read from this node's committed data once it has applied `needed`.
    pub async fn serve_read(
        &self,
        statement: Statement,
        needed: LogIndex,
        deadline: Instant,
    ) -> Result<ReadOutcome, RequestError> {
        let index = self.wait_applied(needed, deadline).await?;
        let started = Instant::now();
        self.local_load.begin();
        let result = self.engine.query(statement).await;
        self.local_load.end(started.elapsed());
        let result = result.map_err(|e| match e {
            ReadError::Sql(sql) => RequestError::Sql(sql),
            ReadError::Engine(engine) => RequestError::Unavailable(engine.to_string()),
        })?;
        Ok(ReadOutcome {
            result,
            node: self.node_id,
            index,
        })
    }

    /// Whether `node`'s data is at most `max_lag` behind the leader's.
    fn fresh_enough(&self, node: NodeId, max_lag: Duration) -> bool {
        self.staleness_of(node)
            .is_some_and(|stale| stale <= max_lag)
    }

    /// How far behind the leader `node`'s data is ([`staleness`]): zero for the leader — this
    /// node when it leads with a live lease, another when its last probe answer said so —
    /// else by the applied index its last probe reported (this node's own); `None` when
    /// unknown (no round reached a leader since it last caught up).
    pub fn staleness_of(&self, node: NodeId) -> Option<Duration> {
        let applied = if node == self.node_id {
            if self.leads_with_lease() {
                return Some(Duration::ZERO);
            }
            self.engine.applied_index()
        } else {
            if self.health.reported_leading(node) {
                return Some(Duration::ZERO);
            }
            self.health.applied(node)?
        };
        self.staleness.of(applied, Instant::now())
    }

    /// Whether this node leads and a quorum acknowledged it within the leader lease (the
    /// election timeout), so that no other leader can exist yet: its data then holds every
    /// acknowledged write. A sole voter is its own quorum.
    pub fn leads_with_lease(&self) -> bool {
        use openraft::type_config::async_runtime::Instant as _;
        let Ok(leader) = self.raft.as_leader() else {
            return false;
        };
        self.raft.voter_ids().count() <= 1
            || leader
                .last_quorum_acked()
                .is_some_and(|acked| acked.elapsed() <= self.timeouts.leader_silence)
    }

    /// Resolves once the health table holds `node` unhealthy.
    async fn until_unhealthy(&self, node: NodeId) {
        while self.health.is_healthy(node) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Has `addr`'s node serve the read.
    async fn remote_read(
        &self,
        node: NodeId,
        addr: &NodeAddr,
        statement: &Statement,
        needed: LogIndex,
        deadline: Instant,
    ) -> Result<ReadOutcome, RequestError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        // The node may wait for the index only part of the time, so a lagging node leaves
        // time to retry elsewhere.
        let wait = (remaining / 2).min(Duration::from_secs(1));
        let request = RemoteRead {
            statement: statement.clone(),
            needed,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let call = self.peers.call::<_, Result<ReadOutcome, RequestError>>(
            &addr.raft,
            paths::QUERY,
            &request,
            remaining,
        );
        // A long read may take its whole deadline; but a node that stops answering leaves the
        // pool (health probes) and the read goes elsewhere at once.
        let reply = tokio::select! {
            reply = call => reply,
            () = self.until_unhealthy(node) => {
                return Err(RequestError::Unavailable(format!(
                    "node {node} left the read pool while serving the read"
                )));
            }
        };
        match reply {
            Ok(answer) => answer,
            Err(PeerError::Timeout { addr }) => Err(RequestError::Timeout(format!(
                "node at {addr} did not answer the read in time"
            ))),
            Err(e) => Err(RequestError::Unavailable(e.to_string())),
        }
    }

    /// The index a linearizable read must observe: confirmed by the leader with a quorum
    /// round (openraft's ReadIndex), asked over the RPC when this node follows.
    pub async fn read_index(&self, deadline: Instant) -> Result<LogIndex, RequestError> {
        self.on_leader(deadline, move |route| async move {
            match route {
                Route::Local => self.local_read_index(deadline).await,
                Route::Forward(leader) => {
                    self.read_index_rounds
                        .join(|| async {
                            let remaining = deadline.saturating_duration_since(Instant::now());
                            let reply = self
                                .peers
                                .call::<_, Result<LogIndex, RequestError>>(
                                    &leader.raft,
                                    paths::READ_INDEX,
                                    &(),
                                    remaining,
                                )
                                .await;
                            match reply {
                                Ok(answer) => answer,
                                Err(PeerError::Timeout { .. }) => Err(RequestError::Timeout(
                                    "leader did not confirm the read index".into(),
                                )),
                                Err(_) => Err(RequestError::NotLeader { leader: None }),
                            }
                        })
                        .await
                }
            }
        })
        .await
    }

    /// Leader side of a read index request.
    pub async fn local_read_index(&self, deadline: Instant) -> Result<LogIndex, RequestError> {
        if let Some(index) = self
            .lease_reads
            .read_index(&self.raft, self.engine.applied_log_id())
        {
            return Ok(index);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        // With leases: a quorum acknowledgement younger than the lease suffices; an older one
        // makes the leader send heartbeats now and wait for a fresh one. Without: always a
        // fresh quorum round (ReadIndex).
        let option = if self.lease_reads.enabled() {
            openraft::raft::linearizable_read::LinearizerOption::new(None, true)
        } else {
            openraft::ReadPolicy::ReadIndex.into()
        };
        let linearizer = tokio::time::timeout(remaining, self.raft.get_read_linearizer(option))
            .await
            .map_err(|_| {
                RequestError::Timeout("could not confirm leadership with a quorum".into())
            })?;
        match linearizer {
            Ok(linearizer) => Ok(linearizer.read_log_id().index()),
            Err(e) => match e.into_api_error() {
                Some(openraft::errors::LinearizableReadError::ForwardToLeader(f)) => {
                    Err(RequestError::NotLeader {
                        leader: f.leader_id,
                    })
                }
                Some(other) => Err(RequestError::NoLeader(other.to_string())),
                None => Err(RequestError::Unavailable("raft stopped".into())),
            },
        }
    }

    /// Waits until this node's committed data includes `index`.
    async fn wait_applied(
        &self,
        index: LogIndex,
        deadline: Instant,
    ) -> Result<LogIndex, RequestError> {
        let mut visible = self.engine.visible();
        let reached = visible.wait_for(|applied| applied.map(|l| l.index).unwrap_or(0) >= index);
        match tokio::time::timeout_at(deadline.into(), reached).await {
            Ok(Ok(applied)) => Ok(applied.map(|l| l.index).unwrap_or(0)),
            Ok(Err(_)) => Err(RequestError::Unavailable("storage stopped".into())),
            Err(_) => Err(RequestError::Timeout(format!(
                "node {} has not applied index {index} yet",
                self.node_id
            ))),
        }
    }
}

/// Whether a read that failed on another node may be retried on a different one: the node
/// did not answer, or could not serve it in time; never a SQL error.
fn retry_elsewhere(error: &RequestError) -> bool {
    matches!(
        error,
        RequestError::Unavailable(_) | RequestError::Timeout(_) | RequestError::NotLeader { .. }
    )
}

/// About how many bytes a value carries, for the statistics.
fn value_bytes(value: &crate::storage::request::SqlValue) -> usize {
    use crate::storage::request::SqlValue;
    match value {
        SqlValue::Null => 1,
        SqlValue::Integer(_) | SqlValue::Real(_) => 8,
        SqlValue::Text(t) => t.len(),
        SqlValue::Blob(b) => b.len(),
    }
}

/// About how many bytes a result carries, for the statistics.
fn result_bytes(result: &QueryResult) -> u64 {
    result.rows.iter().flatten().map(value_bytes).sum::<usize>() as u64
}

/// About how many bytes a request carries (SQL text and parameters), for the statistics.
fn statement_bytes(statement: &Statement) -> u64 {
    (statement.sql.len() + statement.params.iter().map(value_bytes).sum::<usize>()) as u64
}

/// Probes every other member's health each interval until `stop` turns true.
/// After each round, installs the replicated dispatcher settings if they changed, and a
/// drained leader hands leadership away ([`maintenance`]).
pub async fn probe_members(dispatcher: Dispatcher, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut installed: Option<String> = None;
    let mut last_hand_off = None;
    loop {
        installed = settings::load_replicated(&dispatcher, installed).await;
        let settings = dispatcher.health.settings();
        let members = dispatcher.read_members();
        let ids: Vec<NodeId> = members.iter().map(|(id, _)| *id).collect();
        dispatcher.health.retain(&ids);
        // The round's reference time, taken before anything it learns.
        let sent = Instant::now();
        let own_applied = dispatcher.engine.applied_index();
        let own_leading = dispatcher.leads_with_lease();
        let probes = members
            .into_iter()
            .filter(|(id, _)| *id != dispatcher.node_id)
            .map(|(id, addr)| {
                let peers = dispatcher.peers.clone();
                async move {
                    let answer = peers
                        .call::<_, load::HealthReport>(
                            &addr.raft,
                            paths::HEALTH,
                            &(),
                            settings.interval,
                        )
                        .await;
                    (id, answer.ok())
                }
            });
        let tick = tokio::time::sleep(settings.interval);
        let answers = futures::future::join_all(probes).await;
        for (id, report) in &answers {
            dispatcher
                .health
                .record_probe(*id, report.map(|r| r.applied), own_applied);
            if let Some(report) = report {
                dispatcher.health.record_load(*id, report.load);
                dispatcher.health.record_leading(*id, report.leading);
            }
        }
        let own = own_leading.then_some(own_applied);
        let reports = answers.iter().filter_map(|(_, report)| report.as_ref());
        dispatcher
            .health
            .record_load(dispatcher.node_id, dispatcher.local_load.report());
        if let Some(index) = staleness::leader_index(own, reports) {
            dispatcher.staleness.record_round(sent, index);
        }
        maintenance::hand_off_if_drained(&dispatcher, &mut last_hand_off).await;
        tokio::select! {
            () = tick => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::ReadIndexRounds;

    /// Reads arriving while a read-index request is in flight never reuse its answer (it may
    /// predate their writes' acknowledgement); they share the next request instead.
    #[tokio::test(flavor = "current_thread")]
    async fn reads_share_only_rounds_that_started_after_they_arrived() {
        let rounds = Arc::new(ReadIndexRounds::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let r = rounds.clone();
        let first = tokio::spawn(async move {
            r.join(|| async {
                let _ = released.await;
                Ok(1)
            })
            .await
        });
        while rounds.started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let requests = Arc::new(AtomicU64::new(0));
        let later: Vec<_> = (0..2)
            .map(|_| {
                let (r, requests) = (rounds.clone(), requests.clone());
                tokio::spawn(async move {
                    r.join(|| async move {
                        requests.fetch_add(1, Ordering::SeqCst);
                        Ok(2)
                    })
                    .await
                })
            })
            .collect();
        // On this single-threaded runtime, one yield lets both arrive and queue behind round 1.
        tokio::task::yield_now().await;
        let _ = release.send(());
        assert_eq!(first.await.expect("first"), Ok(1));
        for read in later {
            assert_eq!(read.await.expect("later"), Ok(2), "never round 1's answer");
        }
        assert_eq!(
            requests.load(Ordering::SeqCst),
            1,
            "the later reads shared one request"
        );
    }
}
