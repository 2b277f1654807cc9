//! `[fault]` and `[[faults]]`: the seed, header faults, the production
//! guard, and the rules installed at start.

use http::Uri;

use super::raw::RawFault;
use super::{normal_host, Checker, FaultSettings, RouteSettings, PRODUCTION_HOSTS, SANDBOX_HOSTS};
use crate::fault::RawRule;

/// Validates `[fault]` and `[[faults]]` against every target: the default
/// `upstream` (none: the Mockbank) and the routes'.
pub(super) fn validate(
    c: &mut Checker,
    f: &RawFault,
    rules_written: &[RawRule],
    upstream: Option<&Uri>,
    routes: &[RouteSettings],
) -> FaultSettings {
    // Every target counts: a production route is as guarded as a
    // production default. Hosts are normalised (`normal_host`), so no
    // spelling slips past the guard.
    let hosts: Vec<String> = upstream
        .into_iter()
        .chain(routes.iter().map(|r| &r.upstream))
        .map(normal_host)
        .collect();
    let production_host = hosts
        .iter()
        .find(|h| PRODUCTION_HOSTS.contains(&h.as_str()));
    // The Mockbank (no upstream) counts as a sandbox.
    let sandbox_or_mockbank = hosts.iter().all(|h| SANDBOX_HOSTS.contains(&h.as_str()));
    let refusal = production_host
        .filter(|_| !f.allow_faults_in_production)
        .map(|host| {
            format!(
                "faults are refused against the production Lean host {host}; \
                 set fault.allow_faults_in_production = true to allow them"
            )
        });
    let allow_header = f.allow_header_faults.unwrap_or(sandbox_or_mockbank);
    if allow_header && refusal.is_some() {
        c.fail(
            "fault.allow_header_faults",
            refusal.clone().unwrap_or_default(),
        );
    }
    let mut rules = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, raw_rule) in rules_written.iter().enumerate() {
        match crate::fault::Rule::from_raw(raw_rule.clone()) {
            Ok(rule) => {
                if !ids.insert(rule.id.clone()) {
                    c.fail(
                        &format!("faults[{i}].id"),
                        format!("`{}` is used by another rule", rule.id),
                    );
                }
                rules.push(rule);
            }
            Err(e) => c.fail(&format!("faults[{i}].{}", e.field), e.reason),
        }
    }
    if let (Some(why), false) = (&refusal, rules_written.is_empty()) {
        c.fail("faults", why.clone());
    }
    FaultSettings {
        seed: f.seed,
        allow_header,
        allowed: refusal.is_none(),
        refusal,
        rules,
    }
}
