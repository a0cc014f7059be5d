//! The rebalance callbacks, run on the consumer thread: an assignment
//! waits for the runtime's answer, so each partition is assigned at its
//! checkpointed offset; a revoke waits for a checkpoint; an exclusive
//! source checks what it holds after either (`exclusive.rs`).

use std::collections::BTreeSet;

use flowline_connector_api::{ConnectorError, SourceEvent};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::poller::{lock, tps, Ctx};
use super::state::Part;

impl ConsumerContext for Ctx {
    /// Replaces rdkafka's default (pre-rebalance hook, assign, post hook):
    /// an assignment waits for the runtime's answer, so each partition is
    /// assigned at its checkpointed offset; a revoke waits for a checkpoint.
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        self.0.assignment_changes();
        if self.0.settings.members.is_some() {
            *lock(&self.0.members_at) =
                Some(std::time::Instant::now() + super::members::AFTER_REBALANCE);
        }
        let cooperative = matches!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let r = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // What this consumer will hold: the partitions it has (an
                // incremental assignment adds to them) and the new ones.
                // From its own state: `c.assignment()` in the callback of a
                // closing consumer can hang, as `rebalance_protocol` can.
                let mut held = tps(tpl).into_iter().collect::<BTreeSet<_>>();
                if cooperative {
                    held.extend(self.held());
                }
                if self.refused(c, held) {
                    return;
                }
                self.assigned(tpl);
                if cooperative {
                    c.incremental_assign(tpl)
                } else {
                    c.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoked(tpl, c.assignment_lost());
                if cooperative {
                    c.incremental_unassign(tpl)
                } else {
                    c.unassign()
                }
            }
            e => {
                tracing::error!(error = ?e, "rebalance failed");
                return;
            }
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "applying the rebalance failed");
        }
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && cooperative {
            self.refused(c, self.held());
        }
    }
}

impl Ctx {
    /// The partitions this consumer holds (revoked ones are removed from
    /// its state at the revoke).
    fn held(&self) -> BTreeSet<(String, i32)> {
        lock(&self.0.state)
            .parts
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect()
    }

    /// An exclusive source holding some but not all of its topics'
    /// partitions (`exclusive.rs`) fails, and its thread stops.
    fn refused(&self, c: &BaseConsumer<Self>, held: BTreeSet<(String, i32)>) -> bool {
        let sh = &self.0;
        if sh.stop.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let Some(msg) = sh
            .settings
            .exclusive
            .as_ref()
            .and_then(|(topics, group)| super::exclusive::refusal(c, topics, group, held))
        else {
            return false;
        };
        tracing::error!(reason = %msg, "exclusive source shares its topics");
        sh.send((Err(ConnectorError::permanent(msg)), false));
        sh.shut_down();
        true
    }

    /// Hands on what was read, then the `Revoked` event, and waits for a
    /// checkpoint that covers what was delivered from these partitions.
    ///
    /// Not when the assignment is `lost` (this consumer's session ended, as
    /// in a broker outage past `session.timeout.ms`): the group may have
    /// handed the partitions on already, so a checkpoint cannot hand them
    /// over, and waiting is harmful. Until this callback returns, librdkafka
    /// heartbeats with the member id the session's end cleared; a static
    /// member (`group.instance.id`) whose coordinator is back by then is
    /// fenced for it (`FencedInstanceId`, fatal to the consumer; librdkafka
    /// issue 3437). Whoever owns them next replays from the last completed
    /// checkpoint; the runtime still takes one at the `Revoked` event.
    fn revoked(&self, l: &TopicPartitionList, lost: bool) {
        let sh = &self.0;
        sh.flush_uncredited();
        let mut pids = Vec::new();
        let mut need = Vec::new();
        {
            let mut st = lock(&sh.state);
            for (t, p) in tps(l) {
                if let Some(part) = st.remove(&t, p) {
                    if !lost && !part.awaiting && part.next > 0 {
                        need.push((part.pid.clone(), part.next as u64));
                        st.revoking.push((part.pid.clone(), t, p));
                    }
                    pids.push(part.pid);
                }
            }
        }
        if lost {
            tracing::warn!(partitions = ?pids, "partitions lost: the consumer group session ended (the coordinator was unreachable for session.timeout.ms); rejoining at once, and whoever owns them next replays from the last completed checkpoint");
        } else {
            tracing::info!(partitions = ?pids, "partitions revoked");
        }
        sh.send((Ok(SourceEvent::Revoked(pids)), false));
        if !need.is_empty() {
            sh.wait_for_checkpoint(&need);
            lock(&sh.state).revoking.clear();
        }
    }

    /// Sends the `Assigned` event and waits for the runtime's `seek`; sets
    /// the offsets it named on `l`, so fetching starts there. The others
    /// start at the group's committed offsets (or `auto_offset_reset`).
    fn assigned(&self, l: &mut TopicPartitionList) {
        let sh = &self.0;
        let list = tps(l);
        let mut pids = Vec::new();
        {
            let mut st = lock(&sh.state);
            for (t, p) in &list {
                let part = Part::new(t, *p, true);
                pids.push(part.pid.clone());
                st.add(part);
            }
        }
        tracing::info!(partitions = ?pids, "partitions assigned");
        sh.flush_uncredited();
        lock(&sh.answers).push_back(pids.clone());
        sh.send((Ok(SourceEvent::Assigned(pids)), false));
        let mut st = sh.wait_for_seek(&list);
        for (t, p) in &list {
            let Some(part) = st.find(t, *p) else { continue };
            if part.awaiting {
                // No answer in time: fetching starts where the group stands,
                // but nothing is delivered until the runtime's `seek` names
                // the offset of its restored state (it seeks there then):
                // state and position always come from one checkpoint.
            } else if let Some(o) = part.target.take() {
                if let Err(e) = l.set_partition_offset(t, *p, Offset::Offset(o)) {
                    tracing::warn!(partition = %part.pid, error = %e, "setting the start offset failed");
                    part.target = Some(o);
                } else {
                    part.expect = o;
                }
            }
        }
    }
}
