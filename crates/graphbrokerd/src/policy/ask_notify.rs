//! The ask as a desktop notification with actions: `Notify` with "allow" (once), "always" and "deny", then the
//! `ActionInvoked` signal of that notification — from the owner of `org.freedesktop.Notifications` only (the bus
//! matches the sender) — answers the ask. Linux; elsewhere the ask is answered by `policy approve` alone.

use std::sync::Arc;

use crate::broker::Broker;

/// Shows the ask and answers it from the user's click; abort the task once the ask is over.
pub(super) fn start(broker: Arc<Broker>, id: u64, text: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(target_os = "linux")]
        if let Err(e) = notify(&broker, id, &text).await {
            tracing::warn!(id, "could not ask through a desktop notification: {e}");
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (broker, id, text);
    })
}

#[cfg(target_os = "linux")]
async fn notify(broker: &Broker, id: u64, text: &str) -> Result<(), zbus::Error> {
    use std::collections::HashMap;

    use futures_util::StreamExt as _;

    let connection = zbus::Connection::session().await?;
    let proxy: zbus::Proxy<'_> = zbus::proxy::Builder::new(&connection)
        .destination("org.freedesktop.Notifications")?
        .path("/org/freedesktop/Notifications")?
        .interface("org.freedesktop.Notifications")?
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    // Subscribed before the notification exists, so that no click can come too early to be seen.
    let mut invoked = proxy.receive_signal("ActionInvoked").await?;
    let actions = ["allow", "Allow once", "always", "Always allow", "deny", "Deny"];
    let hints: HashMap<&str, zbus::zvariant::Value<'_>> = HashMap::new();
    let body = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let reply = proxy
        .call_method(
            "Notify",
            &(
                "graphbroker",
                0u32,
                "dialog-question",
                "graphbroker: a program asks for a token",
                body,
                &actions[..],
                hints,
                0i32,
            ),
        )
        .await?;
    let notification: u32 = reply.body().deserialize()?;
    while let Some(signal) = invoked.next().await {
        let Ok((which, key)) = signal.body().deserialize::<(u32, String)>() else { continue };
        if which != notification {
            continue;
        }
        if let Some(answer) = super::Answer::from_action(&key) {
            if let Err(e) = broker.guard.approvals.answer(id, answer, None) {
                tracing::info!(id, "a notification answered an ask that was over: {e}");
            }
            return Ok(());
        }
    }
    Ok(())
}
