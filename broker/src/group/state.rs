//! One consumer group's membership and rebalance state machine (Kafka's classic protocol):
//! Empty → PreparingRebalance → CompletingRebalance → Stable, back to PreparingRebalance when
//! membership changes, and Dead once deleted.
//!
//! Everything here is synchronous and runs under the group's own lock; members waiting for the
//! join or sync phase to finish hold a oneshot receiver, completed from here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant};

use super::offsets::{GroupMeta, OffsetStore};

/// Group states, named as Kafka reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
            State::Dead => "Dead",
        }
    }
}

/// What a JoinGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member's metadata for the chosen protocol, for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// JoinGroup v9+ (KIP-814): the leader gets the members but must not compute an assignment
    /// (a static leader rejoining a Stable group).
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(code: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: code.code(),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResult::default()
        }
    }
}

/// What a SyncGroup gets back.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(code: ResponseError) -> SyncResult {
        SyncResult {
            error: code.code(),
            ..SyncResult::default()
        }
    }
}

/// A SyncGroup's parameters.
#[derive(Debug, Clone)]
pub struct SyncParams<'a> {
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
    pub generation: i32,
    /// v5+: checked against the group's.
    pub protocol_type: Option<&'a str>,
    pub protocol_name: Option<&'a str>,
    /// The leader's assignment for every member.
    pub assignments: Vec<(String, Bytes)>,
}

/// A JoinGroup's parameters.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// JoinGroup v9+: the response can tell a leader to skip the assignment (KIP-814).
    pub supports_skip_assignment: bool,
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A consumer group.
#[derive(Debug)]
pub struct Group {
    pub(crate) state: State,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they expire.
    pending: HashMap<String, Instant>,
    /// group.instance.id → current member id.
    static_members: HashMap<String, String>,
    /// When the join phase ends even if some members have not rejoined.
    join_deadline: Option<Instant>,
    /// The initial-rebalance delay of a group that was empty (group.initial.rebalance.delay.ms).
    delay_until: Option<Instant>,
    initial_delay: Duration,
    /// When members that have not sent SyncGroup by then are dropped (the leader's rebalance
    /// timeout bounds how long the others wait for an assignment, as in Kafka).
    sync_deadline: Option<Instant>,
    /// The group's id and the store its protocol type and generation are recorded in at each
    /// completed join phase; `None` in tests of the bare state machine.
    pub(crate) journal: Option<(String, Arc<OffsetStore>)>,
}

/// Most members a group accepts (a bound on memory, far above real use).
const MAX_MEMBERS: usize = 10_000;
/// Most protocols one member may offer, and the most metadata bytes across them: far above what
/// any client sends (a consumer's subscription is a few hundred bytes), low enough that
/// MAX_MEMBERS hostile members cannot exhaust memory.
const MAX_PROTOCOLS: usize = 32;
const MAX_METADATA_BYTES: usize = 64 * 1024;

impl Group {
    pub fn new(initial_delay: Duration) -> Group {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            join_deadline: None,
            delay_until: None,
            initial_delay,
            sync_deadline: None,
            journal: None,
        }
    }

    /// Takes back what was recorded of the group before a restart.
    pub fn restore(&mut self, meta: GroupMeta) {
        self.protocol_type = Some(meta.protocol_type);
        self.generation = meta.generation.max(0);
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Handles a JoinGroup; `Ok` is an immediate answer, `Err` a receiver completed when the
    /// join phase ends.
    pub fn join(
        &mut self,
        p: JoinParams,
        now: Instant,
    ) -> Result<JoinResult, oneshot::Receiver<JoinResult>> {
        if self.state == State::Dead {
            return Ok(JoinResult::error(
                ResponseError::CoordinatorNotAvailable,
                &p.member_id,
            ));
        }
        if p.protocols.is_empty() || p.protocol_type.is_empty() {
            return Ok(JoinResult::error(
                ResponseError::InconsistentGroupProtocol,
                &p.member_id,
            ));
        }
        let metadata_bytes: usize = p.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if p.protocols.len() > MAX_PROTOCOLS || metadata_bytes > MAX_METADATA_BYTES {
            return Ok(JoinResult::error(
                ResponseError::InvalidRequest,
                &p.member_id,
            ));
        }
        if !self.members.is_empty() {
            let same_type = self.protocol_type.as_deref() == Some(p.protocol_type.as_str());
            let common = self.common_protocols(Some(&p.protocols));
            if !same_type || common.is_empty() {
                return Ok(JoinResult::error(
                    ResponseError::InconsistentGroupProtocol,
                    &p.member_id,
                ));
            }
        }
        let mut member_id = p.member_id.clone();
        if member_id.is_empty() {
            if let Some(instance) = &p.group_instance_id {
                if let Some(old) = self.static_members.get(instance).cloned() {
                    return self.replace_static_member(&old, p, now);
                }
            }
            member_id = format!("{}-{}", p.client_id, uuid::Uuid::new_v4());
            if p.require_known_member_id && p.group_instance_id.is_none() {
                if self.members.len() + self.pending.len() >= MAX_MEMBERS {
                    return Ok(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
                }
                self.pending
                    .insert(member_id.clone(), now + p.session_timeout);
                return Ok(JoinResult::error(
                    ResponseError::MemberIdRequired,
                    &member_id,
                ));
            }
        } else if let Some(code) = self.fenced(&member_id, p.group_instance_id.as_deref()) {
            // Checked first, as Kafka does: an old incarnation of a static member learns it was
            // replaced rather than being told to rejoin.
            return Ok(JoinResult::error(code, &member_id));
        } else if self.pending.remove(&member_id).is_none()
            && !self.members.contains_key(&member_id)
        {
            return Ok(JoinResult::error(
                ResponseError::UnknownMemberId,
                &member_id,
            ));
        }

        let (tx, rx) = oneshot::channel();
        match self.members.get_mut(&member_id) {
            Some(m) => {
                let unchanged = m.protocols == p.protocols;
                m.protocols = p.protocols;
                m.session_timeout = p.session_timeout;
                m.rebalance_timeout = p.rebalance_timeout;
                m.last_heartbeat = now;
                let is_leader = self.leader.as_deref() == Some(member_id.as_str());
                // A member repeating its join (its response was lost) with the same metadata gets
                // the current generation again, as in Kafka: any member while the assignment is
                // being made, only a follower once it is Stable (a leader rejoining wants a new
                // assignment, e.g. because the topics it matches changed).
                let repeat = match self.state {
                    State::CompletingRebalance => unchanged,
                    State::Stable => unchanged && !is_leader,
                    _ => false,
                };
                if repeat {
                    return Ok(self.join_result(&member_id));
                }
                if let Some(m) = self.members.get_mut(&member_id) {
                    m.join_waiter = Some(tx);
                }
            }
            None => {
                if self.members.len() >= MAX_MEMBERS {
                    return Ok(JoinResult::error(
                        ResponseError::GroupMaxSizeReached,
                        &member_id,
                    ));
                }
                if let Some(instance) = &p.group_instance_id {
                    self.static_members
                        .insert(instance.clone(), member_id.clone());
                }
                if self.members.is_empty() {
                    self.protocol_type = Some(p.protocol_type.clone());
                }
                self.members.insert(
                    member_id.clone(),
                    Member {
                        member_id: member_id.clone(),
                        group_instance_id: p.group_instance_id.clone(),
                        client_id: p.client_id.clone(),
                        client_host: p.client_host.clone(),
                        session_timeout: p.session_timeout,
                        rebalance_timeout: p.rebalance_timeout,
                        protocols: p.protocols,
                        assignment: Bytes::new(),
                        last_heartbeat: now,
                        join_waiter: Some(tx),
                        sync_waiter: None,
                    },
                );
                if self.state == State::PreparingRebalance {
                    if let Some(until) = self.delay_until {
                        // Each new member during the initial delay buys the others a little more
                        // time, up to the rebalance timeout.
                        let limit = self.join_deadline.unwrap_or(until);
                        self.delay_until = Some((now + self.initial_delay).min(limit));
                    }
                }
            }
        }
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now);
        Err(rx)
    }

    /// A known static member rejoining with a new member id (KIP-345): the old id is fenced and
    /// the member keeps its place. In a Stable group with unchanged metadata that is all (no
    /// rebalance: the member gets the current generation and, at SyncGroup, its old assignment);
    /// otherwise it takes part in a rebalance under its new id.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        p: JoinParams,
        now: Instant,
    ) -> Result<JoinResult, oneshot::Receiver<JoinResult>> {
        let Some(mut member) = self.members.remove(old_id) else {
            return Ok(JoinResult::error(ResponseError::UnknownMemberId, ""));
        };
        let new_id = format!("{}-{}", p.client_id, uuid::Uuid::new_v4());
        // The old incarnation's pending calls learn they were fenced.
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinResult::error(ResponseError::FencedInstanceId, old_id));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        let unchanged = member.protocols == p.protocols;
        member.member_id = new_id.clone();
        member.protocols = p.protocols;
        member.client_id = p.client_id;
        member.client_host = p.client_host;
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.last_heartbeat = now;
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if let Some(instance) = &p.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if unchanged && self.state == State::Stable {
            self.members.insert(new_id.clone(), member);
            // Same subscription: keep the assignment, no rebalance. A Stable group would not pass
            // on a new assignment, so a rejoining leader must not make one: from v9 it is told
            // so (KIP-814) and still gets the members; before, as Kafka does, it is given its
            // old member id as the leader, so it does not take itself for the leader at all.
            let mut result = self.join_result(&new_id);
            if result.leader == new_id {
                if p.supports_skip_assignment {
                    result.skip_assignment = true;
                } else {
                    result.leader = old_id.to_string();
                    result.members.clear();
                }
            }
            return Ok(result);
        }
        let (tx, rx) = oneshot::channel();
        member.join_waiter = Some(tx);
        self.members.insert(new_id, member);
        if self.state != State::PreparingRebalance {
            self.prepare_rebalance(now);
        }
        self.maybe_complete_join(now);
        Err(rx)
    }

    /// FENCED_INSTANCE_ID when `instance` belongs to another member id.
    pub fn fenced(&self, member_id: &str, instance: Option<&str>) -> Option<ResponseError> {
        let instance = instance?;
        match self.static_members.get(instance) {
            Some(current) if current != member_id => Some(ResponseError::FencedInstanceId),
            _ => None,
        }
    }

    fn join_result(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            skip_assignment: false,
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.member_id.clone(),
                            m.group_instance_id.clone(),
                            m.metadata(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Protocols every member (plus `extra`, a joining member) supports, in the first member's
    /// preference order.
    fn common_protocols(&self, extra: Option<&[(String, Bytes)]>) -> Vec<String> {
        let mut sets: Vec<HashSet<&str>> = self
            .members
            .values()
            .map(|m| m.protocols.iter().map(|(n, _)| n.as_str()).collect())
            .collect();
        if let Some(extra) = extra {
            sets.push(extra.iter().map(|(n, _)| n.as_str()).collect());
        }
        let Some(first) = sets.first() else {
            return Vec::new();
        };
        let order: Vec<&str> = match extra {
            Some(e) if self.members.is_empty() => e.iter().map(|(n, _)| n.as_str()).collect(),
            _ => self
                .members
                .values()
                .next()
                .map(|m| m.protocols.iter().map(|(n, _)| n.as_str()).collect())
                .unwrap_or_default(),
        };
        order
            .into_iter()
            .filter(|n| first.contains(n) && sets.iter().all(|s| s.contains(n)))
            .map(str::to_string)
            .collect()
    }

    /// The protocol with the most first-choice votes among those all members support.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.common_protocols(None);
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|c| {
                (
                    votes.get(c.as_str()).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
                )
            })
            .cloned()
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == State::CompletingRebalance {
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        self.join_deadline = Some(now + timeout);
        self.delay_until = (self.state == State::Empty && !self.initial_delay.is_zero())
            .then(|| (now + self.initial_delay).min(now + timeout));
        self.state = State::PreparingRebalance;
    }

    fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some());
        let delayed = self.delay_until.is_some_and(|d| now < d);
        let deadline = self.join_deadline.is_some_and(|d| now >= d);
        if (all_joined && !delayed) || deadline {
            self.complete_join(now);
        }
    }

    fn complete_join(&mut self, now: Instant) {
        // Dynamic members that did not rejoin in time are dropped. Static ones keep their place
        // (KIP-345: a slow restart must not cost a rebalance); only their session timeout, which
        // restarts now, removes them.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.join_deadline = None;
        self.delay_until = None;
        self.generation = self.generation.saturating_add(1);
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.leader = None;
            self.record();
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = State::CompletingRebalance;
        let sync_timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.sync_deadline = Some(now + sync_timeout);
        self.record();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment = Bytes::new();
                m.last_heartbeat = now;
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(result);
                }
            }
        }
    }

    /// Records the protocol type and generation in the store (see [`super::offsets`]).
    fn record(&self) {
        if let (Some((id, store)), Some(protocol_type)) = (&self.journal, &self.protocol_type) {
            store.record_group(
                id,
                GroupMeta {
                    protocol_type: protocol_type.clone(),
                    generation: self.generation,
                },
            );
        }
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(mut m) = self.members.remove(member_id) {
            if let Some(instance) = &m.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(ResponseError::UnknownMemberId, member_id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(ResponseError::UnknownMemberId));
            }
        }
    }

    /// Checks that a member of the current generation is asking (SyncGroup, Heartbeat, commits).
    pub fn check_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(code) = self.fenced(member_id, instance) {
            return Err(code);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Handles a SyncGroup.
    pub fn sync(
        &mut self,
        p: SyncParams<'_>,
        now: Instant,
    ) -> Result<SyncResult, oneshot::Receiver<SyncResult>> {
        let member_id = p.member_id;
        if let Err(code) = self.check_member(member_id, p.group_instance_id, p.generation) {
            return Ok(SyncResult::error(code));
        }
        if p.protocol_type
            .is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || p.protocol_name
                .is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return Ok(SyncResult::error(ResponseError::InconsistentGroupProtocol));
        }
        let assignments = p.assignments;
        match self.state {
            State::Empty | State::Dead => Ok(SyncResult::error(ResponseError::UnknownMemberId)),
            State::PreparingRebalance => Ok(SyncResult::error(ResponseError::RebalanceInProgress)),
            State::Stable => Ok(self.sync_result(member_id)),
            State::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    m.sync_waiter = Some(tx);
                    m.last_heartbeat = now;
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = by_member.remove(&m.member_id).unwrap_or_default();
                    }
                    self.state = State::Stable;
                    self.sync_deadline = None;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        let result = self.sync_result(&id);
                        if let Some(w) =
                            self.members.get_mut(&id).and_then(|m| m.sync_waiter.take())
                        {
                            let _ = w.send(result);
                        }
                    }
                }
                Err(rx)
            }
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Handles a Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == State::Empty || self.state == State::Dead {
            return Err(ResponseError::UnknownMemberId);
        }
        self.check_member(member_id, instance, generation)?;
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
        match self.state {
            State::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Handles one member of a LeaveGroup (by member id, or by instance id for static members).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let id = match instance {
            Some(instance) => match self.static_members.get(instance) {
                Some(current) if member_id.is_empty() || current == member_id => current.clone(),
                Some(_) => return Err(ResponseError::FencedInstanceId),
                None => return Err(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            return Ok(());
        }
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id);
        self.membership_changed(now);
        Ok(())
    }

    fn membership_changed(&mut self, now: Instant) {
        match self.state {
            State::Stable | State::CompletingRebalance => self.prepare_rebalance(now),
            State::PreparingRebalance => self.maybe_complete_join(now),
            State::Empty | State::Dead => {}
        }
        if self.state == State::PreparingRebalance {
            self.maybe_complete_join(now);
        }
    }

    /// Expires members and pending ids, ends overdue join phases, drops members that did not
    /// ask for their assignment in time.
    pub fn tick(&mut self, now: Instant) {
        self.pending.retain(|_, expires| *expires > now);
        if self.state == State::CompletingRebalance && self.sync_deadline.is_some_and(|d| now >= d)
        {
            self.sync_deadline = None;
            // The leader's SyncGroup would have made the group Stable, so the leader is among
            // these; the members still waiting are told to rejoin by the new rebalance.
            let silent: Vec<String> = self
                .members
                .values()
                .filter(|m| m.sync_waiter.is_none())
                .map(|m| m.member_id.clone())
                .collect();
            for id in &silent {
                tracing::info!(member = %id, "member did not sync in time");
                self.remove_member(id);
            }
            if !silent.is_empty() {
                self.membership_changed(now);
            }
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && now.duration_since(m.last_heartbeat) > m.session_timeout
            })
            .map(|m| m.member_id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(member = %id, "member session expired");
                self.remove_member(id);
            }
            self.membership_changed(now);
        }
        self.maybe_complete_join(now);
    }

    /// Topics the members subscribe to (consumer protocol metadata), for OffsetDelete.
    pub fn subscribed_topics(&self) -> HashSet<String> {
        let mut topics = HashSet::new();
        for m in self.members.values() {
            match &self.protocol {
                Some(protocol) => topics.extend(parse_subscription(&m.metadata(protocol))),
                // Before the first join phase ends no protocol is chosen; every consumer
                // assignor carries the same subscription, so any of them says it.
                None => {
                    for (_, metadata) in &m.protocols {
                        topics.extend(parse_subscription(metadata));
                    }
                }
            }
        }
        topics
    }

    /// Marks the group deleted (only an empty one may be).
    pub fn kill(&mut self) {
        self.state = State::Dead;
    }

    pub(crate) fn describe_members(&self) -> Vec<&Member> {
        self.members.values().collect()
    }

    pub(crate) fn member_metadata(&self, member: &Member) -> Bytes {
        member.metadata(self.protocol.as_deref().unwrap_or_default())
    }
}

/// Topics of a consumer-protocol Subscription (version i16, then an i32 count of i16-length
/// strings); lenient: a malformed one yields what parsed.
fn parse_subscription(data: &[u8]) -> Vec<String> {
    let mut topics = Vec::new();
    let Some(count) = data.get(2..6) else {
        return topics;
    };
    let count = i32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    let mut at = 6usize;
    for _ in 0..count.max(0) {
        let Some(len) = data.get(at..at + 2) else {
            break;
        };
        let len = i16::from_be_bytes([len[0], len[1]]);
        let Ok(len) = usize::try_from(len) else { break };
        let Some(name) = data.get(at + 2..at + 2 + len) else {
            break;
        };
        topics.push(String::from_utf8_lossy(name).into_owned());
        at += 2 + len;
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(member: &str, v4: bool) -> JoinParams {
        JoinParams {
            member_id: member.to_string(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"m"))],
            require_known_member_id: v4,
            supports_skip_assignment: false,
        }
    }

    fn sp<'a>(
        member_id: &'a str,
        instance: Option<&'a str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncParams<'a> {
        SyncParams {
            member_id,
            group_instance_id: instance,
            generation,
            protocol_type: None,
            protocol_name: None,
            assignments,
        }
    }

    fn joined(rx: oneshot::Receiver<JoinResult>) -> JoinResult {
        let mut rx = rx;
        rx.try_recv().expect("join completed")
    }

    #[test]
    fn a_single_member_joins_as_leader_and_syncs() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let first = g.join(params("", true), now).expect("immediate answer");
        assert_eq!(first.error, ResponseError::MemberIdRequired.code());
        let id = first.member_id.clone();
        let result = joined(g.join(params(&id, true), now).expect_err("waits"));
        assert_eq!(result.error, 0);
        assert_eq!(result.leader, id);
        assert_eq!(result.generation, 1);
        assert_eq!(result.members.len(), 1);
        assert_eq!(result.protocol_name.as_deref(), Some("range"));
        let mut rx = g
            .sync(
                sp(&id, None, 1, vec![(id.clone(), Bytes::from_static(b"a"))]),
                now,
            )
            .expect_err("leader's sync completes the round");
        assert_eq!(rx.try_recv().unwrap().assignment, Bytes::from_static(b"a"));
        assert_eq!(g.state, State::Stable);
        assert_eq!(g.heartbeat(&id, None, 1, now), Ok(()));
        assert_eq!(
            g.heartbeat(&id, None, 0, now),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.heartbeat("nobody", None, 1, now),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn a_second_member_triggers_a_rebalance_both_join_one_generation() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let a = joined(g.join(params("", false), now).unwrap_err());
        g.sync(sp(&a.member_id, None, 1, vec![]), now).unwrap_err();
        let mut b_rx = g.join(params("", false), now).unwrap_err();
        assert_eq!(g.state, State::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&a.member_id, None, 1, now),
            Err(ResponseError::RebalanceInProgress)
        );
        assert!(
            b_rx.try_recv().is_err(),
            "waits for the first member to rejoin"
        );
        let a2 = joined(g.join(params(&a.member_id, false), now).unwrap_err());
        let b = b_rx.try_recv().unwrap();
        assert_eq!(a2.generation, 2);
        assert_eq!(b.generation, 2);
        assert_eq!(a2.leader, a.member_id);
        assert_eq!(a2.members.len(), 2, "the leader sees everyone");
        assert!(b.members.is_empty(), "followers see no one");
        let mut b_sync = g.sync(sp(&b.member_id, None, 2, vec![]), now).unwrap_err();
        assert!(
            b_sync.try_recv().is_err(),
            "the follower waits for the leader"
        );
        let assignments = vec![
            (a.member_id.clone(), Bytes::from_static(b"A")),
            (b.member_id.clone(), Bytes::from_static(b"B")),
        ];
        g.sync(sp(&a.member_id, None, 2, assignments), now)
            .unwrap_err();
        assert_eq!(
            b_sync.try_recv().unwrap().assignment,
            Bytes::from_static(b"B")
        );
    }

    #[test]
    fn an_expired_member_is_removed_and_the_rest_rebalance() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let a = joined(g.join(params("", false), now).unwrap_err());
        g.sync(sp(&a.member_id, None, 1, vec![]), now).unwrap_err();
        let b_rx = g.join(params("", false), now).unwrap_err();
        let _ = joined(g.join(params(&a.member_id, false), now).unwrap_err());
        let b = joined(b_rx);
        g.sync(sp(&a.member_id, None, 2, vec![]), now).unwrap_err();
        // b keeps heartbeating, a goes silent past its session timeout.
        let later = now + Duration::from_secs(8);
        assert_eq!(g.heartbeat(&b.member_id, None, 2, later), Ok(()));
        g.tick(now + Duration::from_secs(11));
        assert!(!g.members.contains_key(&a.member_id));
        assert_eq!(
            g.heartbeat(&b.member_id, None, 2, now + Duration::from_secs(11)),
            Err(ResponseError::RebalanceInProgress)
        );
        let b2 = joined(
            g.join(params(&b.member_id, false), now + Duration::from_secs(12))
                .unwrap_err(),
        );
        assert_eq!(b2.leader, b.member_id);
        assert_eq!(b2.generation, 3);
    }

    #[test]
    fn the_join_phase_ends_at_the_rebalance_timeout_without_laggards() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let a = joined(g.join(params("", false), now).unwrap_err());
        g.sync(sp(&a.member_id, None, 1, vec![]), now).unwrap_err();
        let b_rx = g.join(params("", false), now).unwrap_err();
        g.tick(now + Duration::from_secs(31));
        let b = joined(b_rx);
        assert_eq!(b.error, 0);
        assert_eq!(
            b.leader, b.member_id,
            "a did not rejoin in time and was dropped"
        );
    }

    #[test]
    fn static_members_rejoin_without_a_rebalance_and_fence_the_old_id() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let mut p = params("", true);
        p.group_instance_id = Some("instance-1".into());
        let a = joined(g.join(p.clone(), now).unwrap_err());
        let x = vec![(a.member_id.clone(), Bytes::from_static(b"x"))];
        g.sync(sp(&a.member_id, Some("instance-1"), 1, x), now)
            .unwrap_err();
        let again = g.join(p, now).expect("answered at once");
        assert_eq!(again.error, 0);
        assert_eq!(again.generation, 1, "no new generation");
        assert_ne!(again.member_id, a.member_id);
        assert_eq!(g.state, State::Stable);
        assert_eq!(
            again.leader, a.member_id,
            "before v9 a rejoining leader is not told it leads, so it assigns nothing"
        );
        assert!(again.members.is_empty());
        assert_eq!(
            g.heartbeat(&a.member_id, Some("instance-1"), 1, now),
            Err(ResponseError::FencedInstanceId)
        );
        assert_eq!(
            g.heartbeat(&again.member_id, Some("instance-1"), 1, now),
            Ok(())
        );
        let synced = g
            .sync(sp(&again.member_id, Some("instance-1"), 1, vec![]), now)
            .unwrap();
        assert_eq!(
            synced.assignment,
            Bytes::from_static(b"x"),
            "assignment kept"
        );
    }

    #[test]
    fn a_static_leader_rejoining_with_v9_is_told_to_skip_the_assignment() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let mut p = params("", true);
        p.group_instance_id = Some("pod-1".into());
        p.supports_skip_assignment = true;
        let a = joined(g.join(p.clone(), now).unwrap_err());
        g.sync(sp(&a.member_id, Some("pod-1"), 1, vec![]), now)
            .unwrap_err();
        let again = g.join(p, now).expect("answered at once");
        assert_eq!(again.leader, again.member_id);
        assert!(again.skip_assignment);
        assert_eq!(again.members.len(), 1);
        assert_eq!(again.generation, 1);
    }

    #[test]
    fn a_static_member_restarting_mid_rebalance_joins_it_under_its_new_id() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let mut p = params("", true);
        p.group_instance_id = Some("pod-1".into());
        let a = joined(g.join(p.clone(), now).unwrap_err());
        g.sync(sp(&a.member_id, Some("pod-1"), 1, vec![]), now)
            .unwrap_err();
        // A second member starts a rebalance; pod-1 restarts before rejoining.
        let mut b_rx = g.join(params("", false), now).unwrap_err();
        let mut again = g.join(p, now).expect_err("waits in the rebalance");
        let (a2, b) = (again.try_recv().unwrap(), b_rx.try_recv().unwrap());
        assert_eq!(a2.error, 0);
        assert_ne!(a2.member_id, a.member_id);
        assert_eq!((a2.generation, b.generation), (2, 2));
        assert_eq!(
            a2.leader, a2.member_id,
            "the leader keeps its role under its new id"
        );
        assert_eq!(a2.members.len(), 2);
    }

    #[test]
    fn a_leader_that_never_syncs_is_dropped_and_the_rest_rebalance() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let a = joined(g.join(params("", false), now).unwrap_err());
        g.sync(sp(&a.member_id, None, 1, vec![]), now).unwrap_err();
        let b_rx = g.join(params("", false), now).unwrap_err();
        let a2 = joined(g.join(params(&a.member_id, false), now).unwrap_err());
        let b = joined(b_rx);
        assert_eq!(a2.leader, a.member_id);
        let mut b_sync = g.sync(sp(&b.member_id, None, 2, vec![]), now).unwrap_err();
        // Both heartbeat (so their sessions live), but the leader never sends its SyncGroup.
        let later = now + Duration::from_secs(29);
        assert_eq!(g.heartbeat(&a.member_id, None, 2, later), Ok(()));
        assert_eq!(g.heartbeat(&b.member_id, None, 2, later), Ok(()));
        g.tick(later);
        assert!(b_sync.try_recv().is_err());
        g.tick(now + Duration::from_secs(31));
        assert_eq!(
            b_sync.try_recv().unwrap().error,
            ResponseError::RebalanceInProgress.code()
        );
        assert!(!g.members.contains_key(&a.member_id));
        let b3 = joined(
            g.join(params(&b.member_id, false), now + Duration::from_secs(31))
                .unwrap_err(),
        );
        assert_eq!(b3.leader, b.member_id);
    }

    #[test]
    fn a_repeated_join_while_the_assignment_is_made_gets_the_same_generation() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let a = joined(g.join(params("", false), now).unwrap_err());
        assert_eq!(g.state, State::CompletingRebalance);
        let again = g
            .join(params(&a.member_id, false), now)
            .expect("answered at once");
        assert_eq!(again.generation, a.generation);
        assert_eq!(again.members.len(), 1, "the leader still gets the members");
        assert_eq!(g.state, State::CompletingRebalance);
    }

    #[test]
    fn oversized_member_metadata_is_refused() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let mut p = params("", false);
        p.protocols = vec![(
            "range".into(),
            Bytes::from(vec![0u8; MAX_METADATA_BYTES + 1]),
        )];
        assert_eq!(
            g.join(p, now).unwrap().error,
            ResponseError::InvalidRequest.code()
        );
        assert!(g.members.is_empty());
    }

    #[test]
    fn a_static_member_late_for_the_join_phase_keeps_its_place_until_its_session_ends() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let mut p = params("", true);
        p.group_instance_id = Some("pod-1".into());
        p.session_timeout = Duration::from_secs(45);
        let a = joined(g.join(p.clone(), now).unwrap_err());
        g.sync(sp(&a.member_id, Some("pod-1"), 1, vec![]), now)
            .unwrap_err();
        let b_rx = g.join(params("", false), now).unwrap_err();
        // pod-1 is restarting and misses the whole join phase.
        g.tick(now + Duration::from_secs(31));
        let b = joined(b_rx);
        assert_eq!(b.generation, 2);
        assert!(g.members.contains_key(&a.member_id), "still a member");
        // Back within its session timeout: it takes part in generation 2.
        let mut back = p;
        back.member_id = a.member_id.clone();
        let again = g
            .join(back, now + Duration::from_secs(35))
            .expect("the current generation at once");
        assert_eq!(again.generation, 2);
        // Had it not come back, its session would have ended it.
        g.tick(now + Duration::from_secs(90));
        assert!(!g.members.contains_key(&a.member_id));
    }

    #[test]
    fn leaving_empties_the_group() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let a = joined(g.join(params("", false), now).unwrap_err());
        g.sync(sp(&a.member_id, None, 1, vec![]), now).unwrap_err();
        assert_eq!(g.leave(&a.member_id, None, now), Ok(()));
        assert_eq!(g.state, State::Empty);
        assert_eq!(
            g.leave(&a.member_id, None, now),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn an_incompatible_protocol_is_refused() {
        let now = Instant::now();
        let mut g = Group::new(Duration::ZERO);
        let _ = g.join(params("", false), now);
        let mut other = params("", false);
        other.protocols = vec![("roundrobin".into(), Bytes::new())];
        assert_eq!(
            g.join(other, now).unwrap().error,
            ResponseError::InconsistentGroupProtocol.code()
        );
    }

    #[test]
    fn the_initial_delay_gathers_starting_members() {
        let now = Instant::now();
        let mut g = Group::new(Duration::from_secs(3));
        let mut a = g.join(params("", false), now).unwrap_err();
        assert!(a.try_recv().is_err(), "held for the initial delay");
        let mut b = g
            .join(params("", false), now + Duration::from_secs(1))
            .unwrap_err();
        g.tick(now + Duration::from_secs(2));
        assert!(a.try_recv().is_err());
        g.tick(now + Duration::from_secs(5));
        let (a, b) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        assert_eq!(a.generation, 1);
        assert_eq!(b.generation, 1);
    }

    #[test]
    fn subscriptions_are_read_from_consumer_metadata() {
        let mut data = vec![0, 1];
        data.extend_from_slice(&2i32.to_be_bytes());
        for t in ["alpha", "beta"] {
            data.extend_from_slice(&(t.len() as i16).to_be_bytes());
            data.extend_from_slice(t.as_bytes());
        }
        data.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(parse_subscription(&data), vec!["alpha", "beta"]);
        assert!(parse_subscription(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_empty());
    }
}
