use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn validate(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_raw(parse(text)?, &no_env)
}

fn field_errors(text: &str) -> Vec<FieldError> {
    match validate(text) {
        Err(ConfigError::Invalid(errors)) => errors,
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[test]
fn empty_file_gives_loopback_defaults() {
    let s = validate("").unwrap();
    assert_eq!(s.proxy.listen.to_string(), "127.0.0.1:7070");
    assert_eq!(s.admin.listen.to_string(), "127.0.0.1:7071");
    assert_eq!(s.proxy.connect_timeout, Duration::from_secs(5));
    assert!(s.proxy.upstream.is_none());
    assert_eq!(s.auth.app_token_policy, TokenPolicy::Override);
}

#[test]
fn unknown_key_is_refused_naming_it() {
    let err = validate("[proxy]\nconect_timeout = \"5s\"\n").unwrap_err();
    assert!(err.to_string().contains("conect_timeout"), "{err}");
}

#[test]
fn unknown_section_is_refused_naming_it() {
    let err = validate("[proxxy]\n").unwrap_err();
    assert!(err.to_string().contains("proxxy"), "{err}");
}

#[test]
fn every_bad_value_is_reported_with_its_key() {
    let errors = field_errors(
        "[proxy]\nlisten = \"nowhere\"\nconnect_timeout = \"soon\"\nupstream = \"ftp://x\"\n\
         [auth]\napp_token_policy = \"merge\"\n[log]\nformat = \"xml\"\n",
    );
    let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "proxy.upstream",
            "proxy.listen",
            "proxy.connect_timeout",
            "auth.app_token_policy",
            "log.format"
        ]
    );
}

#[test]
fn workers_default_to_one_and_are_bounded() {
    assert_eq!(
        validate("").unwrap().proxy.workers.map(|n| n.get()),
        Some(1)
    );
    let per_cpu = validate("[proxy]\nworkers = 0\n").unwrap();
    assert_eq!(per_cpu.proxy.workers, None);
    let errors = field_errors("[proxy]\nworkers = 100000\n");
    assert_eq!(errors[0].key, "proxy.workers");
    assert!(errors[0].reason.contains("1024"), "{}", errors[0].reason);
}

#[test]
fn zero_timeout_is_refused() {
    let errors = field_errors("[proxy]\nresponse_timeout = \"0s\"\n");
    assert_eq!(errors[0].key, "proxy.response_timeout");
}

#[test]
fn client_idle_timeout_is_at_least_a_second() {
    let errors = field_errors("[proxy]\nclient_idle_timeout = \"500ms\"\n");
    assert_eq!(errors[0].key, "proxy.client_idle_timeout");
    assert!(
        errors[0].reason.contains("at least 1s"),
        "{}",
        errors[0].reason
    );
    let one = validate("[proxy]\nclient_idle_timeout = \"1s\"\n").unwrap();
    assert_eq!(
        one.proxy.client_idle_timeout,
        std::time::Duration::from_secs(1)
    );
}

#[test]
fn max_connections_is_at_least_one() {
    let errors = field_errors("[proxy]\nmax_connections = 0\n");
    assert_eq!(errors[0].key, "proxy.max_connections");
    let ten = validate("[proxy]\nmax_connections = 10\n").unwrap();
    assert_eq!(ten.proxy.max_connections, 10);
}

#[test]
fn upstream_needs_scheme_and_host() {
    assert!(parse_upstream("sandbox.leantech.me")
        .unwrap_err()
        .contains("no scheme"));
    assert!(parse_upstream("https://sandbox.leantech.me/base").is_ok());
    assert!(parse_upstream("http://x/?a=1")
        .unwrap_err()
        .contains("query"));
}

#[test]
fn client_cert_without_key_is_refused() {
    let errors = field_errors("[tls]\nclient_cert = \"c.pem\"\n");
    assert_eq!(errors[0].key, "tls.client_key");
}

#[test]
fn non_loopback_admin_needs_a_token() {
    let errors = field_errors("[admin]\nlisten = \"0.0.0.0:7071\"\n");
    assert_eq!(errors[0].key, "admin.token");
    assert!(validate("[admin]\nlisten = \"0.0.0.0:7071\"\ntoken = \"t\"\n").is_ok());
}

#[test]
fn environment_token_wins_over_file() {
    let env = |k: &str| (k == ENV_APP_TOKEN).then(|| "from-env".to_string());
    let raw = parse("[auth]\napp_token = \"from-file\"\n").unwrap();
    let s = Settings::from_raw(raw, &env).unwrap();
    assert_eq!(s.auth.app_token.unwrap().expose(), "from-env");
}

#[test]
fn parse_errors_never_quote_values() {
    for text in [
        "[auth]\napp_tokn = \"SUPERSECRET-123\"\n",
        "[admin]\ntoken = 12345678\n",
        "[auth]\napp_token = \"SUPERSECRET-123\n",
    ] {
        let err = validate(text).unwrap_err().to_string();
        assert!(
            !err.contains("SUPERSECRET") && !err.contains("12345678"),
            "{err}"
        );
        assert!(err.contains("line 2"), "{err}");
    }
    let err = validate("[auth]\napp_tokn = \"x\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("app_tokn"), "names the key: {err}");
}

#[test]
fn syntax_errors_name_the_line_column_and_what_was_expected() {
    let err = validate("[proxy\n").unwrap_err().to_string();
    assert!(err.contains("line 1, column 7"), "{err}");
    assert!(err.contains("expected `.`, `]`"), "{err}");
    let err = validate("[proxy]\nlisten = \n").unwrap_err().to_string();
    assert!(err.contains("line 2, column 10, key `listen`"), "{err}");
    assert!(!err.contains("(value hidden)"), "nothing to hide: {err}");
    // A value of the wrong type is hidden, what was expected is not.
    let err = validate("[proxy]\nworkers = \"SUPERSECRET\"\n")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("SUPERSECRET"), "{err}");
    assert!(err.contains("line 2, column 11, key `workers`"), "{err}");
}

#[test]
fn raw_config_debug_hides_secrets() {
    let raw = parse("[auth]\napp_token = \"sekrit-123\"\n[admin]\ntoken = \"adm-456\"\n").unwrap();
    let text = format!("{raw:?}");
    assert!(
        !text.contains("sekrit-123") && !text.contains("adm-456"),
        "{text}"
    );
}

#[test]
fn upstream_with_credentials_is_refused_without_echoing_them() {
    let err = parse_upstream("https://user:hunter2@sandbox.leantech.me").unwrap_err();
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn state_file_defaults_under_the_data_dir() {
    let env = |k: &str| (k == "HOME").then(|| "/home/dev".to_string());
    let s = Settings::from_raw(parse("").unwrap(), &env).unwrap();
    assert_eq!(
        s.reconnect.state_file,
        PathBuf::from("/home/dev/.local/share/leanproxy/reconnects.json")
    );
    let s = validate("[proxy]\ndata_dir = \"/tmp/lp\"\n").unwrap();
    assert_eq!(
        s.reconnect.state_file,
        PathBuf::from("/tmp/lp/reconnects.json")
    );
}

#[test]
fn enforce_without_a_webhook_secret_is_refused() {
    let errors =
        field_errors("[proxy]\nupstream = \"https://x\"\n[webhooks]\nverify = \"enforce\"\n");
    assert_eq!(errors[0].key, "webhooks.secret");
    // With the embedded Mockbank its secret applies.
    let s = validate("[webhooks]\nverify = \"enforce\"\n").unwrap();
    assert_eq!(
        s.webhooks.secret.unwrap().expose(),
        "mockbank-webhook-secret"
    );
}

#[test]
fn fault_rules_are_validated_with_their_index_and_field() {
    let errors = field_errors(
        "[[faults]]\naction = \"delay\"\ndelay = \"100ms\"\n[[faults]]\naction = \"status\"\nstatus = 503\nprobability = 1.5\n",
    );
    assert_eq!(errors[0].key, "faults[1].probability");
    let s = validate("[fault]\nseed = 42\n[[faults]]\nid = \"slow\"\naction = \"delay\"\ndelay = \"100ms\"\nmatch = { path = \"/data/*\" }\n").unwrap();
    assert_eq!((s.faults.rules.len(), s.faults.seed), (1, Some(42)));
    assert!(s.faults.allow_header, "on in front of the Mockbank");
}

#[test]
fn faults_are_refused_against_production_unless_allowed() {
    let prod = "[proxy]\nupstream = \"https://api2.leantech.me\"\n";
    let errors = field_errors(&format!("{prod}[[faults]]\naction = \"reset\"\n"));
    assert_eq!(errors[0].key, "faults");
    assert!(errors[0].reason.contains("production"));
    let s = validate(prod).unwrap();
    assert!(!s.faults.allowed && !s.faults.allow_header);
    let allowed = validate(&format!(
        "{prod}[fault]\nallow_faults_in_production = true\n[[faults]]\naction = \"reset\"\n"
    ))
    .unwrap();
    assert!(allowed.faults.allowed);
    let shouting = field_errors("[proxy]\nupstream = \"https://API.leantech.me.\"\n[tls]\nclient_cert = \"c\"\nclient_key = \"k\"\n[[faults]]\naction = \"reset\"\n");
    assert_eq!(
        shouting[0].key, "faults",
        "no spelling slips past the guard"
    );
    assert!(
        !validate("[proxy]\nupstream = \"https://notsandbox.example\"\n")
            .unwrap()
            .faults
            .allow_header
    );
    let sandbox = validate("[proxy]\nupstream = \"https://sandbox.leantech.me\"\n").unwrap();
    assert!(sandbox.faults.allow_header);
    let custom = validate("[proxy]\nupstream = \"http://127.0.0.1:9000\"\n").unwrap();
    assert!(!custom.faults.allow_header);
}

#[test]
fn named_targets_know_hosts_token_urls_and_mtls() {
    let s = validate("[proxy]\nupstream = \"sandbox-ksa\"\n").unwrap();
    assert_eq!(
        s.proxy.upstream.unwrap().to_string(),
        "https://sandbox.sa.leantech.me/"
    );
    assert_eq!(
        s.auth.token_url.unwrap().to_string(),
        "https://auth.sandbox.sa.leantech.me/oauth2/token"
    );
    assert!(validate("[proxy]\nupstream = \"mockbank\"\n")
        .unwrap()
        .proxy
        .upstream
        .is_none());
    let errors = field_errors("[proxy]\nupstream = \"production-uae\"\n");
    assert_eq!(errors[0].key, "tls.client_cert");
    assert!(errors[0].reason.contains("mTLS"));
    let errors = field_errors("[proxy]\nupstream = \"https://api.sa.leantech.me\"\n");
    assert_eq!(errors[0].key, "tls.client_cert");
}

#[test]
fn client_credentials_need_both_halves_and_a_token_url() {
    let errors = field_errors("[auth]\nclient_id = \"app\"\n");
    assert_eq!(errors[0].key, "auth.client_secret");
    let errors = field_errors("[proxy]\nupstream = \"http://127.0.0.1:9\"\n[auth]\nclient_id = \"a\"\nclient_secret = \"s\"\n");
    assert_eq!(errors[0].key, "auth.token_url");
    let env = |k: &str| match k {
        ENV_CLIENT_ID => Some("env-id".to_string()),
        ENV_CLIENT_SECRET => Some("env-secret".to_string()),
        _ => None,
    };
    let s = Settings::from_raw(
        parse("[proxy]\nupstream = \"sandbox-uae\"\n").unwrap(),
        &env,
    )
    .unwrap();
    let (id, secret) = s.auth.client.unwrap();
    assert_eq!((id.as_str(), secret.expose()), ("env-id", "env-secret"));
}

#[test]
fn secret_debug_hides_the_value() {
    let s = validate("[auth]\napp_token = \"sekrit-123\"\n").unwrap();
    assert!(!format!("{s:?}").contains("sekrit-123"));
}

#[test]
fn shipped_example_documents_the_defaults() {
    let text = include_str!("../../config/leanproxy.toml");
    let shipped = validate(text).unwrap();
    let defaults = validate("").unwrap();
    assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));
}

#[test]
fn shipped_example_commented_options_are_real_keys() {
    // Uncomment every `# key = value` line: the result must still parse, so the
    // example never documents an option that does not exist.
    let text = include_str!("../../config/leanproxy.toml");
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            // Commented `[[table]]` headers too, so their keys land in them.
            Some(rest) if rest.starts_with("[[") && rest.ends_with("]]") => rest,
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(uncommented, text, "the example has commented options");
    parse(&uncommented).unwrap();
}

#[test]
fn routes_are_validated_naming_each_field() {
    let errors = field_errors(
        "[[routes]]\nname = \"a\"\nprefix = \"ksa/\"\nupstream = \"https://x.test\"\n\
         [[routes]]\nname = \"a\"\nheader = \"x-r\"\nupstream = \"mockbank\"\n\
         [[routes]]\nname = \"c\"\nprefix = \"/c\"\nupstream = \"https://x.test\"\nclient_id = \"id\"\nclient_secret = \"s3cret-value\"\n",
    );
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "routes[0].prefix",
            "routes[1].name",
            "routes[1].header_value",
            "routes[1].upstream",
            "routes[2].token_url",
        ],
        "{errors:?}"
    );
    assert!(errors.iter().all(|e| !e.reason.contains("s3cret-value")));
}

#[test]
fn a_production_route_needs_a_client_certificate_and_guards_faults() {
    let errors = field_errors(
        "[[routes]]\nname = \"prod\"\nprefix = \"/prod\"\nupstream = \"production-ksa\"\n",
    );
    assert!(
        errors
            .iter()
            .any(|e| e.key == "routes[0].upstream" && e.reason.contains("client certificate")),
        "{errors:?}"
    );

    let s = validate(
        "[tls]\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"\n\
         [[routes]]\nname = \"prod\"\nprefix = \"/prod\"\nupstream = \"production-ksa\"\n\
         app_token = \"t\"\n",
    )
    .unwrap();
    assert_eq!(s.routes.len(), 1);
    assert_eq!(s.routes[0].matcher, RouteMatch::Prefix("/prod".into()));
    assert_eq!(
        s.routes[0].upstream.to_string(),
        "https://api.sa.leantech.me/"
    );
    assert!(s.routes[0].token_url.is_some(), "the preset's token URL");
    assert!(
        !s.faults.allowed,
        "faults refused: one target is production"
    );
    assert!(!s.faults.allow_header);
}

#[test]
fn route_errors_keep_the_files_order_and_normalise_hosts() {
    let errors = field_errors(
        "[[routes]]\nname = \"\"\nprefix = \"/a\"\nupstream = \"https://x.test\"\n\
         [[routes]]\nname = \"b\"\nprefix = \"/b\"\nupstream = \"https://API.leantech.me.\"\n\
         [[routes]]\nname = \"c\"\nheader = \"x-r\"\nheader_value = \"  \"\nupstream = \"https://x.test\"\n\
         [[routes]]\nname = \"d\"\nprefix = \"/d\"\nupstream = \"https://x.test\"\nclient_secret = \"s\"\n",
    );
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "routes[0].name",
            "routes[1].upstream",
            "routes[2].header_value",
            "routes[3].client_id",
        ],
        "{errors:?}"
    );
    assert!(
        errors[1].reason.contains("client certificate"),
        "{errors:?}"
    );
}

#[test]
fn webhook_history_bytes_must_be_positive() {
    let errors = field_errors("[webhooks]\nhistory_bytes = 0\n");
    assert_eq!(errors[0].key, "webhooks.history_bytes");
    let s = validate("[webhooks]\nhistory_bytes = 4096\n").unwrap();
    assert_eq!(s.webhooks.history_bytes, 4096);
}

#[test]
fn the_state_section_names_its_bad_fields() {
    let keys =
        |text: &str| -> Vec<String> { field_errors(text).into_iter().map(|e| e.key).collect() };
    assert_eq!(keys("[state]\nbackend = \"mongo\"\n"), ["state.backend"]);
    assert_eq!(keys("[state]\nbackend = \"redis\"\n"), ["state.url"]);
    assert_eq!(
        keys("[state]\nbackend = \"redis\"\nurl = \"http://cache:6379\"\ntimeout = \"soon\"\n"),
        ["state.timeout", "state.url"]
    );
    assert_eq!(
        keys("[state]\nurl = \"redis://cache:6379\"\n"),
        ["state.url"],
        "a URL without the redis backend is a mistake"
    );
    let errors = field_errors("[state]\nbackend = \"redis\"\nurl = \"ftp://:hunter2@cache\"\n");
    assert!(!format!("{errors:?}").contains("hunter2"), "{errors:?}");
}

#[test]
fn the_redis_password_is_a_secret_from_the_url_or_the_environment() {
    let text = "[state]\nbackend = \"redis\"\nurl = \"redis://:from-url@cache:6379/2\"\nreplica = \"web-1\"\n";
    let s = validate(text).unwrap();
    let crate::state::StateSettings::Redis(r) = &s.state else {
        panic!("redis settings")
    };
    assert_eq!(
        (r.replica.as_str(), r.require, r.prefix.as_str()),
        ("web-1", true, "leanproxy:")
    );
    assert_eq!(r.timeout, Duration::from_millis(250));
    assert_eq!(r.shown_url(), "redis://***@cache:6379/2");
    assert!(!format!("{s:?}").contains("from-url"), "never in Debug");
    let known: Vec<String> = s.secrets().iter().map(|x| x.expose().to_string()).collect();
    assert!(
        known.contains(&"from-url".to_string()),
        "scrubbed from what is kept"
    );

    let env = |k: &str| (k == ENV_REDIS_PASSWORD).then(|| "from-env".to_string());
    let s = Settings::from_raw(parse(text).unwrap(), &env).unwrap();
    let known: Vec<String> = s.secrets().iter().map(|x| x.expose().to_string()).collect();
    assert!(known.contains(&"from-env".to_string()));
    let defaulted =
        validate("[state]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1\"\n").unwrap();
    let crate::state::StateSettings::Redis(r) = &defaulted.state else {
        panic!("redis settings")
    };
    assert!(
        r.replica.ends_with(&format!("-{}", std::process::id())),
        "{}",
        r.replica
    );
}

#[test]
fn mockbank_region_is_uae_by_default_and_ksa_when_asked_or_named() {
    use crate::mockbank::Region;
    assert_eq!(validate("").unwrap().mockbank.region, Region::Uae);
    let ksa = validate("[mockbank]\nregion = \"ksa\"\n").unwrap();
    assert_eq!(ksa.mockbank.region, Region::Ksa);
    // The named target stands the embedded Mockbank in for Lean's KSA sandbox.
    let named = validate("[proxy]\nupstream = \"mockbank-ksa\"\n").unwrap();
    assert!(named.proxy.upstream.is_none(), "the embedded Mockbank");
    assert_eq!(named.mockbank.region, Region::Ksa);
    let both = "[proxy]\nupstream = \"mockbank-ksa\"\n[mockbank]\nregion = \"ksa\"\n";
    assert_eq!(validate(both).unwrap().mockbank.region, Region::Ksa);
}

#[test]
fn a_wrong_or_contradicting_mockbank_region_is_refused_naming_the_field() {
    let errors = field_errors("[mockbank]\nregion = \"qatar\"\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "mockbank.region");
    assert!(
        errors[0].reason.contains("\"uae\", \"ksa\""),
        "{}",
        errors[0]
    );
    let errors =
        field_errors("[proxy]\nupstream = \"mockbank-ksa\"\n[mockbank]\nregion = \"uae\"\n");
    assert_eq!(errors[0].key, "mockbank.region");
    assert!(errors[0].reason.contains("mockbank-ksa"), "{}", errors[0]);
    // A route cannot target the embedded Mockbank by any of its names.
    let errors =
        field_errors("[[routes]]\nname = \"k\"\nprefix = \"/ksa\"\nupstream = \"mockbank-ksa\"\n");
    assert_eq!(errors[0].key, "routes[0].upstream");
}
