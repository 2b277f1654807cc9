//! Link in a real browser: a page on another loopback origin loads each of the
//! Mockbank's LinkSDK scripts and links the test users through the Link
//! screens; the callback, the entity through the proxy, the signed webhooks at
//! the catcher and the reconnect registry are checked. Also the hosted page
//! for mobile WebViews, the boilerplate page, and CORS without a browser.

use std::net::SocketAddr;
use std::time::Duration;

use http::Request;
use leanproxy::body;
use leanproxy::mockbank::TestUser;
use serde_json::{json, Value};

use crate::browser::{serve_site, Browser};
use crate::support::{get, h1_client, send, Observed, Proxy};

pub const APP_TOKEN: &str = "mockbank-app-token";

/// LinkSDK's three script generations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Script {
    Legacy,
    Loader,
    V2,
}

impl Script {
    const ALL: [Script; 3] = [Script::Legacy, Script::Loader, Script::V2];

    pub fn path(self) -> &'static str {
        match self {
            Script::Legacy => "/link/sdk/web/latest/Lean.min.js",
            Script::Loader => "/link/loader/prod/ae/latest/lean-link-loader.min.js",
            Script::V2 => "/link/sdk/web/v2/prod/ae/1.4.2/Lean.min.js",
        }
    }

    pub fn global(self) -> &'static str {
        match self {
            Script::V2 => "LeanV2",
            _ => "Lean",
        }
    }
}

/// The proxy in front of its Mockbank, a site on another origin, a browser.
pub struct Rig {
    pub proxy: Proxy,
    pub site: SocketAddr,
    pub browser: Browser,
    pub client: crate::support::HttpClient,
}

impl Rig {
    pub async fn start() -> Option<Rig> {
        let browser = Browser::start().await?;
        let proxy = Proxy::start("").await;
        Some(Rig {
            site: serve_site().await,
            proxy,
            browser,
            client: h1_client(),
        })
    }

    pub fn mockbank(&self) -> String {
        format!("http://{}", self.proxy.mockbank_addr.unwrap())
    }

    pub fn user(&self, username: &str) -> TestUser {
        let users = self.proxy.mockbank.as_ref().unwrap().users();
        users
            .iter()
            .find(|u| u.username == username)
            .unwrap()
            .clone()
    }

    pub async fn post(&self, url: &str, body: Value) -> Observed {
        let req = Request::post(url)
            .header("content-type", "application/json")
            .body(body::full(body.to_string()))
            .unwrap();
        send(&self.client, req).await
    }

    /// A new customer, through the proxy (which adds the app token).
    pub async fn customer(&self) -> String {
        let app_user_id = format!("app-{}", uuid::Uuid::new_v4().simple());
        let c = self
            .post(
                &self.proxy.url("/customers/v1/"),
                json!({"app_user_id": app_user_id}),
            )
            .await;
        assert_eq!(c.status, 200, "{:?}", c.json());
        c.json()["customer_id"].as_str().unwrap().to_string()
    }

    /// A payment intent of `amount` AED for `customer`: its id.
    pub async fn intent(&self, customer: &str, amount: u32) -> String {
        let intent = self
            .post(
                &self.proxy.url("/payments/v1/intents"),
                json!({"amount": amount, "currency": "AED", "customer_id": customer}),
            )
            .await;
        assert_eq!(intent.status, 200, "{:?}", intent.json());
        intent.json()["payment_intent_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Opens the app page with `script` and calls `method(options)`, the
    /// callback collecting into `window.results`.
    pub async fn open(&self, script: Script, method: &str, options: Value) {
        let url = format!(
            "http://{}/?script={}{}",
            self.site,
            self.mockbank(),
            script.path()
        );
        self.browser.client.goto(&url).await.unwrap();
        self.browser
            .wait_for(
                "the script's global",
                &format!("return window.{} ? true : null;", script.global()),
            )
            .await;
        self.browser
            .eval(
                "const [g, m, o] = arguments; o.callback = (r) => window.results.push(r); window[g][m](o);",
                vec![json!(script.global()), json!(method), options],
            )
            .await;
    }

    /// Steps into Link's iframe.
    pub async fn enter_link(&self) {
        let frame = self.browser.find("iframe[data-lean-link]").await;
        frame.enter_frame().await.unwrap();
    }

    /// Back on the app's page, the callback object.
    pub async fn callback(&self) -> Value {
        self.browser.client.enter_parent_frame().await.unwrap();
        self.browser
            .wait_for(
                "the callback",
                "return window.results.length ? window.results[0] : null;",
            )
            .await
    }

    pub async fn screen(&self, name: &str) {
        self.browser
            .find(&format!("section[data-screen={name}]"))
            .await;
    }

    pub async fn login(&self, user: &TestUser, password: &str) {
        self.screen("LOGIN").await;
        self.browser.type_into("#username", &user.username).await;
        self.browser.type_into("#password", password).await;
        self.browser.click("#login button[type=submit]").await;
    }

    /// The error a step left on the screen, once the screen shows it (so
    /// the fields typed into next are the new screen's).
    pub async fn error_shown(&self, containing: &str) -> String {
        let text = self
            .browser
            .wait_for(
                &format!("an error with {containing:?}"),
                &format!(
                    "const e = document.getElementById('error'); return e && e.textContent.includes({}) ? e.textContent : null;",
                    serde_json::to_string(containing).unwrap()
                ),
            )
            .await;
        text.as_str().unwrap().to_string()
    }

    pub async fn otp(&self, code: &str) {
        self.screen("OTP").await;
        self.browser.type_into("#otp", code).await;
        self.browser.click("#otp-form button[type=submit]").await;
    }

    /// Through the screens for `user`, from the bank list to "Done".
    pub async fn link_through(&self, user: &TestUser) {
        self.enter_link().await;
        self.screen("BANK_LIST").await;
        self.browser
            .click(&format!("button[data-bank={}]", user.bank.identifier))
            .await;
        self.login(user, &user.password).await;
        self.after_login(user).await;
    }

    /// From a right password to "Done": the OTP and the accounts if asked.
    pub async fn after_login(&self, user: &TestUser) {
        if user.behaviour.needs_otp() {
            self.otp("1111").await;
        }
        if user.accounts.len() > 1 {
            self.screen("ACCOUNT_SELECTION").await;
            self.browser.click("#accounts button[type=submit]").await;
        }
        self.screen("SUCCESS").await;
        self.browser.click("[data-action=done]").await;
    }

    /// The webhook of `kind` whose body mentions `about` (an entity or
    /// customer id) at the proxy's catcher, waiting for it.
    pub async fn caught(&self, kind: &str, about: &str) -> leanproxy::webhooks::WebhookRecord {
        for _ in 0..100 {
            if let Some(r) = self.proxy.webhooks.records().into_iter().find(|r| {
                r.kind.as_deref() == Some(kind)
                    && r.body.as_deref().is_some_and(|b| b.contains(about))
            }) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {kind} webhook about {about} at the catcher");
    }

    pub async fn stop(self) {
        self.browser.stop().await;
        self.proxy.shutdown().await;
    }
}

/// Every field of LinkSDK's callback object is there.
pub fn assert_callback_shape(r: &Value, script: Script) {
    for key in [
        "status",
        "message",
        "bank",
        "exit_point",
        "secondary_status",
        "last_api_response",
        "user_exit_intent",
        "exit_intent_point",
        "exit_survey_reason",
        "lean_correlation_id",
        "open_banking_redirect_url",
    ] {
        assert!(r.get(key).is_some(), "{key} missing from {r}");
    }
    assert_eq!(r.get("method").is_some(), script == Script::Legacy, "{r}");
}

pub fn connect_options(customer: &str) -> Value {
    json!({
        "app_token": APP_TOKEN,
        "customer_id": customer,
        "permissions": ["identity", "accounts", "balance", "transactions"],
        "sandbox": true,
    })
}

#[tokio::test]
async fn each_script_generation_links_each_test_user_from_another_origin() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let usernames: Vec<String> = rig
        .proxy
        .mockbank
        .as_ref()
        .unwrap()
        .users()
        .iter()
        .map(|u| u.username.clone())
        .collect();
    assert_eq!(usernames.len(), 5);
    for script in Script::ALL {
        for username in &usernames {
            let user = rig.user(username);
            let customer = rig.customer().await;
            rig.open(script, "connect", connect_options(&customer))
                .await;
            rig.link_through(&user).await;
            let r = rig.callback().await;
            let what = format!("{script:?} {username}: {r}");
            assert_callback_shape(&r, script);
            assert_eq!(r["status"], "SUCCESS", "{what}");
            assert_eq!(r["secondary_status"], "OK", "{what}");
            assert_eq!(r["exit_point"], "SUCCESS", "{what}");
            assert_eq!(r["bank"]["bank_identifier"], user.bank.identifier, "{what}");
            assert_eq!(r["bank"]["is_supported"], true, "{what}");
            assert!(uuid::Uuid::parse_str(r["lean_correlation_id"].as_str().unwrap()).is_ok());
            if script == Script::Legacy {
                assert_eq!(r["method"], "CONNECT");
            }
            // No ids reach the front end: the entity arrives by webhook, signed.
            assert!(!r.to_string().contains(&customer), "{what}");
            let created = rig.caught("entity.created", &customer).await;
            assert_eq!(created.signature.name(), "valid", "{what}");
            let entity = created.entity_id.clone().expect("entity id");
            let body: Value = serde_json::from_str(created.body.as_deref().unwrap()).unwrap();
            assert_eq!(body["payload"]["customer_id"], customer.as_str());
            assert_eq!(
                body["payload"]["permissions"],
                json!(["identity", "accounts", "balance", "transactions"])
            );
            // The entity, through the proxy.
            let accounts = get(
                &rig.client,
                &rig.proxy
                    .url(&format!("/data/v2/accounts?entity_id={entity}")),
            )
            .await
            .json();
            if user.bank.data_available {
                assert_eq!(accounts["status"], "OK", "{what}: {accounts}");
                let listed = accounts["data"]["accounts"].as_array().unwrap().len();
                assert_eq!(listed, user.accounts.len(), "{what}");
            } else {
                assert_eq!(accounts["status"], "FAILED", "{what}: {accounts}");
            }
        }
    }
    rig.stop().await;
}

#[tokio::test]
async fn the_accounts_chosen_are_the_accounts_shared() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("multi_account_user");
    let customer = rig.customer().await;
    rig.open(Script::V2, "connect", connect_options(&customer))
        .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, &user.password).await;
    rig.otp("1111").await;
    rig.screen("ACCOUNT_SELECTION").await;
    // None chosen: refused on the screen.
    for input in rig
        .browser
        .client
        .find_all(fantoccini::Locator::Css("input[name=account]"))
        .await
        .unwrap()
    {
        input.click().await.unwrap();
    }
    rig.browser.click("#accounts button[type=submit]").await;
    rig.error_shown("at least one account").await;
    // The first one only.
    rig.browser.click("input[name=account]").await;
    rig.browser.click("#accounts button[type=submit]").await;
    rig.screen("SUCCESS").await;
    rig.browser.click("[data-action=done]").await;
    assert_eq!(rig.callback().await["status"], "SUCCESS");
    let entity = rig
        .caught("entity.created", &customer)
        .await
        .entity_id
        .unwrap();
    let accounts = get(
        &rig.client,
        &rig.proxy
            .url(&format!("/data/v2/accounts?entity_id={entity}")),
    )
    .await
    .json();
    let listed = accounts["data"]["accounts"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{accounts}");
    assert_eq!(listed[0]["account_id"], user.accounts[0].id.to_string());
    rig.stop().await;
}

/// Cancels on `screen` after getting there, and returns the callback.
async fn cancel_on(rig: &Rig, customer: &str, user: &TestUser, screen: &str) -> Value {
    let mut options = connect_options(customer);
    options["show_consent_explanation"] = json!(true);
    rig.open(Script::Loader, "connect", options).await;
    rig.enter_link().await;
    if screen != "BANK_LIST" {
        rig.browser
            .click(&format!("button[data-bank={}]", user.bank.identifier))
            .await;
        rig.screen("CONSENT").await;
        let listed = rig
            .browser
            .find("ul.permissions")
            .await
            .text()
            .await
            .unwrap();
        assert!(listed.contains("Your transactions"), "{listed}");
    }
    if matches!(screen, "LOGIN" | "OTP" | "ACCOUNT_SELECTION" | "SUCCESS") {
        rig.browser.click("[data-action=consent]").await;
    }
    if matches!(screen, "OTP" | "ACCOUNT_SELECTION" | "SUCCESS") {
        rig.login(user, &user.password).await;
    }
    if matches!(screen, "ACCOUNT_SELECTION" | "SUCCESS") {
        rig.otp("1111").await;
    }
    if screen == "SUCCESS" {
        rig.screen("ACCOUNT_SELECTION").await;
        rig.browser.click("#accounts button[type=submit]").await;
    }
    rig.screen(screen).await;
    rig.browser.click("button.close").await;
    rig.callback().await
}

#[tokio::test]
async fn closing_on_each_screen_and_wrong_answers_reach_the_callback() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("multi_account_user");
    let customer = rig.customer().await;
    for screen in ["BANK_LIST", "CONSENT", "LOGIN", "OTP", "ACCOUNT_SELECTION"] {
        let r = cancel_on(&rig, &customer, &user, screen).await;
        assert_eq!(r["status"], "CANCELLED", "{screen}: {r}");
        assert_eq!(r["exit_point"], screen, "{r}");
        assert_eq!(r["secondary_status"], Value::Null, "{r}");
    }
    // Closing the success screen keeps the success.
    let r = cancel_on(&rig, &customer, &user, "SUCCESS").await;
    assert_eq!(r["status"], "SUCCESS", "{r}");

    // "My bank is not listed".
    rig.open(Script::Loader, "connect", connect_options(&customer))
        .await;
    rig.enter_link().await;
    rig.browser.click("[data-action=bank_not_listed]").await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "CANCELLED", "{r}");
    assert_eq!(
        r["bank"],
        json!({"bank_identifier": null, "is_supported": false})
    );
    assert_eq!(r["exit_point"], "BANK_LIST");

    // A wrong password says so and allows another try; leaving then reports it.
    rig.open(Script::Loader, "connect", connect_options(&customer))
        .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, "not-the-password").await;
    let error = rig.error_shown("2 attempts left").await;
    assert!(error.contains("incorrect"), "{error}");
    rig.browser.click("button.close").await;
    let r = rig.callback().await;
    assert_eq!(
        (
            r["status"].as_str(),
            r["secondary_status"].as_str(),
            r["exit_point"].as_str()
        ),
        (
            Some("CANCELLED"),
            Some("INVALID_CREDENTIALS"),
            Some("LOGIN")
        ),
        "{r}"
    );

    // Three wrong passwords end it.
    rig.open(Script::Legacy, "connect", connect_options(&customer))
        .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    for left in [2, 1, 0] {
        rig.login(&user, "wrong").await;
        if left > 0 {
            rig.error_shown(&format!("{left} attempts left")).await;
        }
    }
    let r = rig.callback().await;
    assert_eq!(r["status"], "ERROR", "{r}");
    assert_eq!(r["secondary_status"], "INVALID_CREDENTIALS");
    assert_eq!(r["method"], "CONNECT");

    // A wrong OTP says so; the right one then links.
    rig.open(Script::V2, "connect", connect_options(&customer))
        .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, &user.password).await;
    rig.otp("0000").await;
    rig.error_shown("one-time code is incorrect").await;
    rig.otp("1111").await;
    rig.screen("ACCOUNT_SELECTION").await;
    rig.browser.click("button.close").await;
    let r = rig.callback().await;
    assert_eq!(r["exit_point"], "ACCOUNT_SELECTION", "{r}");

    // Too many wrong OTPs.
    rig.open(Script::V2, "connect", connect_options(&customer))
        .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, &user.password).await;
    for left in [2, 1, 0] {
        rig.otp("9999").await;
        if left > 0 {
            rig.error_shown(&format!("{left} attempts left")).await;
        }
    }
    let r = rig.callback().await;
    assert_eq!(
        (
            r["status"].as_str(),
            r["secondary_status"].as_str(),
            r["exit_point"].as_str()
        ),
        (Some("ERROR"), Some("MFA_ATTEMPTS_EXHAUSTED"), Some("OTP")),
        "{r}"
    );

    // The app closes Link itself.
    rig.open(Script::Loader, "connect", connect_options(&customer))
        .await;
    rig.enter_link().await;
    rig.screen("BANK_LIST").await;
    rig.browser.client.enter_parent_frame().await.unwrap();
    rig.browser.eval("Lean.close();", vec![]).await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "LINK_CLOSED_PROGRAMMATICALLY", "{r}");
    assert_eq!(r["exit_point"], "BANK_LIST", "{r}");
    let frames = rig
        .browser
        .eval("return document.querySelectorAll('iframe').length;", vec![])
        .await;
    assert_eq!(frames, 0);
    rig.stop().await;
}

/// Calls `method(options)` with `script` and returns the callback, or null
/// when none came within `wait`.
pub async fn refused(
    rig: &Rig,
    script: Script,
    method: &str,
    options: Value,
    wait: Duration,
) -> Value {
    rig.open(script, method, options).await;
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        let r = rig
            .browser
            .eval(
                "return window.results.length ? window.results[0] : null;",
                vec![],
            )
            .await;
        if !r.is_null() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Value::Null
}

#[tokio::test]
async fn a_wrong_configuration_gets_an_error_callback_that_names_it() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let customer = rig.customer().await;
    let other = rig.customer().await;
    let long = Duration::from_secs(10);
    let message = |r: &Value| r["message"].as_str().unwrap_or_default().to_string();

    let mut no_customer = connect_options(&customer);
    no_customer.as_object_mut().unwrap().remove("customer_id");
    let r = refused(&rig, Script::Loader, "connect", no_customer.clone(), long).await;
    assert_eq!(r["status"], "ERROR", "{r}");
    assert!(message(&r).starts_with("customer_id: required"), "{r}");
    // v2 reports configuration errors only in sandbox mode.
    let r = refused(&rig, Script::V2, "connect", no_customer.clone(), long).await;
    assert!(message(&r).starts_with("customer_id: required"), "{r}");
    no_customer["sandbox"] = json!(false);
    let r = refused(
        &rig,
        Script::V2,
        "connect",
        no_customer,
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(r, Value::Null, "v2 outside sandbox mode aborts silently");

    let mut bad_token = connect_options(&customer);
    bad_token["app_token"] = json!("not-the-app-token");
    let r = refused(&rig, Script::Legacy, "connect", bad_token, long).await;
    assert!(message(&r).starts_with("app_token: not valid"), "{r}");
    assert_eq!(r["method"], "CONNECT");

    let r = refused(
        &rig,
        Script::Loader,
        "reconnect",
        json!({"app_token": APP_TOKEN, "reconnect_id": uuid::Uuid::new_v4(), "sandbox": true}),
        long,
    )
    .await;
    assert!(
        message(&r).contains("no entity is waiting for a reconnect"),
        "{r}"
    );

    // A customer token for another customer, and an API token.
    let token = |scope: String| {
        let rig = &rig;
        async move {
            let form = format!("client_id=mockbank-client-id&client_secret=mockbank-client-secret&grant_type=client_credentials&scope={scope}");
            let req = Request::post(format!("{}/oauth2/token", rig.mockbank()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body::full(form))
                .unwrap();
            send(&rig.client, req).await.json()["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let mut wrong_customer = connect_options(&customer);
    wrong_customer["access_token"] = json!(token(format!("customer.{other}")).await);
    let r = refused(&rig, Script::Loader, "connect", wrong_customer, long).await;
    assert!(
        message(&r).contains(&format!("issued for customer {other}")),
        "{r}"
    );
    let mut api_scope = connect_options(&customer);
    api_scope["access_token"] = json!(token("api".into()).await);
    let r = refused(&rig, Script::Loader, "connect", api_scope, long).await;
    assert!(message(&r).contains("has scope api"), "{r}");
    // A customer token with less than ten minutes left.
    let mut expiring = connect_options(&customer);
    expiring["access_token"] = json!(token(format!("customer.{customer}")).await);
    rig.proxy
        .mockbank
        .as_ref()
        .unwrap()
        .clock()
        .advance(Duration::from_secs(55 * 60));
    let r = refused(&rig, Script::Loader, "connect", expiring, long).await;
    assert!(message(&r).contains("at least 10 minutes left"), "{r}");

    let mut bad_permission = connect_options(&customer);
    bad_permission["permissions"] = json!(["identity", "standing_orders"]);
    let r = refused(&rig, Script::Loader, "connect", bad_permission, long).await;
    assert!(
        message(&r).contains("\"standing_orders\" is not a permission in ae"),
        "{r}"
    );

    // The payments and verification methods name what they miss.
    for (method, field) in [
        (
            "createBeneficiary",
            "payment_source_id: required for createBeneficiary",
        ),
        (
            "updatePaymentSource",
            "payment_source_id: required for updatePaymentSource",
        ),
        ("checkout", "payment_intent_id: required"),
        ("verifyAddress", "customer_name: required for verifyAddress"),
        (
            "captureRedirect",
            "consent_attempt_id: required for captureRedirect",
        ),
    ] {
        let r = refused(
            &rig,
            Script::Legacy,
            method,
            connect_options(&customer),
            long,
        )
        .await;
        assert_eq!(r["status"], "ERROR", "{r}");
        assert!(message(&r).starts_with(field), "{method}: {r}");
    }
    rig.stop().await;
}

#[tokio::test]
async fn reconnect_in_the_browser_resolves_the_proxys_registry() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("otp_user");
    let customer = rig.customer().await;
    rig.open(Script::Loader, "connect", connect_options(&customer))
        .await;
    rig.link_through(&user).await;
    assert_eq!(rig.callback().await["status"], "SUCCESS");
    let entity = rig
        .caught("entity.created", &customer)
        .await
        .entity_id
        .unwrap();

    let expired = rig
        .post(
            &format!("{}/_mockbank/entities/{entity}/expire", rig.mockbank()),
            json!({}),
        )
        .await;
    assert_eq!(expired.status, 200);
    let answer = rig
        .post(
            &rig.proxy.url("/data/v1/accounts"),
            json!({"entity_id": entity}),
        )
        .await
        .json();
    assert_eq!(answer["status"], "RECONNECT_REQUIRED", "{answer}");
    let reconnect_id = answer["payload"]["reconnect_id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = |path: String| {
        let rig = &rig;
        async move { get(&rig.client, &rig.proxy.admin_url(&path)).await.json() }
    };
    let record = admin(format!("/api/reconnects/{entity}")).await;
    assert_eq!(record["state"], "pending", "{record}");

    rig.open(
        Script::Loader,
        "reconnect",
        json!({"app_token": APP_TOKEN, "reconnect_id": reconnect_id, "sandbox": true}),
    )
    .await;
    rig.enter_link().await;
    // The entity's bank, straight to its login.
    rig.screen("LOGIN").await;
    let title = rig.browser.find("h1").await.text().await.unwrap();
    assert!(title.starts_with("Reconnect to"), "{title}");
    // Another user of the same bank is not this entity's user.
    let other = rig.user("multi_account_user");
    assert_eq!(other.bank.identifier, user.bank.identifier);
    rig.login(&other, &other.password).await;
    rig.error_shown("2 attempts left").await;
    rig.login(&user, &user.password).await;
    rig.otp("1111").await;
    rig.screen("SUCCESS").await;
    rig.browser.click("[data-action=done]").await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["bank"]["bank_identifier"], user.bank.identifier);

    let reconnected = rig.caught("entity.reconnected", &entity).await;
    assert_eq!(reconnected.signature.name(), "valid");
    let mut record = Value::Null;
    for _ in 0..100 {
        record = admin(format!("/api/reconnects/{entity}")).await;
        if record["state"] == "resolved" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(record["state"], "resolved", "{record}");
    let again = rig
        .post(
            &rig.proxy.url("/data/v1/accounts"),
            json!({"entity_id": entity}),
        )
        .await
        .json();
    assert_eq!(again["status"], "OK", "{again}");
    rig.stop().await;
}

#[tokio::test]
async fn arabic_is_right_to_left_and_customization_applies_with_screenshots() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("multi_account_user");
    let customer = rig.customer().await;
    for language in ["en", "ar"] {
        let mut options = connect_options(&customer);
        options["language"] = json!(language);
        options["show_consent_explanation"] = json!(true);
        options["customization"] = json!({"theme_color": "#0b5cff", "button_text_color": "#ffffff", "button_border_radius": 4});
        rig.open(Script::V2, "connect", options).await;
        rig.enter_link().await;
        rig.screen("BANK_LIST").await;
        let (dir, lang) = (
            rig.browser
                .eval("return document.documentElement.dir;", vec![])
                .await,
            rig.browser
                .eval("return document.documentElement.lang;", vec![])
                .await,
        );
        let title = rig.browser.find("h1").await.text().await.unwrap();
        if language == "ar" {
            assert_eq!((dir, lang), (json!("rtl"), json!("ar")));
            assert_eq!(title, "اختر بنكك");
        } else {
            assert_eq!((dir, lang), (json!("ltr"), json!("en")));
            assert_eq!(title, "Choose your bank");
        }
        let maintenance = rig
            .browser
            .find("button[data-bank=LEAN_OF_MAINTENANCE_UAE] .badge")
            .await
            .text()
            .await
            .unwrap();
        assert!(!maintenance.is_empty());
        rig.browser
            .screenshot(&format!("link-bank-list-{language}"))
            .await;
        rig.browser
            .click(&format!("button[data-bank={}]", user.bank.identifier))
            .await;
        rig.screen("CONSENT").await;
        let style = rig
            .browser
            .eval(
                "const s = getComputedStyle(document.querySelector('[data-action=consent]')); return [s.backgroundColor, s.color, s.borderTopLeftRadius];",
                vec![],
            )
            .await;
        assert_eq!(
            style,
            json!(["rgb(11, 92, 255)", "rgb(255, 255, 255)", "4px"])
        );
        rig.browser
            .screenshot(&format!("link-consent-{language}"))
            .await;
        rig.browser.click("[data-action=consent]").await;
        rig.login(&user, "wrong").await;
        rig.error_shown(if language == "ar" {
            "2"
        } else {
            "2 attempts left"
        })
        .await;
        rig.browser
            .screenshot(&format!("link-login-{language}"))
            .await;
        rig.login(&user, &user.password).await;
        rig.screen("OTP").await;
        rig.browser
            .screenshot(&format!("link-otp-{language}"))
            .await;
        rig.otp("1111").await;
        rig.screen("ACCOUNT_SELECTION").await;
        rig.browser
            .screenshot(&format!("link-accounts-{language}"))
            .await;
        rig.browser.click("#accounts button[type=submit]").await;
        rig.screen("SUCCESS").await;
        rig.browser
            .screenshot(&format!("link-success-{language}"))
            .await;
        rig.browser.click("[data-action=done]").await;
        assert_eq!(rig.callback().await["status"], "SUCCESS");
    }
    rig.stop().await;
}

/// The query a mobile SDK opens the hosted page with (Lean's React Native
/// SDK builds it this way: repeated keys, `key+value` pairs).
fn hosted_url(mockbank: &str, customer: &str) -> String {
    format!(
        "{mockbank}/link/loader/prod/ae/latest/lean-sdk.html?implementation=webview-hosted-html\
         &implementation_config=platform+mobile&implementation_config=sdk+react_native\
         &app_token={APP_TOKEN}&sandbox=true&language=en&version=latest&country=ae&env=production\
         &method=connect&customer_id={customer}&permissions=identity&permissions=accounts\
         &customization=theme_color+%230b5cff"
    )
}

#[tokio::test]
async fn the_hosted_page_ends_in_a_leanlink_url() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("no_otp_user");
    let customer = rig.customer().await;
    let b = &rig.browser;
    b.client
        .goto(&hosted_url(&rig.mockbank(), &customer))
        .await
        .unwrap();
    rig.screen("BANK_LIST").await;
    b.click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, &user.password).await;
    rig.after_login(&user).await;
    let href = b
        .find("#leanlink")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let (head, query) = href.split_once('?').unwrap();
    assert_eq!(head, "leanlink://success", "{href}");
    let q: std::collections::HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(q["status"], "SUCCESS");
    assert_eq!(q["secondary_status"], "OK");
    assert_eq!(q["bank_identifier"], user.bank.identifier);
    assert_eq!(q["bank_is_supported"], "true");
    assert_eq!(q["exit_point"], "SUCCESS");
    assert!(q.contains_key("lean_correlation_id") && q.contains_key("message"));
    assert!(href.contains("message=The%20bank"), "spaces as %20: {href}");
    let entity = rig.caught("entity.created", &customer).await;
    assert!(entity.body.unwrap().contains(&customer));

    // Cancelled, and a configuration error. (Chromium answers a leanlink://
    // navigation, which no app handles here, with an external-protocol prompt
    // that takes the tab's input: each case gets a fresh tab.)
    b.fresh_tab().await;
    b.client
        .goto(&hosted_url(&rig.mockbank(), &customer))
        .await
        .unwrap();
    rig.screen("BANK_LIST").await;
    b.click("button.close").await;
    let href = b
        .find("#leanlink")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(
        href.starts_with("leanlink://cancelled?status=CANCELLED"),
        "{href}"
    );
    assert!(href.contains("exit_point=BANK_LIST"), "{href}");
    b.fresh_tab().await;
    b.client
        .goto(&hosted_url(&rig.mockbank(), "not-a-uuid"))
        .await
        .unwrap();
    let href = b
        .find("#leanlink")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(href.starts_with("leanlink://error?status=ERROR"), "{href}");
    assert!(href.contains("customer_id"), "{href}");
    rig.stop().await;
}

#[tokio::test]
async fn the_boilerplate_page_links_a_test_user_and_shows_the_webhooks() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("otp_user");
    let b = &rig.browser;
    b.client
        .goto(&format!("{}/", rig.mockbank()))
        .await
        .unwrap();
    b.wait_for("the script", "return window.Lean ? true : null;")
        .await;
    b.click("#new-customer").await;
    b.wait_for(
        "a customer",
        "return document.getElementById('customer-id').value || null;",
    )
    .await;
    let token = b
        .eval(
            "return document.getElementById('access-token').value;",
            vec![],
        )
        .await;
    assert!(
        token.as_str().unwrap().starts_with("eyJ"),
        "a customer token: {token}"
    );
    b.click("#call-connect").await;
    rig.link_through(&user).await;
    b.client.enter_parent_frame().await.unwrap();
    let shown = b
        .wait_for(
            "the callback on the page",
            "const p = document.getElementById('callback'); return p.dataset.status ? p.textContent : null;",
        )
        .await;
    let r: Value = serde_json::from_str(shown.as_str().unwrap()).unwrap();
    assert_eq!(r["status"], "SUCCESS");
    b.wait_for(
        "entity.created in the webhooks table",
        "return document.querySelector('#webhooks tr[data-type=\"entity.created\"]') ? true : null;",
    )
    .await;
    b.eval("window.scrollTo(0, 0);", vec![]).await;
    b.screenshot("boilerplate-after-connect").await;

    // checkout without an intent says what it needs.
    b.click("#call-checkout").await;
    let shown = b
        .wait_for(
            "the checkout callback",
            "const p = document.getElementById('callback'); return p.dataset.status === 'ERROR' ? p.textContent : null;",
        )
        .await;
    assert!(
        shown
            .as_str()
            .unwrap()
            .contains("payment_intent_id: required for checkout"),
        "{shown}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn link_sessions_answer_cors_for_allowed_origins_only() {
    let proxy = Proxy::start("[mockbank]\nlink_origins = [\"https://app.example.test\"]\n").await;
    let client = h1_client();
    let url = format!("http://{}/link/v1/sessions", proxy.mockbank_addr.unwrap());
    let preflight = |origin: &'static str| {
        Request::options(&url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .body(body::empty())
            .unwrap()
    };
    let ok = send(&client, preflight("https://app.example.test")).await;
    assert_eq!(ok.status, 204);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://app.example.test")
    );
    assert!(ok
        .header("access-control-allow-headers")
        .unwrap()
        .contains("content-type"));
    let refused = send(&client, preflight("http://localhost:3000")).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("mockbank.link_origins"));
    proxy.shutdown().await;

    // A broken allow-list names the key.
    let raw =
        leanproxy::config::parse("[mockbank]\nlink_origins = [\"localhost:3000/app\"]\n").unwrap();
    let err = leanproxy::config::Settings::from_raw(raw, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mockbank.link_origins"), "{err}");
}

#[tokio::test]
async fn pay_in_the_browser_submits_a_payment_that_settles_by_webhook() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("no_otp_user");
    let customer = rig.customer().await;
    let intent_id = rig.intent(&customer, 40).await;
    rig.open(
        Script::V2,
        "pay",
        json!({"app_token": APP_TOKEN, "payment_intent_id": intent_id, "sandbox": true}),
    )
    .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, &user.password).await;
    rig.screen("ACCOUNT_SELECTION").await;
    let title = rig.browser.find("h1").await.text().await.unwrap();
    assert_eq!(title, "Pay AED 40.00");
    // From the second account.
    rig.browser
        .click(&format!(
            "input[name=account][value='{}']",
            user.accounts[1].id
        ))
        .await;
    rig.browser.screenshot("link-pay-en").await;
    rig.browser.click("#accounts button[type=submit]").await;
    rig.screen("SUCCESS").await;
    rig.browser.click("[data-action=done]").await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["message"], "The payment was submitted to the bank.");

    let by_intent = get(
        &rig.client,
        &rig.proxy.url(&format!("/payments/v1/intents/{intent_id}")),
    )
    .await
    .json();
    let payment = &by_intent["payments"][0];
    assert_eq!(payment["status"], "PENDING_WITH_BANK", "{by_intent}");
    assert_eq!(
        payment["sender_details"]["iban"],
        user.accounts[1].iban.as_str()
    );
    rig.caught("payment.created", &intent_id).await;
    rig.proxy
        .mockbank
        .as_ref()
        .unwrap()
        .clock()
        .advance(Duration::from_secs(10));
    let updated = rig.caught("payment.updated", &intent_id).await;
    assert_eq!(updated.signature.name(), "valid");
    let id = payment["id"].as_str().unwrap();
    let settled = get(&rig.client, &rig.proxy.url(&format!("/payments/v1/{id}")))
        .await
        .json();
    assert_eq!(settled["status"], "ACCEPTED_BY_BANK");

    // Paying it again fails in Link; an unknown intent is named.
    rig.open(
        Script::Loader,
        "pay",
        json!({"app_token": APP_TOKEN, "payment_intent_id": intent_id, "sandbox": true}),
    )
    .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, &user.password).await;
    rig.screen("ACCOUNT_SELECTION").await;
    rig.browser.click("#accounts button[type=submit]").await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "ERROR", "{r}");
    assert!(
        r["last_api_response"]
            .as_str()
            .unwrap()
            .contains("INTENT_ALREADY_PAID"),
        "{r}"
    );
    let r = refused(
        &rig,
        Script::Loader,
        "pay",
        json!({"app_token": APP_TOKEN, "payment_intent_id": uuid::Uuid::new_v4(), "sandbox": true}),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("payment_intent_id: no payment intent"),
        "{r}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn create_payment_source_in_the_browser_waits_out_the_cool_off() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("corporate_user");
    let customer = rig.customer().await;
    rig.open(
        Script::Legacy,
        "createPaymentSource",
        json!({"app_token": APP_TOKEN, "customer_id": customer, "sandbox": true}),
    )
    .await;
    rig.link_through(&user).await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["method"], "CREATE_PAYMENT_SOURCE");
    assert_eq!(r["message"], "The payment source was created.");
    rig.caught("payment_source.created", &customer).await;
    let sources = get(
        &rig.client,
        &rig.proxy
            .url(&format!("/customers/v1/{customer}/payment-sources")),
    )
    .await
    .json();
    assert_eq!(
        sources[0]["status"], "AWAITING_BENEFICIARY_COOL_OFF",
        "{sources}"
    );
    assert_eq!(sources[0]["bank_identifier"], user.bank.identifier);
    rig.stop().await;
}

#[tokio::test]
async fn authorize_consent_in_the_browser_authorises_the_account_chosen() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("multi_account_user");
    let customer = rig.customer().await;
    let consent = rig
        .post(
            &rig.proxy.url("/consents/account-on-file"),
            json!({"customer_id": customer, "control_parameters": {"max_individual_amount": "500"}}),
        )
        .await
        .json();
    let id = consent["id"].as_str().unwrap().to_string();
    rig.open(
        Script::V2,
        "authorizeConsent",
        json!({"app_token": APP_TOKEN, "consent_id": id, "sandbox": true}),
    )
    .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, &user.password).await;
    rig.otp("1111").await;
    rig.screen("ACCOUNT_SELECTION").await;
    rig.browser
        .click(&format!(
            "input[name=account][value='{}']",
            user.accounts[2].id
        ))
        .await;
    rig.browser.click("#accounts button[type=submit]").await;
    rig.screen("SUCCESS").await;
    rig.browser.click("[data-action=done]").await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["message"], "The consent was authorised.");
    let details = get(&rig.client, &rig.proxy.url(&format!("/consents/{id}")))
        .await
        .json();
    assert_eq!(details["status"], "AUTHORISED");
    assert_eq!(
        details["consented_account"]["iban"],
        user.accounts[2].iban.as_str()
    );
    rig.stop().await;
}

#[tokio::test]
async fn link_is_usable_from_the_keyboard_alone() {
    use fantoccini::key::Key;
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("no_otp_user");
    let customer = rig.customer().await;
    rig.open(Script::Loader, "connect", connect_options(&customer))
        .await;
    rig.enter_link().await;
    rig.screen("BANK_LIST").await;
    let keys = |text: String| {
        let client = rig.browser.client.clone();
        async move {
            let active = client.active_element().await.unwrap();
            active.send_keys(&text).await.unwrap();
        }
    };
    // The heading has the focus; Tab moves on to the search field, then to
    // the first bank (the close button comes before the heading).
    let focused = |what: &'static str| {
        let b = &rig.browser;
        async move {
            b.wait_for(
                what,
                "const a = document.activeElement; return a && a !== document.body ? (a.id || a.dataset.bank || a.dataset.action || a.tagName) : null;",
            )
            .await
        }
    };
    assert_eq!(focused("the heading").await, "title");
    let tab = String::from(char::from(Key::Tab));
    let enter = String::from(char::from(Key::Enter));
    keys(tab.repeat(2)).await;
    assert_eq!(focused("the first bank").await, user.bank.identifier);
    keys(enter.clone()).await;
    rig.screen("LOGIN").await;
    // The username field has the focus: type, Tab, type, Enter submits.
    assert_eq!(focused("the username").await, "username");
    keys(format!("{}{tab}{}{enter}", user.username, user.password)).await;
    rig.screen("ACCOUNT_SELECTION").await;
    // Every field has a label a screen reader reads.
    let unlabelled = rig
        .browser
        .eval(
            "return Array.from(document.querySelectorAll('input')).filter(i => !i.labels || i.labels.length === 0).length;",
            vec![],
        )
        .await;
    assert_eq!(unlabelled, 0);
    let close_label = rig
        .browser
        .find("button.close")
        .await
        .attr("aria-label")
        .await
        .unwrap();
    assert_eq!(close_label.as_deref(), Some("Close"));
    rig.stop().await;
}
