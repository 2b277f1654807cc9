//! LinkSDK's payments and verification methods in a real browser, past the
//! first five: legacy `link`, `verifyAddress`, `createBeneficiary`,
//! `updatePaymentSource`, `checkout`, `manageConsents`, and redirect flows
//! with `captureRedirect`. Each checks the callback object, the Mockbank's
//! state through the proxy and the signed webhooks at the catcher.

use std::time::Duration;

use serde_json::{json, Value};

use crate::link::{assert_callback_shape, connect_options, refused, Rig, Script, APP_TOKEN};
use crate::support::get;

const WAIT: Duration = Duration::from_secs(10);

impl Rig {
    /// A payment source of `username`'s accounts for `customer`, by the
    /// control endpoint.
    async fn source_of(&self, customer: &str, username: &str) -> String {
        let user = self.user(username);
        let made = self
            .post(
                &format!("{}/_mockbank/payment-sources", self.mockbank()),
                json!({"customer_id": customer, "username": user.username, "password": user.password, "otp": "1111"}),
            )
            .await;
        assert_eq!(made.status, 200, "{:?}", made.json());
        made.json()["id"].as_str().unwrap().to_string()
    }

    /// A new payment destination; its id.
    async fn destination(&self, iban: &str) -> String {
        let made = self
            .post(
                &self.proxy.url("/payments/v1/destinations"),
                json!({"iban": iban, "name": "Second Merchant LLC", "display_name": "Second Merchant"}),
            )
            .await;
        assert_eq!(made.status, 200, "{:?}", made.json());
        made.json()["id"].as_str().unwrap().to_string()
    }

    async fn customer_entities(&self, customer: &str) -> Value {
        get(
            &self.client,
            &self
                .proxy
                .url(&format!("/customers/v1/{customer}/entities")),
        )
        .await
        .json()
    }

    fn advance(&self, by: Duration) {
        self.proxy.mockbank.as_ref().unwrap().clock().advance(by);
    }
}

#[tokio::test]
async fn legacy_link_connects_and_verify_address_links_the_named_holder_only() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    // `link`, the legacy bundle's name for connect.
    let user = rig.user("no_otp_user");
    let customer = rig.customer().await;
    rig.open(Script::Legacy, "link", connect_options(&customer))
        .await;
    rig.link_through(&user).await;
    let r = rig.callback().await;
    assert_callback_shape(&r, Script::Legacy);
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["method"], "LINK");
    rig.caught("entity.created", &customer).await;

    // verifyAddress with the holder's name links them, identity included.
    let holder = rig.user("multi_account_user");
    let verified = rig.customer().await;
    rig.open(
        Script::V2,
        "verifyAddress",
        json!({"app_token": APP_TOKEN, "customer_id": verified, "customer_name": holder.identity.full_name.to_uppercase(), "sandbox": true}),
    )
    .await;
    rig.link_through(&holder).await;
    let r = rig.callback().await;
    assert_callback_shape(&r, Script::V2);
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["message"], "The address was verified.");
    let created = rig.caught("entity.created", &verified).await;
    assert_eq!(created.signature.name(), "valid");
    let entities = rig.customer_entities(&verified).await;
    assert_eq!(entities[0]["permissions"]["identity"], true, "{entities}");

    // Another name: an error the app can tell apart, and no entity.
    let other = rig.customer().await;
    rig.open(
        Script::Loader,
        "verifyAddress",
        json!({"app_token": APP_TOKEN, "customer_id": other, "customer_name": "Somebody Else", "sandbox": true}),
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
    assert_eq!(r["secondary_status"], "CUSTOMER_NAME_MISMATCH");
    assert_eq!(rig.customer_entities(&other).await, json!([]));

    // verifyAddress needs identity among the permissions.
    let r = refused(
        &rig,
        Script::V2,
        "verifyAddress",
        json!({"app_token": APP_TOKEN, "customer_id": other, "customer_name": "X", "permissions": ["accounts"], "sandbox": true}),
        WAIT,
    )
    .await;
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("needs \"identity\""),
        "{r}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn create_beneficiary_and_update_payment_source_add_a_destination_with_its_cool_off() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    // At the corporate bank, a new beneficiary cools off for 10 minutes.
    let corporate = rig.user("corporate_user");
    let customer = rig.customer().await;
    let source = rig.source_of(&customer, "corporate_user").await;
    rig.advance(Duration::from_secs(601));
    let destination = rig.destination("AE070331234567890123499").await;
    let options = json!({"app_token": APP_TOKEN, "customer_id": customer, "payment_source_id": source, "payment_destination_id": destination, "sandbox": true});
    rig.open(Script::V2, "createBeneficiary", options.clone())
        .await;
    rig.enter_link().await;
    // No bank list: the source's bank; only its own user may log in.
    rig.login(&corporate, &corporate.password).await;
    rig.after_login(&corporate).await;
    let r = rig.callback().await;
    assert_callback_shape(&r, Script::V2);
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(
        r["message"],
        "The beneficiary was added to the payment source."
    );
    assert_eq!(r["bank"]["bank_identifier"], corporate.bank.identifier);
    let created = rig
        .caught("payment_source.beneficiary.created", &destination)
        .await;
    assert_eq!(created.signature.name(), "valid");
    let body: Value = serde_json::from_str(created.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["payload"]["status"], "AWAITING_BENEFICIARY_COOL_OFF");
    assert_eq!(body["payload"]["payment_source_id"], source.as_str());
    let url = rig.proxy.url(&format!(
        "/customers/v1/{customer}/payment-sources/{source}"
    ));
    let shown = get(&rig.client, &url).await.json();
    assert_eq!(shown["status"], "AWAITING_BENEFICIARY_COOL_OFF", "{shown}");
    assert_eq!(shown["beneficiaries"].as_array().unwrap().len(), 2);
    rig.advance(Duration::from_secs(600));
    let updated = rig
        .caught("payment_source.beneficiary.updated", &destination)
        .await;
    let body: Value = serde_json::from_str(updated.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["payload"]["status"], "ACTIVE");
    assert_eq!(get(&rig.client, &url).await.json()["status"], "ACTIVE");

    // The same destination twice is refused before any screen.
    let r = refused(&rig, Script::V2, "createBeneficiary", options, WAIT).await;
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("is already a beneficiary"),
        "{r}"
    );

    // updatePaymentSource at a retail bank: active at once; another user
    // of the same bank cannot change this one's source.
    let owner = rig.user("no_otp_user");
    let stranger = rig.user("otp_user");
    let retail = rig.customer().await;
    let source = rig.source_of(&retail, "no_otp_user").await;
    rig.open(
        Script::Legacy,
        "updatePaymentSource",
        json!({"app_token": APP_TOKEN, "customer_id": retail, "payment_source_id": source, "payment_destination_id": destination, "sandbox": true}),
    )
    .await;
    rig.enter_link().await;
    rig.login(&stranger, &stranger.password).await;
    rig.error_shown("incorrect").await;
    rig.login(&owner, &owner.password).await;
    rig.screen("SUCCESS").await;
    rig.browser.click("[data-action=done]").await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["method"], "UPDATE_PAYMENT_SOURCE");
    assert_eq!(
        r["message"],
        "The payment source was updated with the new beneficiary."
    );
    rig.caught("payment_source.beneficiary.created", &destination)
        .await;
    let added: Vec<Value> = rig
        .proxy
        .webhooks
        .records()
        .into_iter()
        .filter(|w| {
            w.kind.as_deref() == Some("payment_source.beneficiary.created")
                && w.body.as_deref().is_some_and(|b| b.contains(&source))
        })
        .map(|w| serde_json::from_str(w.body.as_deref().unwrap()).unwrap())
        .collect();
    assert_eq!(
        added.len(),
        2,
        "the default destination's and the new one's"
    );
    let new = added
        .iter()
        .find(|w| w["payload"]["payment_destination_id"] == destination.as_str())
        .unwrap();
    assert_eq!(new["payload"]["status"], "ACTIVE");
    rig.stop().await;
}

#[tokio::test]
async fn checkout_creates_a_payment_source_of_the_account_and_pays_from_it() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("no_otp_user");
    let customer = rig.customer().await;
    let intent_id = rig.intent(&customer, 25).await;
    rig.open(
        Script::V2,
        "checkout",
        json!({"app_token": APP_TOKEN, "payment_intent_id": intent_id, "customer_name": "A Customer", "sandbox": true}),
    )
    .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, &user.password).await;
    rig.screen("ACCOUNT_SELECTION").await;
    let title = rig.browser.find("h1").await.text().await.unwrap();
    assert_eq!(title, "Pay AED 25.00");
    rig.browser
        .click(&format!(
            "input[name=account][value='{}']",
            user.accounts[1].id
        ))
        .await;
    rig.browser.click("#accounts button[type=submit]").await;
    rig.screen("SUCCESS").await;
    rig.browser.click("[data-action=done]").await;
    let r = rig.callback().await;
    assert_callback_shape(&r, Script::V2);
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(
        r["message"],
        "The payment source was created and the payment submitted to the bank."
    );
    let sources = get(
        &rig.client,
        &rig.proxy
            .url(&format!("/customers/v1/{customer}/payment-sources")),
    )
    .await
    .json();
    let sources = sources.as_array().unwrap();
    assert_eq!(sources.len(), 1);
    let accounts = sources[0]["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["account_id"], user.accounts[1].id.to_string());
    let by_intent = get(
        &rig.client,
        &rig.proxy.url(&format!("/payments/v1/intents/{intent_id}")),
    )
    .await
    .json();
    assert_eq!(
        by_intent["payments"][0]["payment_source_id"],
        sources[0]["id"]
    );
    rig.caught("payment_source.created", &customer).await;
    rig.caught("payment.created", &intent_id).await;
    rig.advance(Duration::from_secs(10));
    let updated = rig.caught("payment.updated", &intent_id).await;
    assert!(updated
        .body
        .as_deref()
        .unwrap()
        .contains("ACCEPTED_BY_BANK"));

    // The intent once more: refused, and no second payment source.
    rig.open(
        Script::Loader,
        "checkout",
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
    let sources = get(
        &rig.client,
        &rig.proxy
            .url(&format!("/customers/v1/{customer}/payment-sources")),
    )
    .await
    .json();
    assert_eq!(sources.as_array().unwrap().len(), 1, "{sources}");
    rig.stop().await;
}

#[tokio::test]
async fn manage_consents_lists_the_customers_consents_and_revokes_the_one_chosen() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("no_otp_user");
    let customer = rig.customer().await;
    let consent = |max: &'static str| {
        let (rig, customer) = (&rig, customer.clone());
        async move {
            rig.post(
                &rig.proxy.url("/consents/account-on-file"),
                json!({"customer_id": customer, "reference": format!("REF-{max}"), "control_parameters": {"max_individual_amount": max}}),
            )
            .await
            .json()["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let active = consent("500").await;
    let waiting = consent("80").await;
    let stale = consent("20").await;
    let authorised = rig
        .post(
            &format!("{}/_mockbank/consents/{active}/authorise", rig.mockbank()),
            json!({"username": user.username, "password": user.password}),
        )
        .await;
    assert_eq!(authorised.status, 200);

    rig.open(
        Script::V2,
        "manageConsents",
        json!({"app_token": APP_TOKEN, "customer_id": customer, "sandbox": true}),
    )
    .await;
    rig.enter_link().await;
    rig.screen("MANAGE_CONSENTS").await;
    let listed = rig
        .browser
        .eval(
            "return Array.from(document.querySelectorAll('#consents li')).map(li => li.dataset.status);",
            vec![],
        )
        .await;
    let mut listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "AUTHORISED",
            "AWAITING_AUTHORISATION",
            "AWAITING_AUTHORISATION"
        ]
    );
    rig.browser.screenshot("link-manage-consents").await;
    // One revoked behind the screen's back: the refusal is shown there and
    // the list is read afresh.
    rig.post(
        &format!("{}/_mockbank/consents/{stale}/reject", rig.mockbank()),
        json!({}),
    )
    .await;
    rig.browser
        .click(&format!(
            "button[data-action=revoke][data-consent='{stale}']"
        ))
        .await;
    rig.error_shown("REJECTED").await;
    rig.browser
        .find(&format!("li[data-consent='{stale}'][data-status=REJECTED]"))
        .await;
    rig.browser
        .click(&format!(
            "button[data-action=revoke][data-consent='{active}']"
        ))
        .await;
    rig.browser
        .find(&format!("li[data-consent='{active}'][data-status=REVOKED]"))
        .await;
    rig.browser.click("[data-action=done]").await;
    let r = rig.callback().await;
    assert_callback_shape(&r, Script::V2);
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["message"], "The user revoked consents.");
    let shown = |id: String| {
        let rig = &rig;
        async move {
            get(&rig.client, &rig.proxy.url(&format!("/consents/{id}")))
                .await
                .json()["status"]
                .clone()
        }
    };
    assert_eq!(shown(active.clone()).await, "REVOKED");
    assert_eq!(shown(waiting.clone()).await, "AWAITING_AUTHORISATION");

    // One consent by its id; closing is CANCELLED on that screen.
    rig.open(
        Script::Legacy,
        "manageConsents",
        json!({"app_token": APP_TOKEN, "customer_id": customer, "consent_id": waiting, "sandbox": true}),
    )
    .await;
    rig.enter_link().await;
    rig.screen("MANAGE_CONSENTS").await;
    let count = rig
        .browser
        .eval(
            "return document.querySelectorAll('#consents li').length;",
            vec![],
        )
        .await;
    assert_eq!(count, 1);
    rig.browser.click("[data-action=close]").await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "CANCELLED", "{r}");
    assert_eq!(r["exit_point"], "MANAGE_CONSENTS");
    assert_eq!(r["method"], "MANAGE_CONSENTS");

    // Another customer's consent is not shown.
    let stranger = rig.customer().await;
    let r = refused(
        &rig,
        Script::V2,
        "manageConsents",
        json!({"app_token": APP_TOKEN, "customer_id": stranger, "consent_id": waiting, "sandbox": true}),
        WAIT,
    )
    .await;
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("consent_id: no consent"),
        "{r}"
    );
    rig.stop().await;
}

#[tokio::test]
async fn a_flow_given_redirect_urls_leaves_the_page_and_capture_redirect_shows_its_outcome_once() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("no_otp_user");
    let customer = rig.customer().await;
    let consent = rig
        .post(
            &rig.proxy.url("/consents/account-on-file"),
            json!({"customer_id": customer, "control_parameters": {"max_individual_amount": "100"}}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let back = format!(
        "http://{}/?script={}{}&step=back",
        rig.site,
        rig.mockbank(),
        Script::V2.path()
    );
    rig.open(
        Script::V2,
        "authorizeConsent",
        json!({"app_token": APP_TOKEN, "consent_id": consent, "sandbox": true,
               "success_redirect_url": back, "fail_redirect_url": format!("http://{}/failed", rig.site)}),
    )
    .await;
    rig.enter_link().await;
    rig.browser
        .click(&format!("button[data-bank={}]", user.bank.identifier))
        .await;
    rig.login(&user, &user.password).await;
    rig.screen("ACCOUNT_SELECTION").await;
    rig.browser.click("#accounts button[type=submit]").await;
    rig.screen("SUCCESS").await;
    rig.browser.click("[data-action=done]").await;
    rig.browser.client.enter_parent_frame().await.unwrap();
    let (search, attempt) =
        redirected(&rig, "the redirect back to the app", "consent_attempt_id").await;
    assert!(search.contains("step=back"), "{search}");
    assert!(search.contains("status=SUCCESS"), "{search}");
    let details = get(&rig.client, &rig.proxy.url(&format!("/consents/{consent}")))
        .await
        .json();
    assert_eq!(details["status"], "AUTHORISED");

    // Back on the app's page: captureRedirect shows the outcome.
    let capture = json!({"app_token": APP_TOKEN, "customer_id": customer, "consent_attempt_id": attempt, "sandbox": true});
    rig.browser
        .eval(
            "const o = arguments[0]; o.callback = (r) => window.results.push(r); LeanV2.captureRedirect(o);",
            vec![capture.clone()],
        )
        .await;
    rig.enter_link().await;
    rig.screen("SUCCESS").await;
    rig.browser.click("[data-action=done]").await;
    let r = rig.callback().await;
    assert_callback_shape(&r, Script::V2);
    assert_eq!(r["status"], "SUCCESS", "{r}");
    assert_eq!(r["message"], "The consent was authorised.");
    assert_eq!(r["bank"]["bank_identifier"], user.bank.identifier);

    // Once only, and only for its customer.
    let r = refused(&rig, Script::V2, "captureRedirect", capture, WAIT).await;
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("was captured already"),
        "{r}"
    );
    let r = refused(
        &rig,
        Script::V2,
        "captureRedirect",
        json!({"app_token": APP_TOKEN, "customer_id": customer, "consent_attempt_id": uuid::Uuid::new_v4(), "sandbox": true}),
        WAIT,
    )
    .await;
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .starts_with("consent_attempt_id: no redirect"),
        "{r}"
    );

    // A flow that fails goes to fail_redirect_url; its capture goes
    // straight to the callback.
    let failed = back.replace("step=back", "step=failed");
    let other = rig
        .post(
            &rig.proxy.url("/consents/account-on-file"),
            json!({"customer_id": customer, "control_parameters": {"max_individual_amount": "100"}}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    rig.open(
        Script::V2,
        "authorizeConsent",
        json!({"app_token": APP_TOKEN, "consent_id": other, "sandbox": true,
               "success_redirect_url": back, "fail_redirect_url": failed}),
    )
    .await;
    rig.enter_link().await;
    rig.screen("BANK_LIST").await;
    rig.browser.click("[data-action=close]").await;
    rig.browser.client.enter_parent_frame().await.unwrap();
    let (search, attempt) =
        redirected(&rig, "the redirect to fail_redirect_url", "step=failed").await;
    assert!(search.contains("status=CANCELLED"), "{search}");
    rig.browser
        .eval(
            "const o = arguments[0]; o.callback = (r) => window.results.push(r); LeanV2.captureRedirect(o);",
            vec![json!({"app_token": APP_TOKEN, "customer_id": customer, "consent_attempt_id": attempt, "sandbox": true})],
        )
        .await;
    let r = rig.callback().await;
    assert_eq!(r["status"], "CANCELLED", "{r}");
    assert_eq!(r["exit_point"], "BANK_LIST");
    rig.stop().await;
}

#[tokio::test]
async fn the_hosted_page_adds_a_beneficiary_and_ends_in_a_leanlink_url() {
    let Some(rig) = Rig::start().await else {
        return;
    };
    let user = rig.user("no_otp_user");
    let customer = rig.customer().await;
    let source = rig.source_of(&customer, "no_otp_user").await;
    let destination = rig.destination("AE070331234567890123477").await;
    let url = format!(
        "{}/link/loader/prod/ae/latest/lean-sdk.html?implementation=webview-hosted-html\
         &app_token={APP_TOKEN}&sandbox=true&language=en&method=createBeneficiary\
         &customer_id={customer}&payment_source_id={source}&payment_destination_id={destination}",
        rig.mockbank()
    );
    rig.browser.client.goto(&url).await.unwrap();
    // Straight to the login at the source's bank.
    rig.login(&user, &user.password).await;
    rig.screen("SUCCESS").await;
    rig.browser.click("[data-action=done]").await;
    let href = rig
        .browser
        .find("#leanlink")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(href.starts_with("leanlink://success?"), "{href}");
    assert!(href.contains(&format!("bank_identifier={}", user.bank.identifier)));
    let created = rig
        .caught("payment_source.beneficiary.created", &destination)
        .await;
    assert_eq!(created.signature.name(), "valid");
    rig.stop().await;
}

/// Waits until the app's page was redirected back with `marker` in its query
/// (the LeanV2 script loaded again): the query and its `consent_attempt_id`.
async fn redirected(rig: &Rig, what: &str, marker: &str) -> (String, String) {
    let script = format!(
        "return location.search.includes('{marker}') && window.LeanV2 ? location.search : null;"
    );
    let search = rig.browser.wait_for(what, &script).await;
    let search = search.as_str().unwrap().to_string();
    let attempt = search
        .split('&')
        .find_map(|kv| kv.strip_prefix("consent_attempt_id="))
        .unwrap()
        .to_string();
    (search, attempt)
}
