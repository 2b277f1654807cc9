//! A Link session: one run of the Link screens for one LinkSDK method,
//! from the configuration the SDK was called with to the callback object it
//! ends with. The screens' rules live here, free of HTTP and of the page: the
//! page shows [`Session::view`] and sends each step; what the app's callback
//! receives is built here too, so the three script generations and the hosted
//! page agree.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{Generation, Region};
use crate::mockbank::state::Customer;
use crate::mockbank::users::{Bank, TestUser, OTP};

/// Wrong passwords, and wrong one-time codes, a session accepts before it ends.
pub(super) const ATTEMPTS: u32 = 3;
/// An unfinished session is forgotten after this long.
pub(super) const SESSION_LIFETIME: Duration = Duration::from_secs(3600);

/// What the SDK was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Connect,
    /// The legacy bundle's name for `connect`.
    Link,
    Reconnect,
    /// Pay a payment intent from one of the user's accounts.
    Pay,
    /// Pre-authorise accounts for payments (a payment source).
    CreatePaymentSource,
    /// Add a destination as a beneficiary of a payment source.
    UpdatePaymentSource,
    /// The same, by its newer name.
    CreateBeneficiary,
    /// Create a payment source from one account and pay an intent from it.
    Checkout,
    /// Authorise an Account-on-File consent from one account.
    AuthorizeConsent,
    /// See the customer's Account-on-File consents and revoke them.
    ManageConsents,
    /// Proof of address: link the account holder whose name is given.
    VerifyAddress,
    /// Show the outcome of a flow that ended by redirecting the page.
    CaptureRedirect,
}

impl Method {
    /// The SDK's name of the method.
    pub(super) fn name(self) -> &'static str {
        match self {
            Method::Connect => "connect",
            Method::Link => "link",
            Method::Reconnect => "reconnect",
            Method::Pay => "pay",
            Method::CreatePaymentSource => "createPaymentSource",
            Method::UpdatePaymentSource => "updatePaymentSource",
            Method::CreateBeneficiary => "createBeneficiary",
            Method::Checkout => "checkout",
            Method::AuthorizeConsent => "authorizeConsent",
            Method::ManageConsents => "manageConsents",
            Method::VerifyAddress => "verifyAddress",
            Method::CaptureRedirect => "captureRedirect",
        }
    }

    /// The method from the SDK's name.
    pub(super) fn parse(name: &str) -> Option<Self> {
        const ALL: [Method; 12] = [
            Method::Connect,
            Method::Link,
            Method::Reconnect,
            Method::Pay,
            Method::CreatePaymentSource,
            Method::UpdatePaymentSource,
            Method::CreateBeneficiary,
            Method::Checkout,
            Method::AuthorizeConsent,
            Method::ManageConsents,
            Method::VerifyAddress,
            Method::CaptureRedirect,
        ];
        ALL.into_iter().find(|m| m.name() == name)
    }

    /// The legacy bundle's `method`: the name in upper snake case.
    fn legacy_name(self) -> String {
        let mut out = String::new();
        for c in self.name().chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    /// Whether the user chooses the one account the flow uses.
    fn single_account(self) -> bool {
        matches!(
            self,
            Method::Pay | Method::Checkout | Method::AuthorizeConsent
        )
    }
}

/// The screens, by the names the callback's `exit_point` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum Screen {
    BankList,
    Consent,
    Login,
    Otp,
    AccountSelection,
    /// `manageConsents`: the customer's consents, each revocable.
    ManageConsents,
    Success,
}

/// A recoverable failure on a screen: shown there, and reported as the
/// callback's `secondary_status` if the user then leaves.
#[derive(Debug, Clone, Serialize)]
pub(super) struct StepError {
    pub(super) secondary_status: &'static str,
    pub(super) message: String,
}

/// Everything a session was opened with, once validated.
#[derive(Debug, Clone)]
pub(super) struct Opening {
    pub(super) method: Method,
    pub(super) generation: Generation,
    pub(super) region: Region,
    pub(super) arabic: bool,
    pub(super) customization: BTreeMap<String, String>,
    pub(super) origin: Option<String>,
    pub(super) customer: Option<Customer>,
    pub(super) permissions: Vec<String>,
    pub(super) account_type: Option<String>,
    pub(super) consent_screen: bool,
    pub(super) bank: Option<&'static Bank>,
    /// Reconnect: the id and the test user who must log in.
    pub(super) reconnect: Option<(Uuid, usize)>,
    /// Pay: the intent, and what the confirm button says it pays
    /// (`AED 40.00 to Mockbank Merchant`).
    pub(super) payment: Option<(Uuid, Value)>,
    /// AuthorizeConsent: the consent; manageConsents: the one to show.
    pub(super) consent: Option<Uuid>,
    /// updatePaymentSource, createBeneficiary: the payment source, the
    /// destination to add, and the test user whose source it is.
    pub(super) beneficiary: Option<(Uuid, Uuid, usize)>,
    /// verifyAddress: the name the account holder must have.
    pub(super) customer_name: Option<String>,
    /// `success_redirect_url`, `fail_redirect_url`: where the page goes
    /// instead of the callback.
    pub(super) redirects: (Option<String>, Option<String>),
    /// captureRedirect: the outcome of the flow that redirected.
    pub(super) captured: Option<Value>,
}

/// One run of the Link screens.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) id: Uuid,
    pub(super) correlation: Uuid,
    pub(super) opening: Opening,
    pub(super) opened: Duration,
    pub(super) screen: Screen,
    pub(super) bank: Option<&'static Bank>,
    pub(super) user: Option<usize>,
    pub(super) password_attempts: u32,
    pub(super) otp_attempts: u32,
    pub(super) error: Option<StepError>,
    /// The callback object, once the flow has an outcome.
    pub(super) result: Option<Value>,
    /// The `consent_attempt_id` a redirect carries, for `captureRedirect`.
    pub(super) attempt: Uuid,
    /// Whether `captureRedirect` has shown this session's outcome.
    pub(super) captured: bool,
    /// `manageConsents`: the consents the user revoked.
    pub(super) revoked: u32,
}

/// What a step asks the Mockbank to do once the screens are through.
pub(super) enum Effect {
    /// Nothing beyond the session.
    None,
    /// Link the user's bank with these accounts (`None`: all).
    Link {
        user: usize,
        accounts: Option<Vec<Uuid>>,
    },
    /// Complete the reconnect.
    Reconnect(Uuid),
    /// Pay the intent from this account of the user's.
    Pay {
        intent: Uuid,
        user: usize,
        account: Uuid,
    },
    /// Authorise the consent for this account of the user's.
    Authorize {
        consent: Uuid,
        user: usize,
        account: Uuid,
    },
    /// A payment source of this account, then the intent paid from it.
    Checkout {
        intent: Uuid,
        user: usize,
        account: Uuid,
    },
    /// Add the destination as a beneficiary of the payment source.
    Beneficiary { source: Uuid, destination: Uuid },
    /// Revoke the customer's consent.
    Revoke(Uuid),
}

impl Session {
    pub(super) fn new(opening: Opening, opened: Duration) -> Self {
        let bank = opening.bank;
        let screen = match (opening.method, bank, opening.consent_screen) {
            (Method::ManageConsents, _, _) => Screen::ManageConsents,
            // A captured success shows its success screen; any other
            // outcome goes straight to the callback.
            (Method::CaptureRedirect, _, _) => match opening
                .captured
                .as_ref()
                .and_then(|r| r.get("status"))
                .and_then(Value::as_str)
            {
                Some("SUCCESS") => Screen::Success,
                _ => Screen::Login,
            },
            (_, None, _) => Screen::BankList,
            (_, Some(_), true) => Screen::Consent,
            (_, Some(_), false) => Screen::Login,
        };
        let result = opening.captured.clone();
        Self {
            id: Uuid::new_v4(),
            correlation: Uuid::new_v4(),
            opening,
            opened,
            screen,
            bank,
            user: None,
            password_attempts: 0,
            otp_attempts: 0,
            error: None,
            result,
            attempt: Uuid::new_v4(),
            captured: false,
            revoked: 0,
        }
    }

    /// The banks the bank list offers: the script's region's (`/sa/`: KSA's),
    /// narrowed by `account_type` when the SDK was given one.
    pub(super) fn banks(&self) -> impl Iterator<Item = &'static Bank> + '_ {
        let banks = crate::mockbank::Region::of_link(self.opening.region).banks();
        banks.iter().filter(move |b| {
            self.opening
                .account_type
                .as_deref()
                .is_none_or(|t| b.account_type == t)
        })
    }

    /// What the page shows now; `down`: the banks under maintenance.
    pub(super) fn view(&self, users: &[TestUser], down: &BTreeSet<&'static str>) -> Value {
        let o = &self.opening;
        let accounts: Vec<Value> = match (self.screen, self.user) {
            (Screen::AccountSelection, Some(u)) => users[u]
                .accounts
                .iter()
                .map(|a| {
                    json!({
                        "id": a.id,
                        "name": a.name(&users[u]),
                        "type": a.sub_type.v2(),
                        "currency": a.currency,
                        "number": format!("•••• {}", &a.number[a.number.len().saturating_sub(4)..]),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        let attempts_left = match self.screen {
            Screen::Login => Some(ATTEMPTS - self.password_attempts),
            Screen::Otp => Some(ATTEMPTS - self.otp_attempts),
            _ => None,
        };
        json!({
            "session_id": self.id,
            "method": o.method.name(),
            "single_account": o.method.single_account(),
            "payment": o.payment.as_ref().map(|(_, shown)| shown),
            "language": if o.arabic { "ar" } else { "en" },
            "customization": o.customization,
            "hosted": o.generation == Generation::Hosted,
            "origin": o.origin,
            "screen": self.screen,
            "banks": self.banks().map(|b| bank_json(b, down)).collect::<Vec<_>>(),
            "bank": self.bank.map(|b| bank_json(b, down)),
            "permissions": o.permissions,
            "accounts": accounts,
            "attempts_left": attempts_left,
            "otp_hint": OTP,
            "error": self.error,
            "result": self.result,
            "redirect": self.redirect(),
        })
    }

    /// Where the page goes once the flow is over, when the SDK was given
    /// the redirect URL for its outcome: the URL with `consent_attempt_id`
    /// and `status` added.
    pub(super) fn redirect(&self) -> Option<String> {
        let result = self.result.as_ref()?;
        let status = result.get("status").and_then(Value::as_str)?;
        let (success, fail) = &self.opening.redirects;
        let base = if status == "SUCCESS" { success } else { fail };
        let base = base.as_deref()?;
        let join = if base.contains('?') { '&' } else { '?' };
        Some(format!(
            "{base}{join}consent_attempt_id={}&status={status}",
            self.attempt
        ))
    }

    /// Applies one step from the page. `Err` is a step the session cannot
    /// take in its state (a message for the page, not a user error).
    pub(super) fn step(&mut self, step: &Value, users: &[TestUser]) -> Result<Effect, String> {
        if self.result.is_some() && self.screen != Screen::Success {
            return Err("this Link session has ended".into());
        }
        let action = step.get("action").and_then(Value::as_str).unwrap_or("");
        let text = |k: &str| step.get(k).and_then(Value::as_str).unwrap_or("");
        match (action, self.screen) {
            ("close", screen) | ("done", screen @ Screen::Success) => {
                if self.result.is_none() {
                    let secondary = self.error.as_ref().map(|e| e.secondary_status);
                    self.end(
                        "CANCELLED",
                        "The user closed Link.",
                        secondary,
                        Some(screen),
                        true,
                    );
                }
                Ok(Effect::None)
            }
            ("bank", Screen::BankList) => {
                let wanted = text("bank_identifier");
                let bank = self
                    .banks()
                    .find(|b| b.identifier == wanted)
                    .ok_or_else(|| format!("{wanted} is not in the bank list"))?;
                self.bank = Some(bank);
                self.error = None;
                self.screen = if self.opening.consent_screen {
                    Screen::Consent
                } else {
                    Screen::Login
                };
                Ok(Effect::None)
            }
            ("bank_not_listed", Screen::BankList) => {
                self.end(
                    "CANCELLED",
                    "The user's bank is not listed.",
                    None,
                    Some(Screen::BankList),
                    false,
                );
                Ok(Effect::None)
            }
            ("done", Screen::ManageConsents) => {
                self.succeeded();
                Ok(Effect::None)
            }
            ("revoke", Screen::ManageConsents) => {
                let id = Uuid::parse_str(text("consent_id"))
                    .map_err(|_| "give the consent_id to revoke".to_string())?;
                Ok(Effect::Revoke(id))
            }
            ("consent", Screen::Consent) => {
                self.screen = Screen::Login;
                Ok(Effect::None)
            }
            ("login", Screen::Login) => Ok(self.login(text("username"), text("password"), users)),
            ("otp", Screen::Otp) => Ok(self.otp(text("otp"), users)),
            ("accounts", Screen::AccountSelection) => {
                let user = self.user.ok_or("no user has logged in")?;
                let own = &users[user].accounts;
                let chosen: Vec<Uuid> = step
                    .get("account_ids")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().and_then(|v| Uuid::parse_str(v).ok()))
                    .filter(|id| own.iter().any(|a| a.id == *id))
                    .collect();
                if chosen.is_empty() {
                    self.error = Some(StepError {
                        secondary_status: "NO_ACCOUNTS_SELECTED",
                        message: "Choose at least one account to share.".into(),
                    });
                    return Ok(Effect::None);
                }
                // A payment or a consent uses one account: the first chosen.
                let account = chosen[0];
                match (
                    self.opening.method,
                    &self.opening.payment,
                    self.opening.consent,
                ) {
                    (Method::AuthorizeConsent, _, Some(consent)) => Ok(Effect::Authorize {
                        consent,
                        user,
                        account,
                    }),
                    (Method::Pay, Some((intent, _)), _) => Ok(Effect::Pay {
                        intent: *intent,
                        user,
                        account,
                    }),
                    (Method::Checkout, Some((intent, _)), _) => Ok(Effect::Checkout {
                        intent: *intent,
                        user,
                        account,
                    }),
                    _ => Ok(Effect::Link {
                        user,
                        accounts: Some(chosen),
                    }),
                }
            }
            (action, screen) => Err(format!(
                "the step {action:?} does not belong on the {} screen",
                serde_json::to_value(screen).unwrap_or_default()
            )),
        }
    }

    fn login(&mut self, username: &str, password: &str, users: &[TestUser]) -> Effect {
        let bank = self.bank.map(|b| b.identifier);
        let found = users
            .iter()
            .position(|u| {
                u.username == username && u.password == password && Some(u.bank.identifier) == bank
            })
            // A reconnect re-authenticates the entity's own user; a payment
            // source is changed by its own.
            .filter(|p| self.opening.reconnect.is_none_or(|(_, who)| who == *p))
            .filter(|p| self.opening.beneficiary.is_none_or(|(_, _, who)| who == *p));
        let Some(user) = found else {
            self.password_attempts += 1;
            if self.password_attempts >= ATTEMPTS {
                self.end(
                    "ERROR",
                    "The username or password was incorrect too many times.",
                    Some("INVALID_CREDENTIALS"),
                    Some(Screen::Login),
                    false,
                );
            } else {
                self.error = Some(StepError {
                    secondary_status: "INVALID_CREDENTIALS",
                    message: "The username or password is incorrect.".into(),
                });
            }
            return Effect::None;
        };
        self.user = Some(user);
        self.error = None;
        if users[user].behaviour.needs_otp() {
            self.screen = Screen::Otp;
            Effect::None
        } else {
            self.authenticated(user, users)
        }
    }

    fn otp(&mut self, otp: &str, users: &[TestUser]) -> Effect {
        let Some(user) = self.user else {
            return Effect::None;
        };
        if otp == OTP {
            self.error = None;
            return self.authenticated(user, users);
        }
        self.otp_attempts += 1;
        if self.otp_attempts >= ATTEMPTS {
            self.end(
                "ERROR",
                "The one-time code was incorrect too many times.",
                Some("MFA_ATTEMPTS_EXHAUSTED"),
                Some(Screen::Otp),
                false,
            );
        } else {
            self.error = Some(StepError {
                secondary_status: "INVALID_MFA",
                message: "The one-time code is incorrect.".into(),
            });
        }
        Effect::None
    }

    /// The user is through login (and OTP): choose accounts, or finish.
    fn authenticated(&mut self, user: usize, users: &[TestUser]) -> Effect {
        if self.opening.method.single_account() {
            // The account to pay from, even when the user has one.
            self.screen = Screen::AccountSelection;
            return Effect::None;
        }
        if let Some((source, destination, _)) = self.opening.beneficiary {
            return Effect::Beneficiary {
                source,
                destination,
            };
        }
        match self.opening.reconnect {
            Some((reconnect_id, _)) => Effect::Reconnect(reconnect_id),
            None if users[user].accounts.len() > 1 => {
                self.screen = Screen::AccountSelection;
                Effect::None
            }
            None => Effect::Link {
                user,
                accounts: None,
            },
        }
    }

    /// The effect happened: the flow succeeded.
    pub(super) fn succeeded(&mut self) {
        let message = match self.opening.method {
            Method::Connect | Method::Link => "The bank account was connected successfully.",
            Method::Reconnect => "The bank account was reconnected successfully.",
            Method::Pay => "The payment was submitted to the bank.",
            Method::CreatePaymentSource => "The payment source was created.",
            Method::UpdatePaymentSource => {
                "The payment source was updated with the new beneficiary."
            }
            Method::CreateBeneficiary => "The beneficiary was added to the payment source.",
            Method::Checkout => {
                "The payment source was created and the payment submitted to the bank."
            }
            Method::AuthorizeConsent => "The consent was authorised.",
            Method::ManageConsents if self.revoked > 0 => "The user revoked consents.",
            Method::ManageConsents => "The user reviewed their consents.",
            Method::VerifyAddress => "The address was verified.",
            Method::CaptureRedirect => "The redirect was captured.",
        };
        self.error = None;
        self.screen = Screen::Success;
        self.end("SUCCESS", message, Some("OK"), Some(Screen::Success), true);
    }

    /// The flow cannot succeed for a reason of the user's (not a refusal
    /// of the Mockbank's): `ERROR` with `secondary_status`.
    pub(super) fn refused(&mut self, message: &str, secondary: &str) {
        let screen = self.screen;
        self.end("ERROR", message, Some(secondary), Some(screen), true);
    }

    /// The effect failed (the Mockbank refused it): the flow ends in `ERROR`
    /// with the Mockbank's answer as `last_api_response`.
    pub(super) fn failed(&mut self, answer: &Value) {
        let message = answer
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("The Mockbank refused the request.")
            .to_string();
        let screen = self.screen;
        self.end("ERROR", &message, Some("FAILED"), Some(screen), true);
        if let Some(result) = self.result.as_mut() {
            result["last_api_response"] = json!(answer.to_string());
        }
    }

    fn end(
        &mut self,
        status: &str,
        message: &str,
        secondary: Option<&str>,
        exit_point: Option<Screen>,
        supported: bool,
    ) {
        let bank = match (self.bank, supported) {
            (Some(b), _) => json!({"bank_identifier": b.identifier, "is_supported": true}),
            (None, false) => json!({"bank_identifier": null, "is_supported": false}),
            (None, true) => json!({"bank_identifier": null, "is_supported": true}),
        };
        let last = self
            .error
            .as_ref()
            .map(|e| json!({"status": e.secondary_status, "message": e.message}).to_string());
        self.result = Some(callback(
            &self.opening,
            self.correlation,
            Outcome {
                status,
                message,
                secondary,
                exit_point,
                bank,
                last_api_response: last,
            },
        ));
    }
}

/// A bank as the page lists it.
fn bank_json(b: &'static Bank, down: &BTreeSet<&'static str>) -> Value {
    json!({
        "identifier": b.identifier,
        "name": b.name,
        "main_color": b.main_color,
        "account_type": b.account_type,
        "maintenance": down.contains(b.identifier),
    })
}

/// How a flow ended, before it becomes the callback object.
pub(super) struct Outcome<'a> {
    pub(super) status: &'a str,
    pub(super) message: &'a str,
    pub(super) secondary: Option<&'a str>,
    pub(super) exit_point: Option<Screen>,
    pub(super) bank: Value,
    pub(super) last_api_response: Option<String>,
}

/// The object the app's callback receives, with every field LinkSDK's has
/// (the legacy bundle's adds `method`).
pub(super) fn callback(opening: &Opening, correlation: Uuid, outcome: Outcome<'_>) -> Value {
    let mut object = json!({
        "status": outcome.status,
        "message": outcome.message,
        "bank": outcome.bank,
        "exit_point": outcome.exit_point,
        "secondary_status": outcome.secondary,
        "last_api_response": outcome.last_api_response,
        "user_exit_intent": null,
        "exit_intent_point": null,
        "exit_survey_reason": null,
        "lean_correlation_id": correlation,
        "open_banking_redirect_url": null,
    });
    if opening.generation == Generation::Legacy {
        object["method"] = json!(opening.method.legacy_name());
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_parse_back_and_legacy_names_are_upper_snake() {
        for name in [
            "connect",
            "link",
            "reconnect",
            "pay",
            "createPaymentSource",
            "updatePaymentSource",
            "createBeneficiary",
            "checkout",
            "authorizeConsent",
            "manageConsents",
            "verifyAddress",
            "captureRedirect",
        ] {
            assert_eq!(Method::parse(name).map(Method::name), Some(name));
        }
        assert_eq!(Method::parse("transfer"), None);
        assert_eq!(
            Method::CreatePaymentSource.legacy_name(),
            "CREATE_PAYMENT_SOURCE"
        );
        assert_eq!(Method::Link.legacy_name(), "LINK");
    }
}
