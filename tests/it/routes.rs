//! Several targets on one proxy (`[[routes]]`): chosen by path prefix or by a
//! header, each seeing only its own credentials.

use http::Request;
use leanproxy::body;
use serde_json::Value;

use crate::support::{h1_client, send, Origin, Proxy};

async fn seen(proxy: &Proxy, path: &str, region: Option<&str>) -> Value {
    let mut req = Request::get(proxy.url(path));
    if let Some(region) = region {
        req = req.header("x-lean-region", region);
    }
    let r = send(&h1_client(), req.body(body::empty()).unwrap()).await;
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

fn header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

#[tokio::test]
async fn two_targets_routed_by_prefix_and_header_each_see_only_their_credentials() {
    let (default, uae, ksa) = (
        Origin::start().await,
        Origin::start().await,
        Origin::start().await,
    );
    // A Mockbank (behind its own proxy) issues the KSA route's OAuth2 token.
    let bank = Proxy::start("").await;
    let token_url = format!("http://{}/oauth2/token", bank.mockbank_addr.unwrap());
    let proxy = Proxy::in_front_of(
        &default.url(),
        &format!(
            "[auth]\napp_token = \"tok-default\"\n\
             [[routes]]\nname = \"uae\"\nprefix = \"/uae\"\nupstream = \"{}\"\napp_token = \"tok-uae\"\n\
             [[routes]]\nname = \"ksa\"\nheader = \"x-lean-region\"\nheader_value = \"ksa\"\n\
             upstream = \"{}\"\nclient_id = \"mockbank-client-id\"\n\
             client_secret = \"mockbank-client-secret\"\ntoken_url = \"{token_url}\"\n\
             [[faults]]\naction = \"status\"\nstatus = 418\nmatch = {{ path = \"/teapot\" }}\n",
            uae.url(),
            ksa.url()
        ),
    )
    .await;

    // By prefix: the prefix is removed, the query kept, only the UAE token sent.
    let e = seen(&proxy, "/uae/echo?page=2", None).await;
    assert_eq!(e["path"], "/echo");
    assert_eq!(e["query"], "page=2", "{e}");
    assert_eq!(header(&e, "lean-app-token"), Some("tok-uae"));
    assert_eq!(header(&e, "authorization"), None);
    assert_eq!(uae.connections(), 1);

    // Fault rules see the path the target sees, without the route prefix.
    let r = send(
        &h1_client(),
        Request::get(proxy.url("/uae/teapot"))
            .body(body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 418);

    // By header: the selector header is removed, only the bearer token sent.
    let e = seen(&proxy, "/echo", Some("KSA")).await;
    assert_eq!(e["path"], "/echo");
    assert_eq!(header(&e, "x-lean-region"), None);
    assert_eq!(header(&e, "lean-app-token"), None);
    let bearer = header(&e, "authorization").expect("bearer token");
    assert!(
        bearer.starts_with("Bearer ") && bearer.len() > 20,
        "{bearer}"
    );
    assert_eq!(bank.mockbank.as_ref().unwrap().tokens_issued(), 1);
    // The admin API shows the route's token scope and expiry, never the token.
    let info = send(
        &h1_client(),
        Request::get(proxy.admin_url("/api/tokens"))
            .body(body::empty())
            .unwrap(),
    )
    .await;
    let info_text = String::from_utf8_lossy(&info.body).into_owned();
    assert_eq!(info.json()["routes"]["ksa"]["scope"], "api", "{info_text}");
    assert!(
        !info_text.contains(&bearer["Bearer ".len()..]),
        "{info_text}"
    );

    // Neither: the default target with its own token.
    let e = seen(&proxy, "/echo", Some("uae")).await;
    assert_eq!(header(&e, "lean-app-token"), Some("tok-default"));
    assert_eq!(header(&e, "authorization"), None);
    assert_eq!(header(&e, "x-lean-region"), Some("uae"));
    // A lookalike prefix is not a match: the default origin answers its own 404.
    let r = send(
        &h1_client(),
        Request::get(proxy.url("/uaex/echo"))
            .body(body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(&r.body[..], b"no such route");
    assert_eq!(default.connections(), 1, "one pooled connection for both");
    assert_eq!((uae.connections(), ksa.connections()), (1, 1));
    proxy.shutdown().await;
    bank.shutdown().await;
}

#[tokio::test]
async fn each_exchange_records_its_route_for_the_dashboards_filter() {
    let (default, uae) = (Origin::start().await, Origin::start().await);
    let proxy = Proxy::in_front_of(
        &default.url(),
        &format!(
            "[[routes]]\nname = \"uae\"\nprefix = \"/uae\"\nupstream = \"{}\"\n",
            uae.url()
        ),
    )
    .await;
    seen(&proxy, "/uae/echo", None).await;
    seen(&proxy, "/echo", None).await;
    let requests = |filter: &str| {
        let url = proxy.admin_url(&format!("/api/requests?view=summary&{filter}"));
        async move { crate::support::get(&h1_client(), &url).await.json() }
    };
    let routed = requests("route=uae").await;
    let rows = routed["requests"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{routed}");
    assert_eq!(rows[0]["route"], "uae");
    assert_eq!(rows[0]["path"], "/uae/echo");
    let plain = requests("route=default").await;
    assert_eq!(plain["requests"].as_array().unwrap().len(), 1, "{plain}");
    assert_eq!(plain["requests"][0]["route"], Value::Null);
    proxy.shutdown().await;
}
