//! What a new user meets in the first hour, through the real binary and
//! listeners: the start banner, customer tokens offline, the Mockbank's clock
//! and OTP answers, warnings for a Lean target without credentials, TOML
//! syntax errors, and the inactivity rule for every user but the stable one.

use std::time::Duration;

use http::Request;
use leanproxy::body;
use serde_json::json;

use crate::support::{h1_client, link_entity, post_json, run_binary, send, Binary, Proxy};

#[tokio::test]
async fn the_banner_says_where_webhooks_go_and_hides_a_given_app_token() {
    let relay = "http://127.0.0.1:9/hooks";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("leanproxy.toml");
    std::fs::write(
        &config,
        format!("[webhooks]\nrelay = [\"{relay}\"]\n[mockbank]\ntime_scale = 60.0\n"),
    )
    .unwrap();
    let bin = Binary::spawn(
        &["--config", config.to_str().unwrap()],
        &[("LEAN_APP_TOKEN", "user-given-SECRET-token")],
    );
    // The Mockbank's lines come after the addresses the harness waits for.
    let mut out = bin.output();
    for _ in 0..100 {
        if out.contains("test users") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        out = bin.output();
    }
    let to_catcher = format!("webhooks: sent to http://{}/webhooks/lean", bin.webhooks);
    assert!(out.contains(&to_catcher), "{out}");
    assert!(!out.contains("not sent"), "{out}");
    assert!(
        out.contains(&format!("relay: caught webhooks go on to {relay}")),
        "{out}"
    );
    assert!(
        out.contains("time_scale 60 (a Mockbank minute lasts 1s)"),
        "{out}"
    );
    assert!(!out.contains("user-given-SECRET-token"), "{out}");
    assert!(
        out.contains("lean-app-token: the configured auth.app_token / LEAN_APP_TOKEN (not shown)"),
        "{out}"
    );
    // The built-in, public Mockbank credentials are shown.
    assert!(
        out.contains("client_secret=mockbank-client-secret"),
        "{out}"
    );
}

#[tokio::test]
async fn a_customer_token_needs_no_configuration_in_front_of_the_mockbank() {
    let bin = Binary::spawn(&[], &[]);
    let c = h1_client();
    let customer = send(
        &c,
        post_json(
            bin.url("/customers/v1/"),
            json!({"app_user_id": "token-user"}),
        ),
    )
    .await
    .json()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = format!("http://{}", bin.admin);
    let token = |id: String| {
        let admin = admin.clone();
        tokio::task::spawn_blocking(move || {
            run_binary(&["token", "customer", &id, "--admin", &admin])
        })
    };
    let (code, out, err) = token(customer.clone()).await.unwrap();
    assert_eq!(code, 0, "{err}");
    let minted: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        minted["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{out}"
    );
    assert_eq!(minted["scope"], format!("customer.{customer}"), "{out}");
    // A customer the application does not have is named as the problem.
    let (code, _, err) = token(uuid::Uuid::new_v4().to_string()).await.unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("one of this application's customers"), "{err}");
}

#[tokio::test]
async fn the_clock_takes_seconds_or_a_duration_and_says_which_when_wrong() {
    let p = Proxy::start("").await;
    let c = h1_client();
    let advance = |body: serde_json::Value| post_json(p.url("/_mockbank/clock/advance"), body);
    let before = send(&c, advance(json!({"seconds": 0}))).await.json()["elapsed_seconds"]
        .as_f64()
        .unwrap();
    let after = send(&c, advance(json!({"duration": "10m"}))).await.json()["elapsed_seconds"]
        .as_f64()
        .unwrap();
    assert!(after - before >= 600.0, "{before} → {after}");
    let wrong = send(&c, advance(json!({"minutes": 10}))).await;
    assert_eq!(wrong.status, 400);
    let message = wrong.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(r#"{"seconds": 600} or {"duration": "10m"}"#),
        "{message}"
    );
}

#[tokio::test]
async fn a_missing_otp_is_told_apart_from_a_wrong_one() {
    let p = Proxy::start("").await;
    let c = h1_client();
    let customer = send(
        &c,
        post_json(p.url("/customers/v1/"), json!({"app_user_id": "otp-words"})),
    )
    .await
    .json();
    let password = p.mockbank.as_ref().unwrap().users()[0].password.clone();
    let connect = |otp: Option<&str>| {
        let mut body = json!({"customer_id": customer["customer_id"], "username": "otp_user", "password": password});
        if let Some(otp) = otp {
            body["otp"] = otp.into();
        }
        post_json(p.url("/_mockbank/link/connect"), body)
    };
    let missing = send(&c, connect(None)).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["status"], "MISSING_OTP");
    assert!(
        missing.json()["message"]
            .as_str()
            .unwrap()
            .contains("needs a one-time password"),
        "{:?}",
        missing.json()
    );
    let wrong = send(&c, connect(Some("2222"))).await;
    assert_eq!(wrong.json()["status"], "INVALID_OTP");
}

#[test]
fn a_lean_target_without_credentials_is_named_at_check_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lean.toml");
    std::fs::write(&config, "[proxy]\nupstream = \"sandbox-uae\"\n").unwrap();
    let (code, out, err) = run_binary(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("config OK"), "{out}");
    assert!(
        out.contains("warning: proxy.upstream is Lean (sandbox.leantech.me) but no credentials")
            && out.contains("LEAN_APP_TOKEN")
            && out.contains("LEAN_CLIENT_ID"),
        "{out}"
    );
    // With credentials, no warning.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_leanproxy"));
    let ok = cmd
        .args(["check", "--config", config.to_str().unwrap()])
        .env("LEAN_APP_TOKEN", "t")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&ok.stdout).contains("warning"));
}

#[tokio::test]
async fn the_proxy_warns_at_start_in_front_of_lean_without_credentials() {
    let bin = Binary::spawn(&["--upstream", "sandbox-uae"], &[]);
    let mut out = bin.output();
    for _ in 0..100 {
        if out.contains("no credentials") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        out = bin.output();
    }
    assert!(out.contains("no credentials are configured"), "{out}");
    assert!(out.contains("LEAN_CLIENT_SECRET"), "{out}");
}

#[test]
fn a_broken_toml_file_names_its_line_column_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[proxy]\nlisten = \"127.0.0.1:7070\"\n[auth\n").unwrap();
    let (code, _, err) = run_binary(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("line 3, column 6"), "{err}");
    assert!(err.contains("expected `.`, `]`"), "{err}");
    assert!(!err.contains("(value hidden), (value hidden)"), "{err}");
}

#[tokio::test]
async fn every_user_but_the_stable_one_is_de_authenticated_after_inactivity() {
    let p = Proxy::start("").await;
    let mockbank = p.mockbank.as_ref().unwrap();
    mockbank.clock().pause();
    let c = h1_client();
    let users = mockbank.users().to_vec();
    let mut entities = Vec::new();
    for u in &users {
        let otp = u.behaviour.needs_otp().then_some("1111");
        let entity = link_entity(&c, &p.url(""), &u.username, &u.username, &u.password, otp).await;
        entities.push((u.username.clone(), entity));
    }
    mockbank.clock().advance(Duration::from_secs(11 * 60));
    for (user, entity) in &entities {
        let req = Request::post(p.url("/data/v1/accounts"))
            .header("content-type", "application/json")
            .body(body::full(json!({"entity_id": entity}).to_string()))
            .unwrap();
        let status = send(&c, req).await.json()["status"].clone();
        // The stable user stays; the maintenance user's bank is down, which
        // its data calls say first.
        let expected = match user.as_str() {
            "no_otp_user" => "OK",
            "maintenance_user" => "FAILED",
            _ => "RECONNECT_REQUIRED",
        };
        assert_eq!(status, expected, "{user}");
    }
}
