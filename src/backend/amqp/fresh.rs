//! The `fresh` path: connect, open a channel, declare, publish, (confirm), close, all per publish.

use super::publisher::{send, settle};
use super::{Settings, connect, declare, open_channel};
use crate::error::PublishError;
use crate::message::TaskMessage;
use crate::stage::{Stage, StageClock};
use std::sync::Arc;

/// Connects, opens a channel, declares, publishes, (confirms), closes: all per publish.
pub struct FreshPublisher {
    s: Arc<Settings>,
}

impl FreshPublisher {
    pub(super) fn new(s: Arc<Settings>) -> Self {
        FreshPublisher { s }
    }

    pub(super) async fn publish(
        &mut self,
        batch: &[TaskMessage],
        clock: &mut StageClock,
    ) -> Result<(), PublishError> {
        let s = &*self.s;
        for message in batch {
            // A cancelled publish drops `live`, and lapin closes a dropped connection.
            let live = connect(s, &s.transport, false, clock).await?;
            let channel = clock.time(Stage::Channel, open_channel(&live, s)).await?;
            declare(&channel, s, clock).await?;
            let confirm = send(&channel, s, message, clock).await?;
            if s.confirms() {
                clock.time(Stage::Confirm, settle(confirm, s)).await?;
            } else {
                let _ = confirm.await;
            }
            clock
                .time(Stage::Close, async {
                    let _ = channel.close(200, "OK".into()).await;
                    let _ = live.connection.close(200, "OK".into()).await;
                })
                .await;
        }
        Ok(())
    }
}
