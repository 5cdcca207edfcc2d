//! Sentinel: following a service's failovers, so that no lock is taken on a demoted master.

use std::{sync::Weak, time::Duration};

use futures_util::StreamExt;

use super::{Master, pool::Subscriptions};
use crate::backoff::Backoff;

/// The task of [`Master::follow_failovers`]: listens to the sentinels' `+switch-master`
/// announcements (`<service> <old ip> <old port> <new ip> <new port>`) for the master's
/// service, and ends when the master is dropped.
pub(super) async fn follow_failovers(master: Weak<Master>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let subscribed = async {
            let strong = master.upgrade()?;
            let Subscriptions::Sentinel {
                client, service, ..
            } = &strong.subscriptions
            else {
                return None;
            };
            let service = service.clone();
            let sentinel = client.lock().await.async_get_sentinel_client().await;
            let mut pubsub = sentinel.ok()?.get_async_pubsub().await.ok()?;
            pubsub.subscribe("+switch-master").await.ok()?;
            Some((pubsub, service))
        };
        let Some((pubsub, service)) = subscribed.await else {
            if master.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(backoff.next()).await;
            continue;
        };
        backoff.reset();
        let mut messages = pubsub.into_on_message();
        loop {
            // Wakes now and then to notice a dropped master.
            let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
            let Some(master) = master.upgrade() else {
                return;
            };
            match next {
                Ok(Some(message)) => {
                    let payload: String = message.get_payload().unwrap_or_default();
                    if payload.split(' ').next() == Some(service.as_str()) {
                        tracing::warn!(master = %master.label, %payload, "redlock: sentinel failover; reconnecting to the new master");
                        master.disconnect(None);
                    }
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
    }
}
