//! `[mockbank]`: the embedded Mockbank's listener, users, timing, credentials
//! and webhooks.

use super::raw::RawMockbank;
use super::{parse_upstream, Checker, MockbankSettings, Secret};
use crate::mockbank::Region;

/// The values `mockbank.region` takes.
const REGIONS: &[(&str, Region)] = &[("uae", Region::Uae), ("ksa", Region::Ksa)];

/// Validates `[mockbank]`; `named` is the region `proxy.upstream` names
/// (`mockbank-ksa`), which `mockbank.region` must not contradict.
pub(super) fn validate(
    c: &mut Checker,
    m: &RawMockbank,
    named: Option<Region>,
) -> MockbankSettings {
    let non_empty = |c: &mut Checker, key: &str, v: &str| {
        if v.trim().is_empty() {
            c.fail(key, "must not be empty");
        }
        Secret::new(v)
    };
    if !(m.time_scale.is_finite() && m.time_scale > 0.0) {
        c.fail(
            "mockbank.time_scale",
            format!("{} is not a positive number", m.time_scale),
        );
    }
    let region = match (m.region.as_deref(), named) {
        (None, named) => named.unwrap_or_default(),
        (Some(value), named) => {
            let chosen = c.choice("mockbank.region", value, REGIONS);
            if let (Some(chosen), Some(named)) = (chosen, named) {
                if chosen != named {
                    c.fail(
                        "mockbank.region",
                        format!(
                            "`{value}` contradicts proxy.upstream = \"mockbank-{}\"; set one of them",
                            named.name()
                        ),
                    );
                }
            }
            chosen.or(named).unwrap_or_default()
        }
    };
    MockbankSettings {
        listen: c.addr("mockbank.listen", &m.listen),
        region,
        seed: m.seed,
        inactivity: c.duration("mockbank.inactivity", &m.inactivity),
        corporate_session: c.duration("mockbank.corporate_session", &m.corporate_session),
        time_scale: m.time_scale,
        app_token: non_empty(c, "mockbank.app_token", m.app_token.expose()),
        client_id: non_empty(c, "mockbank.client_id", &m.client_id)
            .expose()
            .to_string(),
        client_secret: non_empty(c, "mockbank.client_secret", m.client_secret.expose()),
        webhook_url: m.webhook_url.as_deref().and_then(|u| {
            parse_upstream(u)
                .map_err(|e| c.fail("mockbank.webhook_url", e))
                .ok()
        }),
        webhook_secret: non_empty(c, "mockbank.webhook_secret", m.webhook_secret.expose()),
        async_delay: c.duration("mockbank.async_delay", &m.async_delay),
        refresh_duration: c.duration("mockbank.refresh_duration", &m.refresh_duration),
        link_origins: link_origins(c, &m.link_origins),
    }
}

/// `mockbank.link_origins`: each `*` or a bare origin (`scheme://host[:port]`).
fn link_origins(c: &mut Checker, list: &[String]) -> Vec<String> {
    for origin in list {
        let bare = origin
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
            .is_some_and(|u| {
                u.path() == "/"
                    && u.query().is_none()
                    && !origin.trim_end_matches('/').ends_with(':')
            });
        if origin != "*" && !bare {
            c.fail(
                "mockbank.link_origins",
                format!("{origin:?} is not an origin: give \"*\" or scheme://host[:port], e.g. \"http://localhost:3000\""),
            );
        }
    }
    list.iter()
        .map(|o| o.trim_end_matches('/').to_string())
        .collect()
}
