//! The app token reaches the upstream per policy and never appears in logs.

use http::Request;
use leanproxy::body;

use crate::support::{h1_client, send, Binary, Origin, Proxy};

const TOKEN: &str = "tok-6c3f9a1e2b7d4f80a9e1c5d3b2a14f77";

async fn token_seen(proxy: &Proxy, own: Option<&str>) -> Option<String> {
    let mut req = Request::get(proxy.url("/echo"));
    if let Some(own) = own {
        req = req.header("lean-app-token", own);
    }
    let r = send(&h1_client(), req.body(body::empty()).unwrap()).await;
    r.json()["headers"]["lean-app-token"][0]
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn override_policy_replaces_the_apps_token() {
    let origin = Origin::start().await;
    let proxy =
        Proxy::in_front_of(&origin.url(), &format!("[auth]\napp_token = \"{TOKEN}\"\n")).await;
    assert_eq!(token_seen(&proxy, None).await.as_deref(), Some(TOKEN));
    assert_eq!(
        token_seen(&proxy, Some("app-own")).await.as_deref(),
        Some(TOKEN)
    );
}

#[tokio::test]
async fn keep_policy_only_fills_in_a_missing_token() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(
        &origin.url(),
        &format!("[auth]\napp_token = \"{TOKEN}\"\napp_token_policy = \"keep\"\n"),
    )
    .await;
    assert_eq!(token_seen(&proxy, None).await.as_deref(), Some(TOKEN));
    assert_eq!(
        token_seen(&proxy, Some("app-own")).await.as_deref(),
        Some("app-own")
    );
}

#[tokio::test]
async fn without_a_token_nothing_is_added() {
    let origin = Origin::start().await;
    let proxy = Proxy::in_front_of(&origin.url(), "").await;
    assert_eq!(token_seen(&proxy, None).await, None);
}

#[tokio::test]
async fn env_token_reaches_upstream_and_never_the_logs() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("short.toml");
    // A short response timeout, so one exchange ends in a proxy-made 504 and its
    // WARN line with the failure detail.
    std::fs::write(&config, "[proxy]\nresponse_timeout = \"300ms\"\n").unwrap();
    for format in ["pretty", "json"] {
        let bin = Binary::spawn(
            &[
                "--upstream",
                &origin.url(),
                "--log-format",
                format,
                "--config",
                config.to_str().unwrap(),
            ],
            &[("LEAN_APP_TOKEN", TOKEN), ("RUST_LOG", "trace")],
        );
        let client = h1_client();
        // Plain, with the app's own token, over h2, and a failing exchange.
        let r = send(
            &client,
            Request::get(bin.url("/echo")).body(body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.json()["headers"]["lean-app-token"][0], TOKEN);
        let own = Request::post(bin.url("/echo"))
            .header("lean-app-token", "app-own-token-value")
            .body(body::full("{}"))
            .unwrap();
        assert_eq!(
            send(&client, own).await.json()["headers"]["lean-app-token"][0],
            TOKEN
        );
        let h2 = crate::support::h2_client();
        let r = send(
            &h2,
            Request::get(bin.url("/echo")).body(body::empty()).unwrap(),
        )
        .await;
        assert_eq!(r.json()["headers"]["lean-app-token"][0], TOKEN);
        send(
            &client,
            Request::get(bin.url("/status/500"))
                .body(body::empty())
                .unwrap(),
        )
        .await;

        let mut bin = bin;
        bin.terminate();
        assert_eq!(
            bin.wait_exit(std::time::Duration::from_secs(10)).await,
            Some(0)
        );
        let output = bin.output();
        assert!(
            output.contains("exchange"),
            "{format}: the exchanges were logged:\n{output}"
        );
        assert!(
            !output.contains(TOKEN),
            "{format}: token leaked into the log:\n{output}"
        );
        assert!(
            !output.contains("app-own-token-value"),
            "{format}: app token leaked"
        );
    }
}
