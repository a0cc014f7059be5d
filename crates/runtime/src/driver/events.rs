//! What the driver does with each message of the source task: records to
//! the chains, end of input, rebalances, idleness, records the source
//! refused, and source errors.
//!
//! With partitions running on tasks of their own (`parts`), or runs split
//! across tasks (`split`), the batches waiting behind a batch are taken
//! with it, and a message of another
//! kind taken from behind them (a rebalance, a caught-up report) is
//! handled next, in order.

use std::time::{Duration, Instant};

use flowline_connector_api::{ConnectorError, SourceEvent, SourcePosition};
use tokio::sync::mpsc;

use super::Driver;
use crate::handle::EndReason;
use crate::source::FromSource;
use crate::RuntimeError;

/// What the driver loop does after a message.
pub(super) enum Next {
    /// Wait for the next one.
    Wait,
    /// The input ended: stop.
    End(EndReason),
    /// Handle this one, taken from the channel behind the batches gathered.
    Then(FromSource),
}

impl Driver {
    pub(super) async fn on_event(
        &mut self,
        ev: FromSource,
        rx: &mut mpsc::Receiver<FromSource>,
        seek_tx: &mpsc::Sender<SourcePosition>,
    ) -> Result<Next, RuntimeError> {
        let ev = match ev.event() {
            Ok(ev) => ev,
            Err(caught_up) => {
                self.lag_known = true;
                self.caught_up(Some(&caught_up));
                return Ok(Next::Wait);
            }
        };
        match ev {
            Ok(SourceEvent::Records(batch)) => {
                let (t0, ran) = (Instant::now(), self.local_time());
                self.waited = Duration::ZERO;
                let mut next = Next::Wait;
                if self.parallel_parts() {
                    if let Some(then) = self.process_parts(batch, rx).await? {
                        next = Next::Then(then);
                    }
                } else if self.split > 1 {
                    if let Some(then) = self.process_split(batch, rx).await? {
                        next = Next::Then(then);
                    }
                } else {
                    self.process(batch).await?;
                }
                let local = self.local_time() - ran;
                self.times
                    .busy(t0.elapsed().saturating_sub(self.waited + local));
                return Ok(next);
            }
            // The windows still open fire after the last checkpoint (see
            // `end_of_input`).
            Ok(SourceEvent::End) => return Ok(Next::End(EndReason::InputEnded)),
            Ok(SourceEvent::Revoked(ids)) => self.revoke(&ids).await?,
            Ok(SourceEvent::Assigned(ids)) => {
                let (pos, rewinds) = self.assign(&ids)?;
                self.rewind_sinks(rewinds).await?;
                self.await_partitions(&ids);
                // Always answer an assignment with a seek, empty when nothing
                // was checkpointed: the source holds back the new
                // partitions' records until it has it.
                let _ = seek_tx.send(pos).await;
            }
            // Nothing to read: every partition is caught up.
            Ok(SourceEvent::Idle) => self.caught_up(None),
            Ok(_) => {}
            Err(ConnectorError::BadRecords(rejected)) => self.source_rejected(rejected).await,
            Err(e) => return Err(self.source_err(e)),
        }
        Ok(Next::Wait)
    }
}
