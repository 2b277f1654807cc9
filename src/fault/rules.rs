//! The live rule set: a cheap-to-clone handle shared by the fault layer, the
//! admin API and the config loader.
//!
//! The rules are an immutable `Arc<Vec<_>>` swapped whole under a lock that is
//! held only to clone the `Arc` (evaluation) or to swap it (changes), never
//! across an `.await`. An evaluation therefore sees the set before a change or
//! the set after it, never a mix. Counters and quotas are kept by a
//! [`QuotaStore`] (today's: [`MemoryQuotas`], per-rule atomics, so `count` is
//! exact under any concurrency); randomness comes from one seeded RNG.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::action::{Action, Delay};
use super::book::{Added, Entry, RuleBook, Shared};
use super::error::RuleError;
use super::live::Live;
use super::matcher::RequestFacts;
use super::quota::{MemoryQuotas, QuotaStore, Sticky, Take};
use super::rule::Rule;
use super::view::{views, RuleView};
use crate::backend::Op;
use crate::state::Unavailable;
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

/// A new installation's name.
fn installation() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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

/// A change to the rule set, as the admin API makes it: on every replica
/// when they share a rule book (see [`FaultRules::edit`]).
#[derive(Debug, Clone)]
pub enum Edit {
    /// Adds a rule where the placement says.
    Add(Box<Rule>, Placement),
    /// Pauses (`true`) or resumes a rule.
    Pause(String, bool),
    /// Removes a rule.
    Remove(String),
    /// Removes every rule.
    Clear,
}

/// What an [`Edit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    /// Added; or whether the rule paused, resumed or removed was there.
    Done(bool),
    /// Removed this many rules.
    Cleared(usize),
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
    /// The rules' counters and quotas, the one-off rules' windows and the
    /// sticky reconnects.
    quotas: Arc<dyn QuotaStore>,
    /// Why no rule may be installed (the production guard), when none may.
    refusal: Option<String>,
    /// The rule set every replica shares, when there is one.
    book: Option<Arc<dyn RuleBook>>,
    /// The book's version `rules` was last loaded from.
    synced: AtomicU64,
    /// Held while `rules` is loaded from the book.
    loading: tokio::sync::Mutex<()>,
}

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
        Self::with_store(seed, refusal, MemoryQuotas::new())
    }

    /// [`FaultRules::guarded`], its counters and quotas kept by `quotas`.
    pub(crate) fn with_store(
        seed: Option<u64>,
        refusal: Option<String>,
        quotas: Arc<dyn QuotaStore>,
    ) -> Self {
        let rng = match seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_rng(&mut rand::rng()),
        };
        Self {
            inner: Arc::new(RuleSet {
                rules: RwLock::new(Arc::new(Vec::new())),
                rng: Mutex::new(rng),
                seed,
                quotas,
                refusal,
                book: None,
                synced: AtomicU64::new(0),
                loading: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// A rule set shared by every replica on `redis`: its rules (the book),
    /// counters, quotas and sticky reconnects. Change it with
    /// [`FaultRules::edit`]; run [`FaultRules::follow`] beside the server.
    pub fn on_redis(
        seed: Option<u64>,
        refusal: Option<String>,
        redis: crate::state::RedisState,
    ) -> Self {
        Self::with_book(
            seed,
            refusal,
            Arc::new(super::redis::RedisQuotas::new(redis.clone())),
            super::redis::RedisBook::new(redis),
        )
    }

    /// [`FaultRules::with_store`], its rules shared with every replica
    /// through `book`: change them with [`FaultRules::edit`], and run
    /// [`FaultRules::follow`] to load the others' changes.
    pub(crate) fn with_book(
        seed: Option<u64>,
        refusal: Option<String>,
        quotas: Arc<dyn QuotaStore>,
        book: Arc<dyn RuleBook>,
    ) -> Self {
        let mut rules = Self::with_store(seed, refusal, quotas);
        if let Some(set) = Arc::get_mut(&mut rules.inner) {
            set.book = Some(book);
        }
        rules
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

    /// `rule`, installed at `now` with fresh counters.
    fn live(&self, rule: Rule, now: Instant) -> Arc<Live> {
        self.installed(rule, installation(), (now, Utc::now()))
    }

    /// `rule` in `installation`, installed `at`, with its counters.
    fn installed(
        &self,
        rule: Rule,
        installation: String,
        at: (Instant, DateTime<Utc>),
    ) -> Arc<Live> {
        let quota = self.inner.quotas.rule(&rule.id, &installation, rule.count);
        Arc::new(Live::new(rule, installation, quota, at))
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
        let next: Vec<_> = rules.into_iter().map(|r| self.live(r, now)).collect();
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
        let live = self.live(rule, Instant::now());
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
    pub fn list(&self) -> Op<Vec<RuleView>> {
        views(self.snapshot().to_vec(), Instant::now())
    }

    /// The rule with this id, with its counters.
    pub fn get(&self, id: &str) -> Op<Option<RuleView>> {
        let found = self.snapshot().iter().find(|l| l.rule.id == id).cloned();
        match found {
            Some(live) => views(vec![live], Instant::now()).map(|mut v| v.pop()),
            None => Op::ready(None),
        }
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
    pub async fn evaluate(&self, facts: &RequestFacts<'_>) -> Option<Applied> {
        self.evaluate_at(facts, Instant::now()).await
    }

    /// [`FaultRules::evaluate`] at a given instant (for ttl and rate windows).
    pub async fn evaluate_at(&self, facts: &RequestFacts<'_>, now: Instant) -> Option<Applied> {
        for live in self.snapshot().iter() {
            if live.paused.load(Ordering::Acquire)
                || !(live.is_live(now) && live.rule.matcher.matches(facts))
            {
                continue;
            }
            match self.offer(live, now).await {
                Offer::Fault(applied) => return Some(applied),
                Offer::Through => return None,
                Offer::Declined => {}
            }
        }
        None
    }

    /// Offers a request that `live` matched to it.
    async fn offer(&self, live: &Live, now: Instant) -> Offer {
        let rule = &live.rule;
        if live.quota.count_match().await < rule.after {
            return Offer::Through;
        }
        let retry_after_secs = match rule.action {
            Action::RateLimit { limit, window } => {
                match live.quota.over_quota(limit, window, now).await {
                    Some(secs) => Some(secs),
                    None => return Offer::Through,
                }
            }
            _ => None,
        };
        // Both drawn under one lock, as one request's: the RNG's sequence
        // depends only on the order of evaluations.
        let delay = {
            let mut rng = self.rng_for(rule);
            if !super::rule::hit(rng.as_deref_mut(), rule.probability) {
                return Offer::Declined;
            }
            rule.action.sample_delay(rng.as_deref_mut())
        };
        if rule.count.is_some() {
            match live.quota.take().await {
                Take::Took => {}
                Take::Last => live.retired.store(true, Ordering::Release),
                // Another request took the last one.
                Take::Gone => return Offer::Declined,
            }
        }
        live.quota.count_applied().await;
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
    pub async fn evaluate_rule(
        &self,
        rule: &Rule,
        key: &str,
        facts: &RequestFacts<'_>,
    ) -> Option<Applied> {
        if !rule.matcher.matches(facts) {
            return None;
        }
        let retry_after_secs = match rule.action {
            Action::RateLimit { limit, window } => Some(
                self.inner
                    .quotas
                    .over_quota(key, limit, window, Instant::now())
                    .await?,
            ),
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

    /// Makes `edit`: with a rule book, in the book (every replica loads it
    /// within a second; this one before it returns), else here. Fails when
    /// the book cannot be reached (field `state`), and as
    /// [`add_at`](Self::add_at) does.
    pub async fn edit(&self, edit: Edit) -> Result<Edited, RuleError> {
        let Some(book) = self.inner.book.clone() else {
            return match edit {
                Edit::Add(rule, placement) => {
                    self.add_at(*rule, placement).map(|()| Edited::Done(true))
                }
                Edit::Pause(id, paused) => Ok(Edited::Done(self.set_paused(&id, paused))),
                Edit::Remove(id) => Ok(Edited::Done(self.remove(&id))),
                Edit::Clear => {
                    let n = self.len();
                    self.clear();
                    Ok(Edited::Cleared(n))
                }
            };
        };
        let unreachable = |e: Unavailable| {
            RuleError::new(
                "state",
                format!(
                    "the rule set shared on Redis cannot be changed now ({})",
                    e.detail
                ),
            )
        };
        let edited = match edit {
            Edit::Add(rule, placement) => {
                self.guard()?;
                let id = rule.id.clone();
                let before = match &placement {
                    Placement::Before(id) => id.clone(),
                    _ => String::new(),
                };
                let entry = Entry {
                    id: id.clone(),
                    installation: installation(),
                    installed_at: Utc::now(),
                    rule: rule.to_raw(),
                };
                match book.add(entry, placement).await.map_err(unreachable)? {
                    Added::Yes => Edited::Done(true),
                    Added::Taken => {
                        return Err(RuleError::new("id", format!("`{id}` is already installed")))
                    }
                    Added::NoSuchRule => {
                        return Err(RuleError::new(
                            "before",
                            format!("no fault rule `{before}`"),
                        ))
                    }
                }
            }
            Edit::Pause(id, paused) => {
                Edited::Done(book.pause(&id, paused).await.map_err(unreachable)?)
            }
            Edit::Remove(id) => Edited::Done(book.remove(&id).await.map_err(unreachable)?),
            Edit::Clear => Edited::Cleared(
                book.replace(Vec::new(), false)
                    .await
                    .map_err(unreachable)?
                    .unwrap_or(0),
            ),
        };
        // This replica answers with its change made.
        let _ = self.load().await;
        Ok(edited)
    }

    /// Loads the rule book into this replica's rule set, keeping the rules it
    /// has (and their counters); with no book yet, starts it with this
    /// replica's rules (its config's). Nothing without a book.
    pub(crate) async fn load(&self) -> Result<(), Unavailable> {
        let Some(book) = self.inner.book.clone() else {
            return Ok(());
        };
        let _one = self.inner.loading.lock().await;
        let shared = match book.load().await? {
            Some(shared) => shared,
            None => {
                book.replace(self.entries(), true).await?;
                book.load().await?.unwrap_or_default()
            }
        };
        self.adopt(shared);
        Ok(())
    }

    /// This replica's rules as the book keeps them.
    fn entries(&self) -> Vec<Entry> {
        self.snapshot()
            .iter()
            .map(|l| Entry {
                id: l.rule.id.clone(),
                installation: l.installation.clone(),
                installed_at: l.installed_wall,
                rule: l.rule.to_raw(),
            })
            .collect()
    }

    /// Makes `shared` this replica's rule set.
    fn adopt(&self, shared: Shared) {
        let (now, wall) = (Instant::now(), Utc::now());
        let version = shared.version;
        let _ = self.change(|current| {
            let next = shared
                .entries
                .into_iter()
                .filter_map(|(entry, paused)| {
                    let live = match current.iter().find(|l| l.installation == entry.installation) {
                        Some(live) => live.clone(),
                        None => {
                            let rule = Rule::from_raw(entry.rule)
                                .map_err(|e| tracing::warn!(target: "leanproxy::fault", error = %e, "a shared fault rule is not valid here; skipped"))
                                .ok()?;
                            let age = (wall - entry.installed_at).to_std().unwrap_or_default();
                            let at = now.checked_sub(age).unwrap_or(now);
                            self.installed(rule, entry.installation, (at, entry.installed_at))
                        }
                    };
                    live.paused.store(paused, Ordering::Release);
                    Some(live)
                })
                .collect();
            Ok((next, ()))
        });
        self.inner.synced.store(version, Ordering::SeqCst);
    }

    /// Loads the rule book whenever a replica changes it (told by Redis, or
    /// seen within a second), and keeps the sticky reconnects' hint current,
    /// until `stop` completes. Returns at once without a book.
    pub async fn follow(self, stop: impl std::future::Future<Output = ()>) {
        let Some(book) = self.inner.book.clone() else {
            return;
        };
        tokio::pin!(stop);
        let mut notices = book.changes();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let notice = tokio::select! {
                () = &mut stop => return,
                notice = notices.next() => notice,
                _ = tick.tick() => None,
            };
            if notice.as_deref() == Some("sticky") || notice.is_none() {
                self.inner.quotas.refresh().await;
            }
            if notice.as_deref() == Some("sticky") {
                continue;
            }
            let known = self.inner.synced.load(Ordering::SeqCst);
            match book.version().await {
                Ok(Some(v)) if v == known => {}
                Ok(_) => {
                    let _ = self.load().await;
                }
                Err(_) => {}
            }
        }
    }

    /// Holds `entity` in a sticky synthetic reconnect.
    pub(crate) fn hold_sticky(&self, entity: &str, sticky: Sticky) -> Op<()> {
        self.inner.quotas.hold(entity, sticky)
    }

    /// The sticky reconnect `entity` is held in.
    pub(crate) fn sticky(&self, entity: &str) -> Op<Option<Sticky>> {
        self.inner.quotas.held(entity)
    }

    /// Lets `entity` go.
    pub(crate) fn release_sticky(&self, entity: &str) -> Op<()> {
        self.inner.quotas.release(entity)
    }

    /// Whether any entity may be held in a sticky reconnect (from memory).
    pub(crate) fn holds_sticky(&self) -> bool {
        self.inner.quotas.holds_any()
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
#[path = "rules_tests.rs"]
mod tests;
