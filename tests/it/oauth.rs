//! OAuth2 client credentials against the Mockbank's `/oauth2/token`: one token
//! request for many concurrent calls, refresh and retry on 401 for idempotent
//! requests only, clear 502s when the credentials are refused, customer tokens,
//! v1/v2 credentials side by side, production presets needing mTLS.

use http::Request;
use leanproxy::body;
use serde_json::{json, Value};

use crate::support::{get, h1_client, run_binary, send, Proxy};

/// A data call that needs a token and answers 404 (the entity is unknown) once
/// authenticated.
const UNKNOWN_IDENTITY: &str = "/data/v2/identity?entity_id=00000000-0000-0000-0000-000000000000";

const OAUTH: &str =
    "[auth]\nclient_id = \"mockbank-client-id\"\nclient_secret = \"mockbank-client-secret\"\n";

#[tokio::test]
async fn one_token_request_for_many_concurrent_calls() {
    let p = Proxy::start(OAUTH).await;
    let mockbank = p.mockbank.clone().unwrap();
    let c = h1_client();
    assert_eq!(
        get(&c, &p.url(UNKNOWN_IDENTITY)).await.status,
        404,
        "authenticated: the entity is unknown"
    );
    assert_eq!(
        mockbank.tokens_issued(),
        1,
        "the first request fetched a token"
    );

    // Forget it, then 500 concurrent v2 calls at once: one token request.
    let forget = send(
        &c,
        Request::delete(p.admin_url("/api/tokens"))
            .body(body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(forget.status, 200);
    let mut calls = Vec::new();
    for _ in 0..500 {
        let (c, url) = (c.clone(), p.url(UNKNOWN_IDENTITY));
        calls.push(tokio::spawn(async move { get(&c, &url).await.status }));
    }
    for call in calls {
        assert_eq!(call.await.unwrap(), 404);
    }
    assert_eq!(mockbank.tokens_issued(), 2, "single flight");

    // The admin API shows scope and expiry, never the token.
    let info = get(&c, &p.admin_url("/api/tokens")).await;
    assert_eq!(info.json()["api"]["scope"], "api");
    assert!(info.json()["api"]["expires_at"].is_string());
    assert!(
        !String::from_utf8_lossy(&info.body).contains("eyJ"),
        "no token in the answer"
    );
}

#[tokio::test]
async fn revoked_token_is_refreshed_and_retried_for_get_but_not_post() {
    let p = Proxy::start(OAUTH).await;
    let mockbank = p.mockbank.clone().unwrap();
    let c = h1_client();
    assert_eq!(get(&c, &p.url(UNKNOWN_IDENTITY)).await.status, 404);
    assert_eq!(mockbank.tokens_issued(), 1);

    let revoke = |p: &Proxy| {
        send(
            &c,
            Request::post(p.url("/_mockbank/oauth/revoke"))
                .body(body::empty())
                .unwrap(),
        )
    };
    revoke(&p).await;
    let retried = get(&c, &p.url(UNKNOWN_IDENTITY)).await;
    assert_eq!(
        retried.status, 404,
        "refreshed and retried: the app never sees the 401"
    );
    assert_eq!(mockbank.tokens_issued(), 2, "one refresh");

    revoke(&p).await;
    let post = Request::post(p.url("/data/v2/refreshes"))
        .header("content-type", "application/json")
        .body(body::full(json!({"entity_id": "x"}).to_string()))
        .unwrap();
    let not_retried = send(&c, post).await;
    assert_eq!(not_retried.status, 401, "a POST is not replayed");
    assert_eq!(mockbank.tokens_issued(), 2, "and no refresh for it");
}

#[tokio::test]
async fn refused_credentials_are_a_502_saying_so() {
    let p = Proxy::start("[auth]\nclient_id = \"mockbank-client-id\"\nclient_secret = \"wrong\"\n")
        .await;
    let r = get(
        &h1_client(),
        &p.url("/data/v2/accounts?entity_id=00000000-0000-0000-0000-000000000000"),
    )
    .await;
    assert_eq!(r.status, 502);
    let body = r.json();
    assert_eq!(body["metadata"]["cause"], "token_refused");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("refused the client credentials"),
        "{message}"
    );
    assert!(
        !message.contains("wrong"),
        "the secret is not echoed: {message}"
    );
    for key in ["status", "message", "timestamp", "metadata"] {
        assert!(body.get(key).is_some());
    }
}

#[tokio::test]
async fn unreachable_token_endpoint_is_a_502_saying_so() {
    let port = crate::support::closed_port().await;
    let p = Proxy::start(&format!(
        "{OAUTH}token_url = \"http://{port}/oauth2/token\"\n"
    ))
    .await;
    let r = get(
        &h1_client(),
        &p.url("/data/v2/accounts?entity_id=00000000-0000-0000-0000-000000000000"),
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["metadata"]["cause"], "token_unreachable");
}

#[tokio::test]
async fn v1_paths_get_the_app_token_and_v2_paths_the_bearer() {
    // Both configured: the Mockbank accepts either, so look at what arrives.
    let p = Proxy::start(OAUTH).await;
    let c = h1_client();
    let v1 = send(
        &c,
        Request::post(p.url("/data/v1/accounts"))
            .header("content-type", "application/json")
            .body(body::full(
                r#"{"entity_id":"00000000-0000-0000-0000-000000000000"}"#,
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(v1.status, 404, "authenticated with the app token");
    let before = p.mockbank.as_ref().unwrap().tokens_issued();
    assert_eq!(before, 0, "no OAuth token needed for v1");
    get(&c, &p.url(UNKNOWN_IDENTITY)).await;
    assert_eq!(
        p.mockbank.as_ref().unwrap().tokens_issued(),
        1,
        "v2 uses the bearer token"
    );
}

#[tokio::test]
async fn customer_tokens_are_minted_for_the_linksdk() {
    let p = Proxy::start(OAUTH).await;
    let c = h1_client();
    let customer = send(
        &c,
        Request::post(p.url("/customers/v1/"))
            .header("content-type", "application/json")
            .body(body::full(json!({"app_user_id": "sdk"}).to_string()))
            .unwrap(),
    )
    .await
    .json();
    let id = customer["customer_id"].as_str().unwrap().to_string();
    let minted = send(
        &c,
        Request::post(p.admin_url("/api/tokens/customer"))
            .header("content-type", "application/json")
            .body(body::full(json!({"customer_id": id}).to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(minted.status, 201, "{:?}", minted.json());
    let t: Value = minted.json();
    assert_eq!(t["scope"], format!("customer.{id}"));
    assert_eq!(t["expires_in"], 3599);
    assert!(t["access_token"].as_str().unwrap().starts_with("eyJ"));
    let unknown = send(
        &c,
        Request::post(p.admin_url("/api/tokens/customer"))
            .header("content-type", "application/json")
            .body(body::full(
                r#"{"customer_id":"00000000-0000-0000-0000-000000000000"}"#,
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(
        unknown.status, 502,
        "the token endpoint refused an unknown customer"
    );
}

#[test]
fn production_presets_refuse_to_start_without_a_client_certificate() {
    for target in ["production-uae", "production-ksa"] {
        let (code, _, stderr) = run_binary(&["check", "--config", "/dev/null"]);
        assert_eq!(code, 0, "{stderr}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prod.toml");
        std::fs::write(&path, format!("[proxy]\nupstream = \"{target}\"\n")).unwrap();
        let (code, _, stderr) = run_binary(&["serve", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 2, "{target}");
        assert!(
            stderr.contains("tls.client_cert") && stderr.contains("mTLS"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn one_token_request_for_many_calls_arriving_as_the_token_comes_due() {
    // Mockbank tokens live 3599 s; with a 3598 s margin the token is due for
    // refresh one second after it was fetched.
    let p = Proxy::start(&format!("{OAUTH}refresh_margin = \"3598s\"\n")).await;
    let mockbank = p.mockbank.clone().unwrap();
    let c = h1_client();
    let url = p.url(UNKNOWN_IDENTITY);
    assert_eq!(get(&c, &url).await.status, 404);
    assert_eq!(mockbank.tokens_issued(), 1);
    assert_eq!(get(&c, &url).await.status, 404);
    assert_eq!(mockbank.tokens_issued(), 1, "still fresh: cached");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..500)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { get(&c, &url).await.status })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 404);
    }
    // Each new token is due a second later too: on a loaded machine, where
    // the 500 calls take longer, one more refresh per second is right.
    let refreshes = mockbank.tokens_issued() - 1;
    let allowed = 1 + started.elapsed().as_secs() as usize;
    assert!(
        (1..=allowed).contains(&refreshes),
        "{refreshes} refreshes for 500 calls in {:?}",
        started.elapsed()
    );
    p.shutdown().await;
}
