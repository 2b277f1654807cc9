//! The live rule set: a cheap-to-clone handle shared by the fault layer, the
//! admin API and the config loader.
//!
//! The rules are an immutable `Arc<Vec<_>>` swapped whole under a lock that is
//! held only to clone the `Arc` (evaluation) or to swap it (changes), never
//! across an `.await`. An evaluation therefore sees the set before a change or
//! the set after it, never a mix. Counters are per-rule atomics, so `count` is
//! exact under any concurrency; randomness comes from one seeded RNG.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::action::{Action, Delay};
use super::error::RuleError;
use super::live::{Live, Window};
use super::matcher::RequestFacts;
use super::raw::RawRule;
use super::rule::Rule;
use crate::sync::lock;

/// A fault to apply to one request, with its random values already drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The rule that produced it (for `x-leanproxy-injected`).
    pub rule_id: String,
    /// What to do.
    pub action: Action,
    /// For [`Action::Delay`]: how long to wait, drawn from the rule's
    /// distribution.
    pub delay: Option<Duration>,
    /// For [`Action::RateLimit`]: the `Retry-After` value, whole seconds until
    /// the window ends (at least 1).
    pub retry_after_secs: Option<u64>,
}

/// What a matching rule does with the request offered to it.
enum Offer {
    /// It faults the request.
    Fault(Applied),
    /// It lets the request through to the upstream (`after`, `rate_limit`
    /// within quota); later rules do not see it.
    Through,
    /// It declines (`probability`, or its last `count` was taken): the next
    /// rule is offered the request.
    Declined,
}

/// A rule as listed by the admin API and the CLI: the written rule and its
/// counters. It reads back from what it writes (the CLI's admin client).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleView {
    /// The rule, in the shape it is written in.
    #[serde(flatten)]
    pub rule: RawRule,
    /// Requests that matched while it was live (including those let through by
    /// `after`, `probability` or the rate limit's quota).
    pub matched: u64,
    /// Requests it faulted.
    pub applied: u64,
    /// Applications left, when it has a `count`.
    pub remaining: Option<u64>,
    /// When it was installed.
    pub installed_at: DateTime<Utc>,
    /// When its `ttl` ends.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether its `count` is used up or its `ttl` has passed.
    pub retired: bool,
    /// Whether it is paused (kept, offered no request).
    pub paused: bool,
}

/// `live` as listed at `now`.
fn view(live: &Live, now: Instant) -> RuleView {
    RuleView {
        rule: live.rule.to_raw(),
        matched: live.matched.load(Ordering::Relaxed),
        applied: live.applied.load(Ordering::Relaxed),
        remaining: live.remaining.as_ref().map(|r| r.load(Ordering::Relaxed)),
        installed_at: live.installed_wall,
        expires_at: live
            .rule
            .ttl
            .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
            .map(|ttl| live.installed_wall + ttl),
        retired: !live.is_live(now),
        paused: live.paused.load(Ordering::Relaxed),
    }
}

impl<'de> Deserialize<'de> for RuleView {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The rule's keys are flattened beside the counters, and the rule
        // refuses unknown keys: the counters are taken out first.
        #[derive(Deserialize)]
        struct Counters {
            matched: u64,
            applied: u64,
            remaining: Option<u64>,
            installed_at: DateTime<Utc>,
            expires_at: Option<DateTime<Utc>>,
            retired: bool,
            #[serde(default)]
            paused: bool,
        }
        const COUNTERS: [&str; 7] = [
            "matched",
            "applied",
            "remaining",
            "installed_at",
            "expires_at",
            "retired",
            "paused",
        ];
        use serde::de::Error;
        let mut rule = serde_json::Map::deserialize(d)?;
        let counters: serde_json::Map<String, serde_json::Value> = COUNTERS
            .iter()
            .filter_map(|k| rule.remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        let c: Counters = serde_json::from_value(serde_json::Value::Object(counters))
            .map_err(D::Error::custom)?;
        let rule: RawRule =
            serde_json::from_value(serde_json::Value::Object(rule)).map_err(D::Error::custom)?;
        Ok(RuleView {
            rule,
            matched: c.matched,
            applied: c.applied,
            remaining: c.remaining,
            installed_at: c.installed_at,
            expires_at: c.expires_at,
            retired: c.retired,
            paused: c.paused,
        })
    }
}

/// Where [`FaultRules::add_at`] puts a new rule in the evaluation order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Placement {
    /// After every installed rule.
    #[default]
    Last,
    /// At this index (0: first); past the end means last.
    Position(usize),
    /// Just before the rule with this id.
    Before(String),
}

/// Handle on the live rule set. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FaultRules {
    inner: Arc<RuleSet>,
}

#[derive(Debug)]
struct RuleSet {
    rules: RwLock<Arc<Vec<Arc<Live>>>>,
    rng: Mutex<ChaCha8Rng>,
    seed: Option<u64>,
    /// `rate_limit` windows of `x-leanproxy-fault` headers, by header text.
    header_windows: Mutex<HashMap<String, (Window, Duration)>>,
    /// Why no rule may be installed (the production guard), when none may.
    refusal: Option<String>,
}

/// How many distinct `rate_limit` header texts keep a window.
const MAX_HEADER_WINDOWS: usize = 1024;

fn unique<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<(), RuleError> {
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(RuleError::new(
                "id",
                format!("`{id}` is used by more than one rule"),
            ));
        }
    }
    Ok(())
}

impl FaultRules {
    /// An empty rule set. With a seed, every probabilistic decision and sampled
    /// delay is reproducible: the same seed and the same sequence of
    /// evaluations give the same faults.
    pub fn new(seed: Option<u64>) -> Self {
        Self::guarded(seed, None)
    }

    /// An empty rule set that refuses every rule with `refusal` when given:
    /// the production guard (faults against Lean's production hosts).
    pub fn guarded(seed: Option<u64>, refusal: Option<String>) -> Self {
        let rng = match seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_rng(&mut rand::rng()),
        };
        Self {
            inner: Arc::new(RuleSet {
                rules: RwLock::new(Arc::new(Vec::new())),
                rng: Mutex::new(rng),
                seed,
                header_windows: Mutex::new(HashMap::new()),
                refusal,
            }),
        }
    }

    /// Why no rule may be installed, when none may.
    pub fn refusal(&self) -> Option<&str> {
        self.inner.refusal.as_deref()
    }

    fn guard(&self) -> Result<(), RuleError> {
        match &self.inner.refusal {
            Some(why) => Err(RuleError::new(
                "fault.allow_faults_in_production",
                why.clone(),
            )),
            None => Ok(()),
        }
    }

    /// The seed, when one was given.
    pub fn seed(&self) -> Option<u64> {
        self.inner.seed
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Live>>> {
        let guard = self
            .inner
            .rules
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&guard)
    }

    fn change<T>(
        &self,
        f: impl FnOnce(&Vec<Arc<Live>>) -> Result<(Vec<Arc<Live>>, T), RuleError>,
    ) -> Result<T, RuleError> {
        let mut guard = self
            .inner
            .rules
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let (next, out) = f(&guard)?;
        *guard = Arc::new(next);
        Ok(out)
    }

    /// Replaces every rule, with fresh counters. Refused, changing nothing, when
    /// two rules share an id.
    pub fn install(&self, rules: Vec<Rule>) -> Result<(), RuleError> {
        if !rules.is_empty() {
            self.guard()?;
        }
        unique(rules.iter().map(|r| r.id.as_str()))?;
        let now = Instant::now();
        let next: Vec<_> = rules
            .into_iter()
            .map(|r| Arc::new(Live::new(r, now)))
            .collect();
        self.change(|_| Ok((next, ())))
    }

    /// Appends a rule (evaluated after the others). Refused when its id is
    /// already installed, retired rules included.
    pub fn add(&self, rule: Rule) -> Result<(), RuleError> {
        self.add_at(rule, Placement::Last)
    }

    /// Adds a rule where `placement` says. Refused when its id is already
    /// installed, retired rules included, or when `before` names no rule.
    pub fn add_at(&self, rule: Rule, placement: Placement) -> Result<(), RuleError> {
        self.guard()?;
        let live = Arc::new(Live::new(rule, Instant::now()));
        self.change(|current| {
            if current.iter().any(|l| l.rule.id == live.rule.id) {
                return Err(RuleError::new(
                    "id",
                    format!("`{}` is already installed", live.rule.id),
                ));
            }
            let at = match &placement {
                Placement::Last => current.len(),
                Placement::Position(n) => (*n).min(current.len()),
                Placement::Before(id) => current
                    .iter()
                    .position(|l| l.rule.id == *id)
                    .ok_or_else(|| RuleError::new("before", format!("no fault rule `{id}`")))?,
            };
            let mut next = current.clone();
            next.insert(at, live);
            Ok((next, ()))
        })
    }

    /// Pauses (`true`) or resumes the rule with this id, keeping its counters.
    /// Whether there was one.
    pub fn set_paused(&self, id: &str, paused: bool) -> bool {
        self.snapshot()
            .iter()
            .find(|l| l.rule.id == id)
            .map(|l| l.paused.store(paused, Ordering::Release))
            .is_some()
    }

    /// Removes the rule with this id. Whether there was one.
    pub fn remove(&self, id: &str) -> bool {
        self.change(|current| {
            let next: Vec<_> = current
                .iter()
                .filter(|l| l.rule.id != id)
                .cloned()
                .collect();
            let removed = next.len() != current.len();
            Ok((next, removed))
        })
        .unwrap_or(false)
    }

    /// Removes every rule.
    pub fn clear(&self) {
        let _ = self.change(|_| Ok((Vec::new(), ())));
    }

    /// Number of installed rules, retired ones included.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether no rule is installed.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// Every installed rule with its counters, in evaluation order.
    pub fn list(&self) -> Vec<RuleView> {
        let now = Instant::now();
        self.snapshot().iter().map(|l| view(l, now)).collect()
    }

    /// The rule with this id, with its counters.
    pub fn get(&self, id: &str) -> Option<RuleView> {
        let now = Instant::now();
        self.snapshot()
            .iter()
            .find(|l| l.rule.id == id)
            .map(|l| view(l, now))
    }

    /// The fault for this request, if any. Live rules (not paused, not
    /// retired, ttl not passed) whose match holds are offered the request in
    /// order:
    /// - while a rule's first `after` matches pass, or (`rate_limit`) while
    ///   the request is within quota, the rule lets the request through to the
    ///   upstream, and later rules do not see it;
    /// - when its `probability` roll says no, or another request took its last
    ///   `count`, the rule declines and the request goes on to the next rule.
    ///
    /// A hit uses up one of `count`, and the rule retires when none is left.
    pub fn evaluate(&self, facts: &RequestFacts<'_>) -> Option<Applied> {
        self.evaluate_at(facts, Instant::now())
    }

    /// [`FaultRules::evaluate`] at a given instant (for ttl and rate windows).
    pub fn evaluate_at(&self, facts: &RequestFacts<'_>, now: Instant) -> Option<Applied> {
        for live in self.snapshot().iter() {
            if live.paused.load(Ordering::Acquire)
                || !(live.is_live(now) && live.rule.matcher.matches(facts))
            {
                continue;
            }
            match self.offer(live, now) {
                Offer::Fault(applied) => return Some(applied),
                Offer::Through => return None,
                Offer::Declined => {}
            }
        }
        None
    }

    /// Offers a request that `live` matched to it.
    fn offer(&self, live: &Live, now: Instant) -> Offer {
        let rule = &live.rule;
        if live.matched.fetch_add(1, Ordering::Relaxed) < rule.after {
            return Offer::Through;
        }
        let retry_after_secs = match rule.action {
            Action::RateLimit { limit, window } => match live.over_quota(limit, window, now) {
                Some(secs) => Some(secs),
                None => return Offer::Through,
            },
            _ => None,
        };
        let delay = {
            let mut rng = self.rng_for(rule);
            if !super::rule::hit(rng.as_deref_mut(), rule.probability) {
                return Offer::Declined;
            }
            if let Some(remaining) = &live.remaining {
                match remaining
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
                {
                    Ok(1) => live.retired.store(true, Ordering::Release),
                    Ok(_) => {}
                    // Another request took the last one.
                    Err(_) => return Offer::Declined,
                }
            }
            rule.action.sample_delay(rng.as_deref_mut())
        };
        live.applied.fetch_add(1, Ordering::Relaxed);
        Offer::Fault(Applied {
            rule_id: rule.id.clone(),
            action: rule.action.clone(),
            delay,
            retry_after_secs,
        })
    }

    /// The fault a one-off rule (from the `x-leanproxy-fault` header) gives this
    /// request: its match and `probability` (drawn from the same RNG) apply;
    /// `count`, `ttl` and `after` do not, as no counters are kept. A
    /// `rate_limit` one-off counts requests per header text (`key`): with
    /// `rate_limit=5/1m`, the first 5 requests of a minute that carry that
    /// header pass and the next ones get 429, as with a rule.
    pub fn evaluate_rule(
        &self,
        rule: &Rule,
        key: &str,
        facts: &RequestFacts<'_>,
    ) -> Option<Applied> {
        if !rule.matcher.matches(facts) {
            return None;
        }
        let retry_after_secs = match rule.action {
            Action::RateLimit { limit, window } => {
                Some(self.header_over_quota(key, limit, window, Instant::now())?)
            }
            _ => None,
        };
        let delay = {
            let mut rng = self.rng_for(rule);
            if !super::rule::hit(rng.as_deref_mut(), rule.probability) {
                return None;
            }
            rule.action.sample_delay(rng.as_deref_mut())
        };
        Some(Applied {
            rule_id: rule.id.clone(),
            action: rule.action.clone(),
            delay,
            retry_after_secs,
        })
    }

    /// Counts a request against the window of the header text `key`.
    fn header_over_quota(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        now: Instant,
    ) -> Option<u64> {
        let mut windows = lock(&self.inner.header_windows);
        if !windows.contains_key(key) && windows.len() >= MAX_HEADER_WINDOWS {
            // Bounded: ended windows go first; if none has, the oldest.
            windows.retain(|_, (w, length)| !w.ended(*length, now));
            if windows.len() >= MAX_HEADER_WINDOWS {
                windows.clear();
            }
        }
        let (w, length) = windows
            .entry(key.to_string())
            .or_insert_with(|| (Window::default(), window));
        *length = window;
        w.over_quota(limit, window, now)
    }

    /// The RNG, locked, when this rule draws from it.
    fn rng_for(&self, rule: &Rule) -> Option<MutexGuard<'_, ChaCha8Rng>> {
        let draws = rule.probability < 1.0
            || matches!(
                rule.action,
                Action::Delay(Delay::Uniform { .. } | Delay::Normal { .. })
            );
        draws.then(|| lock(&self.inner.rng))
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, Method};

    use super::*;
    use crate::fault::parse_spec;

    fn facts<'a>(method: &'a Method, path: &'a str, headers: &'a HeaderMap) -> RequestFacts<'a> {
        RequestFacts {
            method,
            path,
            query: None,
            headers,
            entity_id: None,
        }
    }

    /// Evaluates `n` GETs of `path` at `now`; the rule id of each fault.
    fn run(rules: &FaultRules, path: &str, n: usize, now: Instant) -> Vec<Option<String>> {
        let headers = HeaderMap::new();
        (0..n)
            .map(|_| {
                rules
                    .evaluate_at(&facts(&Method::GET, path, &headers), now)
                    .map(|a| a.rule_id)
            })
            .collect()
    }

    fn rules(specs: &[&str]) -> FaultRules {
        let rules = FaultRules::new(Some(7));
        let parsed = specs.iter().map(|s| parse_spec(s).unwrap()).collect();
        rules.install(parsed).unwrap();
        rules
    }

    #[test]
    fn succeed_twice_then_fail_three_times_then_succeed() {
        let rules = rules(&["status=503 id=f after=2 count=3"]);
        let seen = run(&rules, "/x", 6, Instant::now());
        let f = Some("f".to_owned());
        assert_eq!(seen, [None, None, f.clone(), f.clone(), f, None]);
        let view = rules.get("f").unwrap();
        assert_eq!((view.matched, view.applied), (5, 3));
        assert_eq!(view.remaining, Some(0));
        assert!(view.retired);
    }

    #[test]
    fn first_matching_rule_decides_and_retired_rules_fall_through() {
        let rules = rules(&[
            "reset id=a path=/a/* count=1",
            "corrupt id=b path=/a/* after=5",
            "pending id=c",
        ]);
        let now = Instant::now();
        assert_eq!(run(&rules, "/a/1", 1, now), [Some("a".to_owned())]);
        // `a` is retired; `b` matches and lets its first 5 through, `c` never sees them.
        assert_eq!(run(&rules, "/a/1", 2, now), [None, None]);
        assert_eq!(run(&rules, "/other", 1, now), [Some("c".to_owned())]);
        assert_eq!(rules.get("c").unwrap().matched, 1);
    }

    #[test]
    fn ttl_retires_the_rule_after_its_duration() {
        let start = Instant::now();
        let rules = rules(&["reset id=t ttl=5m"]);
        let just_before = start + Duration::from_secs(299);
        assert_eq!(run(&rules, "/x", 1, just_before), [Some("t".to_owned())]);
        let after = Instant::now() + Duration::from_secs(300);
        assert_eq!(run(&rules, "/x", 1, after), [None]);
        let view = rules.get("t").unwrap();
        let ttl = view.expires_at.unwrap() - view.installed_at;
        assert_eq!(ttl, chrono::Duration::minutes(5));
    }

    #[test]
    fn rate_limit_answers_over_quota_until_the_window_ends() {
        let rules = rules(&["rate_limit=2/10s id=q"]);
        let headers = HeaderMap::new();
        let t0 = Instant::now();
        let at = |t: Instant| rules.evaluate_at(&facts(&Method::GET, "/x", &headers), t);
        assert_eq!(at(t0), None);
        assert_eq!(at(t0 + Duration::from_secs(1)), None);
        let third = at(t0 + Duration::from_millis(2500)).unwrap();
        assert_eq!(third.rule_id, "q");
        assert_eq!(third.retry_after_secs, Some(8), "7.5 s left, rounded up");
        let last = at(t0 + Duration::from_millis(9999)).unwrap();
        assert_eq!(last.retry_after_secs, Some(1));
        // A new window starts with the next request after 10 s.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(at(t1), None);
        assert_eq!(at(t1), None);
        assert!(at(t1).is_some());
        let view = rules.get("q").unwrap();
        assert_eq!((view.matched, view.applied), (7, 3));
    }

    #[test]
    fn seeded_probability_is_close_to_expected_and_reproducible() {
        let sequence = |seed| {
            let rules = FaultRules::new(Some(seed));
            rules
                .install(vec![parse_spec("reset id=p p=0.3").unwrap()])
                .unwrap();
            run(&rules, "/x", 10_000, Instant::now())
        };
        let first = sequence(42);
        let faults = first.iter().filter(|a| a.is_some()).count() as f64;
        let sigma = (10_000.0_f64 * 0.3 * 0.7).sqrt();
        assert!((faults - 3000.0).abs() <= 3.0 * sigma, "{faults} faults");
        assert_eq!(first, sequence(42));
        assert_ne!(first, sequence(43));
    }

    #[test]
    fn sampled_delays_stay_in_range_and_repeat_with_the_seed() {
        let draw = |spec: &str| {
            let rules = FaultRules::new(Some(1));
            rules.install(vec![parse_spec(spec).unwrap()]).unwrap();
            let headers = HeaderMap::new();
            (0..2000)
                .map(|_| {
                    let applied = rules.evaluate(&facts(&Method::GET, "/x", &headers));
                    applied.and_then(|a| a.delay).unwrap()
                })
                .collect::<Vec<_>>()
        };
        assert!(draw("delay=200ms")
            .iter()
            .all(|d| *d == Duration::from_millis(200)));
        let uniform = draw("delay=100ms..300ms");
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(300));
        assert!(uniform.iter().all(|d| (min..=max).contains(d)));
        assert_eq!(uniform, draw("delay=100ms..300ms"));
        let normal = draw("delay=100ms~50ms");
        assert!(normal.iter().all(|d| *d <= Duration::from_millis(300)));
        assert!(normal.iter().any(|d| d.is_zero()), "clamped at 0");
        let mean = normal.iter().sum::<Duration>() / 2000;
        assert!(mean > Duration::from_millis(95) && mean < Duration::from_millis(110));
    }

    #[test]
    fn install_with_a_duplicate_id_changes_nothing() {
        let rules = rules(&["reset id=keep"]);
        let dup = vec![
            parse_spec("pending id=x").unwrap(),
            parse_spec("corrupt id=x").unwrap(),
        ];
        let err = rules.install(dup).unwrap_err();
        assert_eq!(err.field, "id");
        let ids: Vec<_> = rules.list().into_iter().map(|v| v.rule.id).collect();
        assert_eq!(ids, [Some(serde_json::json!("keep"))]);
    }

    #[test]
    fn add_remove_and_clear() {
        let rules = rules(&["reset id=a"]);
        assert_eq!(
            rules
                .add(parse_spec("pending id=a").unwrap())
                .unwrap_err()
                .field,
            "id"
        );
        rules.add(parse_spec("pending id=b").unwrap()).unwrap();
        assert_eq!(rules.len(), 2);
        assert!(rules.remove("a"));
        assert!(!rules.remove("a"));
        assert_eq!(run(&rules, "/x", 1, Instant::now()), [Some("b".to_owned())]);
        rules.clear();
        assert!(rules.is_empty());
        assert_eq!(run(&rules, "/x", 1, Instant::now()), [None]);
    }

    #[test]
    fn a_declined_roll_falls_through_to_the_next_rule() {
        let rules = rules(&["reset id=never p=0", "pending id=next"]);
        assert_eq!(
            run(&rules, "/x", 3, Instant::now()),
            vec![Some("next".to_owned()); 3]
        );
        let never = rules.get("never").unwrap();
        assert_eq!((never.matched, never.applied), (3, 0));
    }

    #[test]
    fn rules_are_placed_first_at_a_position_or_before_another() {
        let rules = rules(&["reset id=a", "reset id=b"]);
        rules
            .add_at(
                parse_spec("reset id=c").unwrap(),
                Placement::Before("b".into()),
            )
            .unwrap();
        rules
            .add_at(parse_spec("reset id=d").unwrap(), Placement::Position(0))
            .unwrap();
        rules
            .add_at(parse_spec("reset id=e").unwrap(), Placement::Position(99))
            .unwrap();
        let ids: Vec<_> = rules.list().into_iter().map(|v| v.rule.id).collect();
        let want: Vec<_> = ["d", "a", "c", "b", "e"]
            .iter()
            .map(|id| Some(serde_json::json!(id)))
            .collect();
        assert_eq!(ids, want);
        let err = rules
            .add_at(
                parse_spec("reset id=f").unwrap(),
                Placement::Before("zz".into()),
            )
            .unwrap_err();
        assert_eq!(err.field, "before");
        assert_eq!(rules.len(), 5, "a refused rule is not added");
    }

    #[test]
    fn a_paused_rule_keeps_its_counters_and_is_offered_nothing() {
        let rules = rules(&["reset id=a count=5", "pending id=b"]);
        let now = Instant::now();
        assert_eq!(run(&rules, "/x", 1, now), [Some("a".to_owned())]);
        assert!(rules.set_paused("a", true));
        assert_eq!(run(&rules, "/x", 1, now), [Some("b".to_owned())]);
        let a = rules.get("a").unwrap();
        assert!(a.paused);
        assert_eq!((a.applied, a.remaining), (1, Some(4)));
        assert!(rules.set_paused("a", false));
        assert_eq!(run(&rules, "/x", 1, now), [Some("a".to_owned())]);
        assert!(!rules.set_paused("zz", true));
    }

    #[test]
    fn add_keeps_the_counters_of_installed_rules() {
        let rules = rules(&["reset id=a count=2"]);
        run(&rules, "/x", 1, Instant::now());
        rules.add(parse_spec("pending id=b").unwrap()).unwrap();
        assert_eq!(rules.get("a").unwrap().remaining, Some(1));
    }

    #[test]
    fn one_off_rules_match_and_draw_but_keep_no_counters() {
        let rules = FaultRules::new(Some(3));
        let rule = parse_spec("reset path=/data/* count=1").unwrap();
        let headers = HeaderMap::new();
        let get = |path| rules.evaluate_rule(&rule, "k", &facts(&Method::GET, path, &headers));
        assert_eq!(get("/other"), None);
        assert!(get("/data/v2/accounts").is_some());
        assert!(get("/data/v2/accounts").is_some(), "count is not kept");
        let never = parse_spec("reset p=0").unwrap();
        assert_eq!(
            rules.evaluate_rule(&never, "n", &facts(&Method::GET, "/x", &headers)),
            None
        );
    }

    #[test]
    fn a_rate_limit_header_lets_its_quota_through_first() {
        let rules = FaultRules::new(Some(3));
        let spec = "rate_limit=2/90s";
        let rule = parse_spec(spec).unwrap();
        let headers = HeaderMap::new();
        let get = || rules.evaluate_rule(&rule, spec, &facts(&Method::GET, "/x", &headers));
        assert_eq!(get(), None);
        assert_eq!(get(), None);
        let third = get().unwrap();
        assert!(matches!(third.retry_after_secs, Some(89 | 90)), "{third:?}");
        // Another header text has its own window.
        let other = parse_spec("rate_limit=2/1m").unwrap();
        assert_eq!(
            rules.evaluate_rule(
                &other,
                "rate_limit=2/1m",
                &facts(&Method::GET, "/x", &headers)
            ),
            None
        );
    }

    #[test]
    fn concurrent_evaluations_apply_count_exactly_and_never_a_mixed_set() {
        let rules = rules(&["reset id=c count=100"]);
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let rules = rules.clone();
                std::thread::spawn(move || {
                    let headers = HeaderMap::new();
                    (0..1000)
                        .filter_map(|_| rules.evaluate(&facts(&Method::GET, "/x", &headers)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let applied: Vec<_> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        assert_eq!(applied.len(), 100);

        // Swapping between two sets under load: every fault comes from one
        // whole set (a → reset, b → pending), never a rule with the other's action.
        let set = |id: &str, action: &str| vec![parse_spec(&format!("{action} id={id}")).unwrap()];
        let swapper = {
            let rules = rules.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    let (id, action) = if i % 2 == 0 {
                        ("a", "reset")
                    } else {
                        ("b", "pending")
                    };
                    rules.install(set(id, action)).unwrap();
                }
            })
        };
        let headers = HeaderMap::new();
        for _ in 0..5000 {
            if let Some(a) = rules.evaluate(&facts(&Method::GET, "/x", &headers)) {
                match a.rule_id.as_str() {
                    "a" => assert_eq!(a.action, Action::Reset),
                    "b" => assert_eq!(a.action, Action::Pending),
                    other => assert_eq!(other, "c"),
                }
            }
        }
        swapper.join().unwrap();
    }

    #[test]
    fn a_listed_rule_reads_back_as_written() {
        let rules = rules(&["lean_error=UNKNOWN_ENTITY id=l count=2 p=0.5 path=/data/*"]);
        rules.set_paused("l", true);
        let view = rules.get("l").unwrap();
        let back: RuleView = serde_json::from_str(&serde_json::to_string(&view).unwrap()).unwrap();
        assert_eq!(back, view);
    }

    #[test]
    fn listing_serializes_the_rule_with_its_counters() {
        let rules = rules(&["lean_error=UNKNOWN_ENTITY id=l count=2 p=0.5"]);
        let v = serde_json::to_value(rules.list()).unwrap();
        let entry = &v[0];
        assert_eq!(entry["id"], "l");
        assert_eq!(entry["action"], "lean_error");
        assert_eq!(entry["lean_error"], "UNKNOWN_ENTITY");
        assert_eq!(entry["count"], 2);
        assert_eq!(entry["remaining"], 2);
        assert_eq!(entry["matched"], 0);
        assert_eq!(entry["retired"], false);
        assert!(entry["expires_at"].is_null());
        assert!(entry["installed_at"].is_string());
    }
}
