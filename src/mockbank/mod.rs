//! The embedded Mockbank: an offline emulation of Lean's sandbox, UAE's or
//! KSA's ([`Region`], `mockbank.region`; what differs is in `region.rs`).
//!
//! It answers Lean's API (customers, entities, banks, v1 and v2 data, results,
//! refreshes, verifications, insights, `/oauth2/token`) with the shapes
//! recorded from Lean, for five seeded test users with distinct login
//! behaviours. Sessions expire like the sandbox's
//! (inactivity, corporate session length, "Expire session"), data calls then
//! answer `RECONNECT_REQUIRED`, and a reconnect with OTP `1111` sends the signed
//! `entity.reconnected` and `results.ready` webhooks. All timing reads one
//! [`Clock`] that tests pause and advance.
//!
//! Control API (no credentials; a [`Guard`], as on the admin listener,
//! refuses foreign `Host` names and state changes from other sites' pages;
//! calls through the proxy arrive with the Mockbank's own Host and the app's
//! `Origin`, if any):
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/_mockbank/users` | test users: usernames, passwords, behaviours, accounts |
//! | POST | `/_mockbank/link/connect` | `{customer_id or app_user_id, username, password, otp}` → entity |
//! | POST | `/_mockbank/link/reconnect` | `{reconnect_id, otp}` → session restored, webhooks sent |
//! | GET | `/_mockbank/entities` | linked entities, their test user and session state |
//! | POST | `/_mockbank/entities/{entity_id}/expire` | "Expire session" |
//! | POST | `/_mockbank/entities/{entity_id}/consent/expire` | the consent expires: `CONSENT_EXPIRED` until linked again |
//! | POST | `/_mockbank/banks/{bank_identifier}/down`, `/up` | maintenance on or off, with `bank.availability.updated` |
//! | GET | `/_mockbank/clock` | the Mockbank time |
//! | POST | `/_mockbank/clock/advance` | `{"seconds": N}` |
//! | POST | `/_mockbank/clock/pause`, `/_mockbank/clock/resume` | stop / restart the clock |
//! | GET | `/_mockbank/webhooks` | webhooks sent and their delivery state |
//! | POST | `/_mockbank/payment-sources` | `{customer_id, username, password, otp, account_ids?}`: a payment source |
//! | POST | `/_mockbank/consents/{id}/authorise` | `{username, password, otp, account_id?}`: the customer authorises an Account-on-File consent |
//! | POST | `/_mockbank/consents/{id}/reject`, `/revoke`, `/expire` | the consent's other endings |
//! | POST | `/_mockbank/payments` | `{payment_intent_id, username, password, otp, account_id?}`: a test user pays an intent |
//! | POST | `/_mockbank/payouts/{payment_intent_id}/authorise`, `/reject` | the app decides a payout sent without `authorize_payment: true` |
//! | GET | `/_mockbank/link/defaults` | what the boilerplate page starts from (built-in app token, OTP, users) |
//! | POST | `/_mockbank/link/customer` | a new customer and a customer-scoped token for it |
//! | POST | `/_mockbank/link/intent` | `{customer_id, amount}`: a payment intent in AED to the default destination (for the boilerplate's `pay`) |
//!
//! `/_mockbank/link/connect` also takes `permissions` (Lean's names; default:
//! all) and `account_ids` (the accounts shared; default: all of them).
//!
//! Link in the browser (LinkSDK's scripts, the Link screens, the hosted page
//! for mobile WebViews, the boilerplate page at `/`) is in `src/mockbank/link/`.
//! | POST | `/_mockbank/oauth/revoke` | revokes every OAuth token it issued |

mod api;
pub mod clock;
mod insights;
mod link;
mod payments;
pub mod region;
mod shapes;
mod state;
pub mod users;
mod webhooks;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, Uri};

pub use clock::Clock;
pub use region::Region;
pub use users::{Behaviour, TestUser, OTP};
pub use webhooks::Delivery;

use crate::admin::Guard;
use crate::body::{self, Body};
use crate::client::TlsError;
use crate::lean::ErrorEnvelope;
use crate::secret::Secret;
use api::{Call, Reply};
use state::{State, Timing};
use webhooks::WebhookSender;

/// Largest request body the Mockbank reads (its calls are small JSON).
const MAX_BODY: usize = 1 << 20;

/// Validated Mockbank settings.
#[derive(Debug, Clone)]
pub struct MockbankSettings {
    /// Listener address.
    pub listen: SocketAddr,
    /// Which of Lean's sandboxes it emulates (`mockbank.region`).
    pub region: Region,
    /// Seed of the test users.
    pub seed: u64,
    /// OTP users are de-authenticated after this long without a data call.
    pub inactivity: Duration,
    /// Corporate sessions last this long after (re)connecting.
    pub corporate_session: Duration,
    /// Mockbank seconds per real second.
    pub time_scale: f64,
    /// The `lean-app-token` it accepts.
    pub app_token: Secret,
    /// OAuth client id it accepts.
    pub client_id: String,
    /// OAuth client secret it accepts.
    pub client_secret: Secret,
    /// Where webhooks go (none: recorded only).
    pub webhook_url: Option<Uri>,
    /// Key of the webhook signatures.
    pub webhook_secret: Secret,
    /// How long `async=true` results take.
    pub async_delay: Duration,
    /// How long a data refresh stays pending.
    pub refresh_duration: Duration,
    /// Pages (origins) that may open Link; empty: any loopback origin.
    pub link_origins: Vec<String>,
}

/// The Mockbank service. Cheap to clone.
#[derive(Clone)]
pub struct Mockbank {
    inner: Arc<MockbankCore>,
    /// Checks the control endpoints' requests.
    guard: Guard,
}

struct MockbankCore {
    settings: MockbankSettings,
    clock: Clock,
    timing: Timing,
    users: Vec<TestUser>,
    state: Mutex<State>,
    webhooks: WebhookSender,
    link_sessions: link::Sessions,
}

impl Mockbank {
    /// A Mockbank on `clock`. Needs a Tokio runtime (webhooks are delivered by a
    /// background task); fails only if the TLS roots for https webhook URLs
    /// cannot be set up.
    pub fn new(settings: MockbankSettings, clock: Clock) -> Result<Self, TlsError> {
        let region = settings.region;
        let users = users::test_users(settings.seed, clock.now().date_naive(), region);
        let webhooks = WebhookSender::new(
            settings.webhook_url.clone(),
            settings.webhook_secret.clone(),
            clock.clone(),
        )?;
        Ok(Self {
            inner: Arc::new(MockbankCore {
                timing: Timing {
                    inactivity: settings.inactivity,
                    corporate_session: settings.corporate_session,
                },
                settings,
                clock,
                users,
                state: Mutex::new(State::new(region)),
                webhooks,
                link_sessions: link::Sessions::default(),
            }),
            guard: Guard::default(),
        })
    }

    /// Checks the Host and Origin of requests to `/_mockbank/…` with `guard`
    /// (by default, one that knows no names beyond the listener's own). The
    /// Lean-compatible API is not affected: apps call it by any name.
    pub fn with_guard(mut self, guard: Guard) -> Self {
        self.guard = guard;
        self
    }

    /// The Mockbank clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The test users.
    pub fn users(&self) -> &[TestUser] {
        &self.inner.users
    }

    /// Sends webhooks to `url` from now on (leanproxy points its embedded Mockbank
    /// at its own webhook listener unless `mockbank.webhook_url` is set).
    pub fn set_webhook_url(&self, url: Uri) {
        self.inner.webhooks.set_url(url);
    }

    /// The OAuth2 client credentials it accepts: leanproxy mints tokens with
    /// them (customer tokens for the LinkSDK) when none are configured.
    pub fn client_credentials(&self) -> (String, Secret) {
        let s = &self.inner.settings;
        (s.client_id.clone(), s.client_secret.clone())
    }

    /// OAuth tokens issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tokens_issued
    }

    /// Webhooks sent so far and their delivery state.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.webhooks.deliveries()
    }

    /// What to print at startup: the URL, the credentials it accepts, where its
    /// webhooks go (`webhooks_to`: the configured `webhook_url`, or the catcher
    /// leanproxy points it at), its timing and the users. The built-in
    /// credentials are shown; configured ones (`LEAN_APP_TOKEN` included) are
    /// not, as they may be real secrets.
    pub fn banner(&self, url: &str, webhooks_to: Option<&Uri>) -> String {
        let s = &self.inner.settings;
        let scale = if s.time_scale == 1.0 {
            "real time".to_string()
        } else {
            format!(
                "time_scale {} (a Mockbank minute lasts {})",
                s.time_scale,
                humantime::format_duration(Duration::from_secs_f64(60.0 / s.time_scale))
            )
        };
        let (sandbox, path) = match s.region {
            Region::Uae => ("UAE", "ae"),
            Region::Ksa => ("KSA", "sa"),
        };
        let mut text = format!(
            "Mockbank (offline Lean {sandbox} sandbox, {} and {}) on {url}\n  \
             Link in the browser: open {url}/ (LinkSDK boilerplate); scripts: \
             {url}/link/sdk/web/v2/prod/{path}/latest/Lean.min.js (LeanV2), \
             {url}/link/loader/prod/{path}/latest/lean-link-loader.min.js (Lean)\n  \
             lean-app-token: {}\n  \
             OAuth: POST {url}/oauth2/token client_id={} client_secret={}\n  \
             webhooks: {} (signed with {})\n  \
             inactivity: {}, corporate session: {}, {scale}, OTP: {OTP}\n  \
             test users (GET {url}/_mockbank/users):\n",
            s.region.currency(),
            s.region.mock_bank().identifier,
            shown(
                &s.app_token,
                DEFAULT_APP_TOKEN,
                "auth.app_token / LEAN_APP_TOKEN"
            ),
            s.client_id,
            shown(
                &s.client_secret,
                DEFAULT_CLIENT_SECRET,
                "mockbank.client_secret"
            ),
            webhooks_to.map_or(
                "recorded, not sent (no mockbank.webhook_url)".to_string(),
                |u| format!("sent to {u}")
            ),
            shown(
                &s.webhook_secret,
                DEFAULT_WEBHOOK_SECRET,
                "mockbank.webhook_secret"
            ),
            humantime::format_duration(s.inactivity),
            humantime::format_duration(s.corporate_session),
        );
        for u in &self.inner.users {
            text.push_str(&format!(
                "    {:<20} password {:<10} {}\n",
                u.username,
                u.password,
                u.behaviour.description()
            ));
        }
        text
    }

    /// The region it emulates.
    pub fn region(&self) -> Region {
        self.inner.settings.region
    }

    /// Where its webhooks go when configured (`mockbank.webhook_url`).
    pub fn webhook_url(&self) -> Option<Uri> {
        self.inner.settings.webhook_url.clone()
    }
}

impl std::fmt::Debug for Mockbank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mockbank")
            .field("users", &self.inner.users.len())
            .finish_non_exhaustive()
    }
}

/// The built-in `lean-app-token` of the Mockbank.
pub const DEFAULT_APP_TOKEN: &str = "mockbank-app-token";
/// The built-in OAuth2 client id of the Mockbank.
pub const DEFAULT_CLIENT_ID: &str = "mockbank-client-id";
/// The built-in OAuth2 client secret of the Mockbank.
pub const DEFAULT_CLIENT_SECRET: &str = "mockbank-client-secret";
/// The built-in webhook signing key of the Mockbank.
pub const DEFAULT_WEBHOOK_SECRET: &str = "mockbank-webhook-secret";

/// A credential for the banner: the built-in one in clear, any other by the
/// key it was configured with.
fn shown(secret: &Secret, default: &str, key: &str) -> String {
    if secret.expose() == default {
        default.to_string()
    } else {
        format!("the configured {key} (not shown)")
    }
}

impl tower::Service<Request<Body>> for Mockbank {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let control = req.uri().path().split('/').find(|s| !s.is_empty()) == Some("_mockbank");
        if control {
            if let Some(refused) = self.guard.check(&req, "Mockbank") {
                return Box::pin(std::future::ready(Ok(refused)));
            }
        }
        let inner = self.inner.clone();
        Box::pin(async move { Ok(inner.handle(req).await) })
    }
}

impl MockbankCore {
    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = match body::read_limited(body, MAX_BODY).await {
            Ok(bytes) => bytes,
            Err(e) => {
                return respond(Reply {
                    status: http::StatusCode::PAYLOAD_TOO_LARGE,
                    body: serde_json::to_value(ErrorEnvelope::new(
                        "INVALID_PARAMETERS",
                        format!("The request body could not be read: {e}."),
                    ))
                    .unwrap_or_default()
                    .into(),
                })
            }
        };
        let query = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        if let Some(answer) = self.link(
            &parts.method,
            parts.uri.path(),
            &query,
            &parts.headers,
            &bytes,
        ) {
            return answer;
        }
        let call = Call {
            method: &parts.method,
            path: parts.uri.path(),
            query,
            headers: &parts.headers,
            body: &bytes,
        };
        let reply = self.route(&call);
        tracing::debug!(target: "leanproxy::mockbank", method = %parts.method, path = %parts.uri.path(), status = reply.status.as_u16(), "mockbank answer");
        respond(reply)
    }
}

fn respond(reply: Reply) -> Response<Body> {
    let mut response = Response::new(body::full(reply.body.into_bytes()));
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    api::lean_headers(headers);
    response
}
