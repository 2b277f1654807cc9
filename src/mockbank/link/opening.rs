//! Checking what the SDK was called with, before any screen shows: every
//! refusal names the field and what is wrong, as LinkSDK's sandbox-mode
//! validation does.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::Value;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::session::{Method, Opening};
use super::{permissions, Generation, Region};
use crate::mockbank::state::{Customer, Scope};
use crate::mockbank::MockbankCore;

/// LinkSDK needs a customer token with this long left before `exp`.
const ACCESS_TOKEN_MARGIN: std::time::Duration = std::time::Duration::from_secs(600);

/// Customization keys LinkSDK documents; the page applies these.
const CUSTOMIZATION_KEYS: [&str; 7] = [
    "theme_color",
    "button_text_color",
    "button_border_radius",
    "link_color",
    "overlay_color",
    "dialog_mode",
    "bottom_inset",
];

/// Why a session cannot open: the message the callback carries.
pub(super) type Refusal = String;

/// `key` of the SDK's configuration as a UUID, required.
pub(super) fn uuid_of(cfg: &Value, key: &str, why: &str) -> Result<Uuid, Refusal> {
    match cfg.get(key).and_then(Value::as_str) {
        None | Some("") => Err(format!("{key}: required for {why}")),
        Some(v) => Uuid::parse_str(v).map_err(|_| format!("{key}: {v:?} is not a UUID")),
    }
}

impl MockbankCore {
    /// Validates the SDK's configuration `cfg` for a session opened by `origin`.
    pub(super) fn opening(
        &self,
        cfg: &Value,
        origin: Option<String>,
        generation: Generation,
        region: Region,
    ) -> Result<Opening, Refusal> {
        let text = |k: &str| cfg.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        let method = match text("method") {
            Some(m) => {
                Method::parse(m).ok_or_else(|| format!("method: LinkSDK has no method {m:?}"))?
            }
            None => return Err("method: required".into()),
        };
        self.check_app_token(text("app_token"))?;
        self.check_region(region)?;
        let arabic = match text("language") {
            None | Some("en") => false,
            Some("ar") => true,
            Some(other) => {
                return Err(format!(
                    "language: {other:?} is not supported; give \"en\" or \"ar\""
                ))
            }
        };
        let customization = customization(cfg.get("customization"))?;
        let account_type = match text("account_type") {
            None => None,
            Some(t @ ("PERSONAL" | "BUSINESS")) => Some(t.to_string()),
            Some(other) => {
                return Err(format!(
                    "account_type: {other:?} is not valid; give PERSONAL or BUSINESS"
                ))
            }
        };
        for key in ["access_from", "access_to"] {
            if let Some(v) = text(key) {
                let date = v.get(..10).unwrap_or(v);
                if NaiveDate::parse_from_str(date, "%Y-%m-%d").is_err() {
                    return Err(format!("{key}: {v:?} is not a date (YYYY-MM-DD)"));
                }
            }
        }
        let consent_screen = cfg
            .get("show_consent_explanation")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut opening = Opening {
            method,
            generation,
            region,
            arabic,
            customization,
            origin,
            customer: None,
            permissions: Vec::new(),
            account_type,
            consent_screen,
            bank: None,
            reconnect: None,
            payment: None,
            consent: None,
            beneficiary: None,
            customer_name: None,
            redirects: (
                redirect_url(cfg, "success_redirect_url")?,
                redirect_url(cfg, "fail_redirect_url")?,
            ),
            captured: None,
        };
        match method {
            Method::Connect | Method::Link => self.connect_opening(cfg, &mut opening)?,
            Method::Reconnect => self.reconnect_opening(cfg, &mut opening)?,
            Method::Pay | Method::Checkout => self.pay_opening(cfg, &mut opening)?,
            Method::CreatePaymentSource => self.source_opening(cfg, &mut opening)?,
            Method::AuthorizeConsent => self.consent_opening(cfg, &mut opening)?,
            Method::UpdatePaymentSource | Method::CreateBeneficiary => {
                self.beneficiary_opening(cfg, &mut opening)?
            }
            Method::ManageConsents => self.manage_opening(cfg, &mut opening)?,
            Method::VerifyAddress => self.address_opening(cfg, &mut opening)?,
            Method::CaptureRedirect => self.capture_opening(cfg, &mut opening)?,
        }
        Ok(opening)
    }

    /// The script's region must be this Mockbank's: its test users bank only
    /// at its own region's banks, so a session from the other region's
    /// scripts would list banks nobody can log in to.
    fn check_region(&self, region: Region) -> Result<(), Refusal> {
        let own = self.settings.region;
        if crate::mockbank::Region::of_link(region) == own {
            return Ok(());
        }
        Err(format!(
            "region: this page's LinkSDK script is for region \"{}\", but this Mockbank emulates \
             Lean's {} sandbox (mockbank.region = \"{}\"): load the /{}/ scripts, or run a \
             Mockbank of that region",
            region.name(),
            own.name().to_uppercase(),
            own.name(),
            own.link().name(),
        ))
    }

    fn check_app_token(&self, given: Option<&str>) -> Result<(), Refusal> {
        let Some(given) = given else {
            return Err("app_token: required (your application's token from Lean's dashboard; the Mockbank's is printed at start)".into());
        };
        let expected = self.settings.app_token.expose().as_bytes();
        if bool::from(given.as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err("app_token: not valid for this Mockbank (it accepts the lean-app-token printed at start, or auth.app_token when configured)".into())
        }
    }

    /// The `customer_id` of the configuration: a customer of the Mockbank's,
    /// whose `access_token`, when given, is checked.
    pub(super) fn customer_of(&self, cfg: &Value, method: &str) -> Result<Customer, Refusal> {
        let id = uuid_of(cfg, "customer_id", method)?;
        let customer = self
            .lock()
            .customer(id)
            .cloned()
            .ok_or_else(|| format!("customer_id: no customer {id} in the Mockbank"))?;
        self.check_access_token(cfg, customer.id)?;
        Ok(customer)
    }

    fn connect_opening(&self, cfg: &Value, opening: &mut Opening) -> Result<(), Refusal> {
        let customer = self.customer_of(cfg, "connect (create one with POST /customers/v1)")?;
        opening.permissions = match cfg.get("permissions") {
            None | Some(Value::Null) => return Err("permissions: required for connect, e.g. [\"identity\", \"accounts\", \"balance\", \"transactions\"]".into()),
            Some(list) => permissions(list, opening.region).map_err(|why| format!("permissions: {why}"))?,
        };
        opening.bank = chosen_bank(cfg, opening.region)?;
        opening.customer = Some(customer);
        Ok(())
    }

    fn reconnect_opening(&self, cfg: &Value, opening: &mut Opening) -> Result<(), Refusal> {
        let reconnect_id = uuid_of(
            cfg,
            "reconnect_id",
            "reconnect (from the RECONNECT_REQUIRED answer)",
        )?;
        let (user, customer) = {
            let state = self.lock();
            let entity = state.waiting_for(reconnect_id).ok_or_else(|| {
                format!("reconnect_id: no entity is waiting for a reconnect with {reconnect_id}")
            })?;
            (entity.user, state.customer(entity.customer).cloned())
        };
        if let Some(c) = &customer {
            self.check_access_token(cfg, c.id)?;
        }
        opening.bank = Some(self.users[user].bank);
        opening.reconnect = Some((reconnect_id, user));
        opening.customer = customer;
        Ok(())
    }

    fn source_opening(&self, cfg: &Value, opening: &mut Opening) -> Result<(), Refusal> {
        opening.customer = Some(self.customer_of(cfg, "createPaymentSource")?);
        opening.bank = chosen_bank(cfg, opening.region)?;
        Ok(())
    }

    fn consent_opening(&self, cfg: &Value, opening: &mut Opening) -> Result<(), Refusal> {
        let consent_id = uuid_of(
            cfg,
            "consent_id",
            "authorizeConsent (from POST /consents/account-on-file)",
        )?;
        let customer = {
            let state = self.lock();
            let consent = state
                .payments
                .consents
                .iter()
                .find(|c| c.id == consent_id)
                .ok_or_else(|| format!("consent_id: no consent {consent_id} in the Mockbank"))?;
            state.customer(consent.customer).cloned()
        };
        if let Some(c) = &customer {
            self.check_access_token(cfg, c.id)?;
        }
        opening.customer = customer;
        opening.consent = Some(consent_id);
        Ok(())
    }

    fn pay_opening(&self, cfg: &Value, opening: &mut Opening) -> Result<(), Refusal> {
        let intent_id = match cfg.get("payment_intent_id").and_then(Value::as_str) {
            None | Some("") => {
                return Err(format!(
                    "payment_intent_id: required for {} (from POST /payments/v1/intents)",
                    opening.method.name()
                ))
            }
            Some(v) => {
                Uuid::parse_str(v).map_err(|_| format!("payment_intent_id: {v:?} is not a UUID"))?
            }
        };
        let (intent, customer, destination) = {
            let state = self.lock();
            let intent = state.payments.intent(intent_id).cloned().ok_or_else(|| {
                format!("payment_intent_id: no payment intent {intent_id} in the Mockbank")
            })?;
            let destination = state
                .payments
                .destination(intent.destination)
                .map(|d| d.display_name.clone())
                .unwrap_or_default();
            (
                intent.clone(),
                state.customer(intent.customer).cloned(),
                destination,
            )
        };
        self.check_access_token(cfg, intent.customer)?;
        opening.bank = chosen_bank(cfg, opening.region)?;
        let shown = serde_json::json!({
            "amount": format!("{:.2}", crate::mockbank::payments::units(intent.amount)),
            "currency": intent.currency,
            "destination": destination,
        });
        opening.customer = customer;
        opening.payment = Some((intent_id, shown));
        Ok(())
    }

    /// An `access_token`, when given, must be one the Mockbank issued for
    /// this customer, with at least ten minutes left.
    pub(super) fn check_access_token(&self, cfg: &Value, customer: Uuid) -> Result<(), Refusal> {
        let Some(token) = cfg
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
        else {
            return Ok(());
        };
        let now = self.clock.elapsed();
        let state = self.lock();
        let issued = state
            .tokens
            .get(token)
            .ok_or("access_token: not a token this Mockbank issued (POST /oauth2/token with scope=customer.<customer_id>)")?;
        match issued.scope {
            Scope::Api => Err("access_token: has scope api; LinkSDK needs a customer token (scope=customer.<customer_id>)".into()),
            Scope::Customer(c) if c != customer => Err(format!("access_token: issued for customer {c}, not for {customer}")),
            Scope::Customer(_) if issued.expires <= now => Err("access_token: expired; mint a new one for each page view".into()),
            Scope::Customer(_) if issued.expires - now < ACCESS_TOKEN_MARGIN => Err(format!(
                "access_token: expires in {}s; LinkSDK needs at least 10 minutes left, so mint one per page view",
                (issued.expires - now).as_secs()
            )),
            Scope::Customer(_) => Ok(()),
        }
    }
}

/// A redirect URL, when given: an absolute `http(s)` URL.
fn redirect_url(cfg: &Value, key: &str) -> Result<Option<String>, Refusal> {
    let Some(v) = cfg
        .get(key)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let fine = v
        .parse::<http::Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if fine {
        Ok(Some(v.to_string()))
    } else {
        Err(format!("{key}: {v:?} is not an absolute http(s) URL"))
    }
}

/// `bank_identifier`, when given: it skips the bank list.
pub(super) fn chosen_bank(
    cfg: &Value,
    region: Region,
) -> Result<Option<&'static crate::mockbank::users::Bank>, Refusal> {
    let banks = crate::mockbank::Region::of_link(region).banks();
    let Some(wanted) = cfg
        .get("bank_identifier")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    banks
        .iter()
        .find(|b| b.identifier == wanted)
        .map(Some)
        .ok_or_else(|| {
            let known: Vec<_> = banks.iter().map(|b| b.identifier).collect();
            format!(
                "bank_identifier: {wanted:?} is not a Mockbank bank; give one of {}",
                known.join(", ")
            )
        })
}

/// `customization`: an object of LinkSDK's keys with plain values. Colours
/// and sizes are checked so nothing but a colour or a length reaches the
/// page's style.
fn customization(value: Option<&Value>) -> Result<BTreeMap<String, String>, Refusal> {
    let mut out = BTreeMap::new();
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let object = value
        .as_object()
        .ok_or("customization: give an object, e.g. {\"theme_color\": \"#0b5cff\"}")?;
    for (key, v) in object {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(format!("customization.{key}: give a string or a number")),
        };
        if !CUSTOMIZATION_KEYS.contains(&key.as_str()) {
            continue;
        }
        let fine = match key.as_str() {
            "button_border_radius" | "bottom_inset" => is_length(&text),
            "dialog_mode" => matches!(text.as_str(), "contained" | "uncontained"),
            _ => is_colour(&text),
        };
        if !fine {
            return Err(format!("customization.{key}: {text:?} is not valid"));
        }
        out.insert(key.clone(), text);
    }
    Ok(out)
}

/// `#rgb`, `#rrggbb`, `#rrggbbaa`, `rgb(…)`/`rgba(…)` or a colour name.
fn is_colour(v: &str) -> bool {
    if let Some(hex) = v.strip_prefix('#') {
        return matches!(hex.len(), 3 | 4 | 6 | 8) && hex.chars().all(|c| c.is_ascii_hexdigit());
    }
    if let Some(inner) = v.strip_prefix("rgba(").or_else(|| v.strip_prefix("rgb(")) {
        return inner
            .strip_suffix(')')
            .is_some_and(|i| i.chars().all(|c| c.is_ascii_digit() || ", .%".contains(c)));
    }
    !v.is_empty() && v.len() <= 20 && v.chars().all(|c| c.is_ascii_alphabetic())
}

/// A number, optionally with `px`, `rem`, `em` or `%`.
fn is_length(v: &str) -> bool {
    let number = ["px", "rem", "em", "%"]
        .iter()
        .find_map(|u| v.strip_suffix(u))
        .unwrap_or(v);
    !number.is_empty() && number.len() <= 8 && number.parse::<f64>().is_ok_and(|n| n >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn customization_lets_through_colours_and_lengths_only() {
        let ok = customization(Some(&json!({
            "theme_color": "#0b5cff", "button_border_radius": 12, "overlay_color": "rgba(0, 0, 0, 0.5)",
            "link_color": "teal", "unknown_key": "kept out"
        })))
        .unwrap();
        assert_eq!(ok["button_border_radius"], "12");
        assert!(!ok.contains_key("unknown_key"));
        let bad =
            customization(Some(&json!({"theme_color": "red;background:url(x)"}))).unwrap_err();
        assert!(bad.contains("customization.theme_color"), "{bad}");
        assert!(customization(Some(&json!({"button_border_radius": "1e9px;"}))).is_err());
        assert!(customization(Some(&json!("blue"))).is_err());
    }
}
