//! Redaction of what the request log keeps, and of webhook bodies shown by
//! the admin API.
//!
//! Default-deny where it can be, pattern-based where it must be:
//! - bodies: JSON and form bodies are shown redacted; any other body (text
//!   included) is not shown, only its size and type, because free text cannot
//!   be redacted safely;
//! - keys are compared case-insensitively with `_`, `-` and spaces ignored
//!   (`IBAN`, `holderName` and `first_name` are caught alike): credential keys
//!   and keys that name a person, a contact or an address are removed; IBANs,
//!   account and card numbers are masked to their last four characters;
//! - values: a string that looks like an IBAN or an email address is masked or
//!   removed whatever its key;
//! - the configured secrets (app token, client secrets, admin token, webhook
//!   secret) are scrubbed wherever they appear, so an upstream that echoes one
//!   in an error message or a header does not leak it;
//! - headers: credential headers (and any whose name says token, secret, key,
//!   auth, cookie, session, signature or password) are removed.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value;

/// Shown instead of a removed value.
pub const REDACTED: &str = "[redacted]";

/// Header names whose values are never kept (lowercase; hyper's names are).
const SECRET_HEADERS: [&str; 7] = [
    "lean-app-token",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "lean-signature",
    "x-api-key",
];

/// Words that make a header name secret.
const SECRET_HEADER_WORDS: [&str; 8] = [
    "token",
    "secret",
    "key",
    "auth",
    "cookie",
    "session",
    "signature",
    "password",
];

/// Normalised keys that carry credentials.
const SECRET_KEYS: [&str; 6] = ["otp", "pin", "cvv", "cvc", "signature", "authorization"];

/// Words that make a normalised key a credential.
const SECRET_KEY_WORDS: [&str; 6] = [
    "secret",
    "token",
    "password",
    "passwd",
    "apikey",
    "privatekey",
];

/// Normalised keys masked to their last four characters.
const MASKED_KEYS: [&str; 7] = [
    "iban",
    "accountnumber",
    "identification",
    "secondaryidentification",
    "cardnumber",
    "bban",
    "pan",
];

/// Normalised keys removed: who the user is and where they live.
const PERSONAL_KEYS: [&str; 10] = [
    "description",
    "nationalid",
    "nationalidentitynumber",
    "partynumber",
    "partyid",
    "birthdate",
    "dateofbirth",
    "dob",
    "username",
    "appuserid",
];

/// Words that make a normalised key personal (`name` as its end: `name`,
/// `full_name`, `holderName`, `account_name`, `nickname`…).
const PERSONAL_KEY_WORDS: [&str; 5] = ["email", "phone", "mobile", "address", "birth"];

/// Keys that end in `name` but name no person.
const NOT_PERSONAL_NAMES: [&str; 4] = ["schemename", "bankname", "filename", "hostname"];

/// How captured text is shown: redacted (the default), with the values of the
/// configured secrets scrubbed wherever they appear; or, only when
/// `log.redact = false`, as it passed. Cheap to clone; its `Debug` never shows
/// the secrets.
#[derive(Clone)]
pub struct Redactor(Option<Arc<[String]>>);

impl Default for Redactor {
    fn default() -> Self {
        Self::on(Vec::new())
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(known) => write!(f, "Redactor(on, {} secrets)", known.len()),
            None => f.write_str("Redactor(off)"),
        }
    }
}

/// Secrets shorter than this are not scrubbed from free text: they would
/// match ordinary words and numbers.
const MIN_SCRUBBED: usize = 8;

impl Redactor {
    /// Redacting, and scrubbing each of `known` (the configured secrets)
    /// wherever it appears.
    pub fn on(known: impl IntoIterator<Item = String>) -> Self {
        let mut known: Vec<String> = known
            .into_iter()
            .filter(|s| s.len() >= MIN_SCRUBBED)
            .collect();
        // Longest first, so a secret that contains another goes whole.
        known.sort_by_key(|s| std::cmp::Reverse(s.len()));
        known.dedup();
        Self(Some(known.into()))
    }

    /// Not redacting (`log.redact = false`, for local debugging).
    pub fn off() -> Self {
        Self(None)
    }

    /// Whether it redacts.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// `text` with every configured secret replaced by [`REDACTED`].
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(known) = &self.0 else {
            return Cow::Borrowed(text);
        };
        let mut out = Cow::Borrowed(text);
        for secret in known.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }

    /// A JSON document, redacted in place.
    pub fn json(&self, value: &mut Value) {
        if self.is_on() {
            json(value);
            self.scrub_json(value);
        }
    }

    fn scrub_json(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(clean) = self.scrub(s) {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }

    /// `application/x-www-form-urlencoded` text (or a query string), redacted.
    pub fn form(&self, text: &str) -> String {
        if !self.is_on() {
            return text.to_string();
        }
        form_with(text, |v| self.scrub(v).into_owned())
    }

    /// A header's value as shown.
    pub fn header(&self, name: &str, value: &[u8]) -> String {
        let value = String::from_utf8_lossy(value);
        if !self.is_on() {
            return value.into_owned();
        }
        if is_secret_header(name) {
            return REDACTED.to_string();
        }
        self.scrub(&value).into_owned()
    }
}

/// Whether a header's value must not be kept (any case).
pub fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&name.as_str()) || SECRET_HEADER_WORDS.iter().any(|w| name.contains(w))
}

/// A key as compared: lowercase, without `_`, `-` and spaces.
fn normal(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// What happens to a value under a key.
#[derive(PartialEq)]
enum Rule {
    Remove,
    Mask,
    Keep,
}

fn rule(key: &str) -> Rule {
    let k = normal(key);
    let k = k.as_str();
    if SECRET_KEYS.contains(&k)
        || SECRET_KEY_WORDS.iter().any(|w| k.contains(w))
        || PERSONAL_KEYS.contains(&k)
        || PERSONAL_KEY_WORDS.iter().any(|w| k.contains(w))
        || (k.ends_with("name") && !NOT_PERSONAL_NAMES.contains(&k))
    {
        Rule::Remove
    } else if MASKED_KEYS.contains(&k) || k.contains("iban") || k.ends_with("accountnumber") {
        Rule::Mask
    } else {
        Rule::Keep
    }
}

/// Whether `s` reads as an IBAN: two letters, two digits, then 11 to 30
/// letters and digits (spaces between groups allowed).
fn looks_like_iban(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    (15..=34).contains(&compact.len())
        && compact[..2].iter().all(u8::is_ascii_uppercase)
        && compact[2..4].iter().all(u8::is_ascii_digit)
        && compact[4..].iter().all(u8::is_ascii_alphanumeric)
        && compact[4..].iter().any(u8::is_ascii_digit)
}

/// Whether `s` reads as an email address.
fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((user, domain)) => {
            !user.is_empty()
                && !user.contains(char::is_whitespace)
                && domain.contains('.')
                && !domain.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// `****1234`
fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let keep = chars.len().min(4);
    let tail: String = chars[chars.len() - keep..].iter().collect();
    format!(
        "{}{tail}",
        "*".repeat(chars.len().saturating_sub(keep).min(12))
    )
}

/// Redacts a JSON document in place by its keys and values (no secret
/// scrubbing: see [`Redactor::json`]).
pub fn json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match rule(key) {
                    Rule::Remove => {
                        if !v.is_null() {
                            *v = Value::String(REDACTED.into());
                        }
                    }
                    Rule::Mask => match v {
                        Value::String(s) => *s = mask(s),
                        Value::Null => {}
                        other => *other = Value::String(REDACTED.into()),
                    },
                    Rule::Keep => json(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json),
        Value::String(s) if looks_like_iban(s) => *s = mask(s),
        Value::String(s) if looks_like_email(s) => *s = REDACTED.into(),
        _ => {}
    }
}

/// Redacts `application/x-www-form-urlencoded` text by its keys and values
/// (no secret scrubbing: see [`Redactor::form`]).
pub fn form(text: &str) -> String {
    form_with(text, str::to_string)
}

/// [`form`], passing each kept value through `keep` (decoded, before it is
/// encoded again, so a secret is found however the form spelled it).
fn form_with(text: &str, keep: impl Fn(&str) -> String) -> String {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| {
            let v = match rule(&k) {
                Rule::Remove => REDACTED.to_string(),
                Rule::Mask => mask(&v),
                Rule::Keep if looks_like_iban(&v) => mask(&v),
                Rule::Keep if looks_like_email(&v) => REDACTED.to_string(),
                Rule::Keep => keep(&v),
            };
            (k.into_owned(), v)
        })
        .collect();
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Redacts a query string (same rules as a form).
pub fn query(text: &str) -> String {
    form(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lean_answer_keeps_its_shape_without_personal_data() {
        let mut v = json!({
            "status": "OK",
            "data": {"accounts": [{
                "account_id": "a-1",
                "account_holder_name": "Angelika Art Jacobs",
                "account": [{"scheme_name": "IBAN", "identification": "AE270200712989310470056", "name": "Angelika Jacobs"}],
                "balance": {"amount": 12.5}
            }]},
            "identity": {"national_id": "784-1990-1234567-1", "mobile_number": "971500000000",
                          "email_address": "a@example.ae", "address": {"town_name": "Dubai"}}
        });
        json(&mut v);
        let text = v.to_string();
        for leak in [
            "Angelika",
            "AE27020071298931",
            "784-1990",
            "971500000000",
            "a@example.ae",
            "Dubai",
        ] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert_eq!(
            v["data"]["accounts"][0]["account"][0]["identification"],
            "************0056"
        );
        assert_eq!(v["data"]["accounts"][0]["account_id"], "a-1");
        assert_eq!(v["data"]["accounts"][0]["balance"]["amount"], 12.5);
    }

    #[test]
    fn form_and_query_secrets_are_removed() {
        let f = form("grant_type=client_credentials&client_id=app&client_secret=s3cr3t&scope=api");
        assert!(!f.contains("s3cr3t"));
        assert!(f.contains("client_id=app"));
        let q = query("entity_id=e&access_token=s3cr3t-value");
        assert!(
            !q.contains("s3cr3t-value") && q.contains("entity_id=e"),
            "{q}"
        );
    }

    #[test]
    fn keys_are_compared_in_any_case_and_spelling() {
        let mut v = json!({
            "IBAN": "AE270200712989310470056",
            "holderName": "Angelika Jacobs",
            "first_name": "Angelika", "LastName": "Jacobs",
            "account_name": "Angelika Jacobs CURRENT_ACCOUNT Account",
            "apiSecretKey": "k-123", "x_access_token": "t-1",
            "scheme_name": "IBAN", "amount": 12.5, "status": "OK"
        });
        json(&mut v);
        let text = v.to_string();
        for leak in ["AE2702007129893", "Angelika", "Jacobs", "k-123", "t-1"] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        assert_eq!(v["scheme_name"], "IBAN");
        assert_eq!(v["amount"], 12.5);
        assert_eq!(v["IBAN"], "************0056");
    }

    #[test]
    fn ibans_and_emails_are_caught_whatever_their_key() {
        let mut v = json!({"note": "AE27 0200 7129 8931 0470 056", "who": "a.b@example.ae",
                            "list": ["GB33BUKB20201555555555"], "status": "RECONNECT_REQUIRED"});
        json(&mut v);
        let text = v.to_string();
        assert!(
            !text.contains("8931") && !text.contains("example.ae") && !text.contains("BUKB2020155"),
            "{text}"
        );
        assert_eq!(v["status"], "RECONNECT_REQUIRED", "ordinary words stay");
    }

    #[test]
    fn configured_secrets_are_scrubbed_wherever_they_appear() {
        let r = Redactor::on(["sk-live-123456789".to_string(), "short".to_string()]);
        let mut v = json!({"message": "invalid token sk-live-123456789 given", "ok": "short"});
        r.json(&mut v);
        assert_eq!(v["message"], "invalid token [redacted] given");
        assert_eq!(v["ok"], "short", "too short to scrub safely");
        assert_eq!(r.header("x-echo", b"sk-live-123456789"), REDACTED);
        assert_eq!(r.header("X-Upstream-Token", b"abc"), REDACTED);
        assert_eq!(r.header("content-type", b"text/plain"), "text/plain");
        let f = r.form("pin=1234&q=sk-live-123456789&my_api_secret=x&page=2");
        assert_eq!(
            f,
            "pin=%5Bredacted%5D&q=%5Bredacted%5D&my_api_secret=%5Bredacted%5D&page=2"
        );
        assert_eq!(format!("{r:?}"), "Redactor(on, 1 secrets)");
        let off = Redactor::off();
        assert_eq!(off.header("authorization", b"Bearer x"), "Bearer x");
    }

    #[test]
    fn short_values_are_masked_whole() {
        assert_eq!(mask("123"), "123");
        assert_eq!(mask("12345"), "*2345");
    }
}
