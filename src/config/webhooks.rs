//! `[webhooks]`: the catcher's listener, signature checks, what it keeps and
//! the relay to the app.

use super::raw::RawWebhooks;
use super::{parse_upstream, secret, Checker, Secret, WebhookSettings, ENV_WEBHOOK_SECRET};
use crate::webhooks::Policy;

/// `webhooks.verify`'s values.
const POLICIES: &[(&str, Policy)] = &[
    ("enforce", Policy::Enforce),
    ("report", Policy::Report),
    ("off", Policy::Off),
];

/// Validates `[webhooks]`; with the embedded Mockbank (`mockbank_runs`) the
/// secret defaults to the one it signs with.
pub(super) fn validate(
    c: &mut Checker,
    w: RawWebhooks,
    mockbank_runs: bool,
    mockbank_secret: &Secret,
    env: &dyn Fn(&str) -> Option<String>,
) -> WebhookSettings {
    let policy = c
        .choice("webhooks.verify", &w.verify, POLICIES)
        .unwrap_or(Policy::Report);
    let mut webhook_secret = secret(c, "webhooks.secret", ENV_WEBHOOK_SECRET, w.secret, env);
    if webhook_secret.is_none() && mockbank_runs {
        // The embedded Mockbank signs with its own secret.
        webhook_secret = Some(mockbank_secret.clone());
    }
    if policy == Policy::Enforce && webhook_secret.is_none() {
        c.fail(
            "webhooks.secret",
            format!("required when webhooks.verify is \"enforce\"; set it or {ENV_WEBHOOK_SECRET}"),
        );
    }
    let relay = w
        .relay
        .iter()
        .enumerate()
        .filter_map(|(i, u)| {
            parse_upstream(u)
                .map_err(|e| c.fail(&format!("webhooks.relay[{i}]"), e))
                .ok()
        })
        .collect();
    if w.max_attempts == 0 {
        c.fail("webhooks.max_attempts", "must be at least 1");
    }
    if w.history_bytes == 0 {
        c.fail("webhooks.history_bytes", "must be greater than zero");
    }
    WebhookSettings {
        listen: c.addr("webhooks.listen", &w.listen),
        secret: webhook_secret,
        policy,
        relay,
        body_limit: w.body_limit.max(1),
        history: w.history,
        history_bytes: w.history_bytes,
        claim_window: c.duration("webhooks.claim_window", &w.claim_window),
        queue_limit: w.queue_limit,
        retry_initial: c.duration("webhooks.retry_initial", &w.retry_initial),
        retry_max: c.duration("webhooks.retry_max", &w.retry_max),
        max_attempts: w.max_attempts,
    }
}
