//! Tests of the live rule set.

use http::{HeaderMap, Method};

use super::*;
use crate::backend::AtOnce;
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
                .at_once()
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
    let view = rules.get("f").at_once().unwrap();
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
    assert_eq!(rules.get("c").at_once().unwrap().matched, 1);
}

#[test]
fn ttl_retires_the_rule_after_its_duration() {
    let start = Instant::now();
    let rules = rules(&["reset id=t ttl=5m"]);
    let just_before = start + Duration::from_secs(299);
    assert_eq!(run(&rules, "/x", 1, just_before), [Some("t".to_owned())]);
    let after = Instant::now() + Duration::from_secs(300);
    assert_eq!(run(&rules, "/x", 1, after), [None]);
    let view = rules.get("t").at_once().unwrap();
    let ttl = view.expires_at.unwrap() - view.installed_at;
    assert_eq!(ttl, chrono::Duration::minutes(5));
}

#[test]
fn rate_limit_answers_over_quota_until_the_window_ends() {
    let rules = rules(&["rate_limit=2/10s id=q"]);
    let headers = HeaderMap::new();
    let t0 = Instant::now();
    let at = |t: Instant| {
        rules
            .evaluate_at(&facts(&Method::GET, "/x", &headers), t)
            .at_once()
    };
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
    let view = rules.get("q").at_once().unwrap();
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
                let applied = rules
                    .evaluate(&facts(&Method::GET, "/x", &headers))
                    .at_once();
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
    let ids: Vec<_> = rules
        .list()
        .at_once()
        .into_iter()
        .map(|v| v.rule.id)
        .collect();
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
    let never = rules.get("never").at_once().unwrap();
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
    let ids: Vec<_> = rules
        .list()
        .at_once()
        .into_iter()
        .map(|v| v.rule.id)
        .collect();
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
    let a = rules.get("a").at_once().unwrap();
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
    assert_eq!(rules.get("a").at_once().unwrap().remaining, Some(1));
}

#[test]
fn one_off_rules_match_and_draw_but_keep_no_counters() {
    let rules = FaultRules::new(Some(3));
    let rule = parse_spec("reset path=/data/* count=1").unwrap();
    let headers = HeaderMap::new();
    let get = |path| {
        rules
            .evaluate_rule(&rule, "k", &facts(&Method::GET, path, &headers))
            .at_once()
    };
    assert_eq!(get("/other"), None);
    assert!(get("/data/v2/accounts").is_some());
    assert!(get("/data/v2/accounts").is_some(), "count is not kept");
    let never = parse_spec("reset p=0").unwrap();
    assert_eq!(
        rules
            .evaluate_rule(&never, "n", &facts(&Method::GET, "/x", &headers))
            .at_once(),
        None
    );
}

#[test]
fn a_rate_limit_header_lets_its_quota_through_first() {
    let rules = FaultRules::new(Some(3));
    let spec = "rate_limit=2/90s";
    let rule = parse_spec(spec).unwrap();
    let headers = HeaderMap::new();
    let get = || {
        rules
            .evaluate_rule(&rule, spec, &facts(&Method::GET, "/x", &headers))
            .at_once()
    };
    assert_eq!(get(), None);
    assert_eq!(get(), None);
    let third = get().unwrap();
    assert!(matches!(third.retry_after_secs, Some(89 | 90)), "{third:?}");
    // Another header text has its own window.
    let other = parse_spec("rate_limit=2/1m").unwrap();
    assert_eq!(
        rules
            .evaluate_rule(
                &other,
                "rate_limit=2/1m",
                &facts(&Method::GET, "/x", &headers)
            )
            .at_once(),
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
                    .filter_map(|_| {
                        rules
                            .evaluate(&facts(&Method::GET, "/x", &headers))
                            .at_once()
                    })
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
        if let Some(a) = rules
            .evaluate(&facts(&Method::GET, "/x", &headers))
            .at_once()
        {
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
    let view = rules.get("l").at_once().unwrap();
    let back: RuleView = serde_json::from_str(&serde_json::to_string(&view).unwrap()).unwrap();
    assert_eq!(back, view);
}

#[test]
fn listing_serializes_the_rule_with_its_counters() {
    let rules = rules(&["lean_error=UNKNOWN_ENTITY id=l count=2 p=0.5"]);
    let v = serde_json::to_value(rules.list().at_once()).unwrap();
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
