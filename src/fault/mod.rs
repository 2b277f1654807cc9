//! Fault injection: rules, their compact spec grammar, matching and Lean-shaped
//! failures.
//!
//! This module is the rule engine; the fault layer applies what it decides.
//!
//! - [`Rule`] is a validated rule: an id, a [`Match`], an [`Action`], and
//!   `probability`, `count`, `ttl` and `after`.
//! - [`RawRule`] is the one written shape of a rule, the same in the config
//!   file (`[[faults]]`), the admin API (`POST /api/faults`) and the listing.
//!   [`Rule::from_raw`] validates it, [`parse_rule`] takes JSON,
//!   [`Rule::to_raw`] writes a rule back.
//! - [`parse_spec`] reads the compact grammar of `leanproxy faults add` and
//!   the `x-leanproxy-fault` header.
//! - [`FaultRules`] is the live rule set, a cheap-to-clone handle:
//!   [`install`](FaultRules::install), [`add`](FaultRules::add),
//!   [`remove`](FaultRules::remove), [`clear`](FaultRules::clear),
//!   [`list`](FaultRules::list), and [`evaluate`](FaultRules::evaluate), which
//!   returns the [`Applied`] fault for a request's [`RequestFacts`], with any
//!   random value (a delay, a `Retry-After`) already drawn.
//! - [`Preset`] gives Lean's error envelopes for `lean_error`;
//!   [`status_detail`] gives the `status_detail` of a `failed` answer.
//!
//! Invalid rules are refused with a [`RuleError`] naming the field:
//! `probability: 1.5 is not between 0 and 1`.
//!
//! # Written shape
//!
//! ```toml
//! [[faults]]
//! id = "slow-accounts"          # optional; generated as fault-xxxxxxxx
//! action = "delay"
//! delay = "200ms"               # or delay_min/delay_max, or delay_mean/delay_stddev
//! match = { method = "GET", path = "/data/v2/*", entity_id = "…", headers = { x-env = "staging" }, query = { page = "0" } }
//! probability = 0.3             # 0–1, default 1
//! count = 2                     # apply twice, then retire
//! ttl = "5m"                    # retire five minutes after installation
//! after = 2                     # let the first two matches through
//! ```
//!
//! The same rule in JSON is `{"id": "slow-accounts", "action": "delay", "delay":
//! "200ms", "match": {"method": "GET", …}, "probability": 0.3, …}`. Each action
//! reads its own keys (see [`RawRule`]): `status` + `body` + `content_type`;
//! `lean_error`; `sticky`; `granular_status_code`; `limit` + `window`;
//! `timeout`; `after_bytes`; `bytes_per_second`.
//!
//! # Spec grammar
//!
//! The action first, optionally with its value, then `key=value` options:
//!
//! | action | example |
//! | --- | --- |
//! | delay | `delay=200ms`, `delay=100ms..300ms` (uniform), `delay=200ms~50ms` (normal) |
//! | status | `status=503 body="down for maintenance"` |
//! | lean_error | `lean_error=RATE_LIMIT_EXCEEDED` |
//! | reconnect_required | `reconnect`, `reconnect_required sticky` |
//! | failed | `failed`, `failed=LOGGED_IN_ELSEWHERE` |
//! | pending, reset, corrupt | `pending` |
//! | rate_limit | `rate_limit=10/1m`, `rate_limit=10` (window 1m) |
//! | timeout | `timeout`, `timeout=30s` |
//! | truncate | `truncate=100` |
//! | throttle | `throttle=1024` |
//!
//! Options: `id=`, `p=` (probability), `count=`, `ttl=`, `after=`, `sticky`,
//! `method=`, `path=`, `entity_id=` (or `entity=`), `header.NAME=VALUE`,
//! `query.NAME=VALUE`, `body=`, `content_type=`. Values with spaces go in double
//! quotes.
//!
//! # Evaluation
//!
//! Rules are kept in order, and a request is offered to each live rule (not
//! paused, not retired) whose match holds: while a rule's first `after`
//! matches pass, or a `rate_limit` rule's requests are within `limit` in the
//! current `window`, it lets the request through to the upstream; otherwise
//! `probability` is drawn from the seeded RNG, and a declined roll offers the
//! request to the next rule. A hit uses up one of `count` and the rule retires
//! when none is left; `ttl` retires it a duration after installation. Retired
//! rules stay listed until removed.
//!
//! ```
//! use leanproxy::fault::{parse_spec, FaultRules, RequestFacts};
//! use http::{HeaderMap, Method};
//!
//! let rules = FaultRules::new(Some(42));
//! rules.add(parse_spec("status=503 path=/data/* after=2 count=3").unwrap()).unwrap();
//! let headers = HeaderMap::new();
//! let facts = RequestFacts {
//!     method: &Method::GET,
//!     path: "/data/v2/accounts",
//!     query: Some("entity_id=e-1"),
//!     headers: &headers,
//!     entity_id: Some("e-1"),
//! };
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let mut faulted = Vec::new();
//! for _ in 0..6 {
//!     faulted.push(rules.evaluate(&facts).await.is_some());
//! }
//! assert_eq!(faulted, [false, false, true, true, true, false]);
//! # });
//! ```
//!
//! The counters and quotas are kept by a backend (`quota.rs`): in memory,
//! where every evaluation's outcome is known at once, or on Redis
//! (`redis.rs`), shared by several replicas with the rules themselves
//! (`book.rs`). `probability` is drawn from each replica's own seeded RNG:
//! with a seed, each replica's sequence is reproducible on its own, not the
//! fleet's.

mod action;
mod body;
mod book;
mod error;
mod layer;
mod live;
mod matcher;
mod preset;
mod quota;
#[cfg(test)]
mod quota_contract;
mod raw;
mod redis;
mod rule;
mod rules;
mod spec;
mod value;
mod view;

pub use crate::lean::status_detail;
pub use action::{Action, Delay, ACTION_NAMES, DEFAULT_TIMEOUT, DEFAULT_WINDOW};
pub use error::RuleError;
pub use layer::{Fault, FaultLayer, ResponseFuture};
pub use matcher::{Match, PathGlob, RequestFacts};
pub use preset::{Preset, DEFAULT_GRANULAR_STATUS, GRANULAR_STATUS_CODES};
pub use raw::{RawMatch, RawRule};
pub use rule::{parse_rule, Rule};
pub use rules::{Applied, Edit, Edited, FaultRules, Placement};
pub use spec::{parse_spec, SPEC_HELP};
pub use value::MAX_DURATION;
pub use view::RuleView;
