//! Redaction of what the request log keeps: credential headers, secret query and
//! form fields, and the personal fields of Lean's answers (IBANs and account
//! numbers masked to their last four characters; names, national ids, phone
//! numbers, emails and addresses removed).

use serde_json::Value;

/// Shown instead of a removed value.
pub const REDACTED: &str = "[redacted]";

/// Headers whose values are never kept.
const SECRET_HEADERS: [&str; 7] = [
    "lean-app-token",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "lean-signature",
    "x-api-key",
];

/// Query, form and JSON fields that carry credentials.
const SECRET_FIELDS: [&str; 8] = [
    "client_secret",
    "access_token",
    "refresh_token",
    "password",
    "otp",
    "token",
    "secret",
    "webhook_secret",
];

/// JSON fields masked to their last four characters.
const MASKED_FIELDS: [&str; 6] = [
    "iban",
    "account_number",
    "identification",
    "secondary_identification",
    "card_number",
    "bban",
];

/// JSON fields removed: who the user is and where they live.
const PERSONAL_FIELDS: [&str; 20] = [
    "name",
    "full_name",
    "full_legal_name",
    "account_holder_name",
    "account_holder_short_name",
    "description",
    "national_id",
    "national_identity_number",
    "party_number",
    "party_id",
    "mobile_number",
    "phone",
    "email_address",
    "email",
    "address",
    "street_address",
    "address_line",
    "birth_date",
    "username",
    "app_user_id",
];

/// Whether a header's value must not be kept.
pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.contains(&name)
}

fn is_secret_field(name: &str) -> bool {
    SECRET_FIELDS.contains(&name)
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

/// Redacts a JSON document in place.
pub fn json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let k = key.as_str();
                if is_secret_field(k) || PERSONAL_FIELDS.contains(&k) {
                    if !v.is_null() {
                        *v = Value::String(REDACTED.into());
                    }
                } else if MASKED_FIELDS.contains(&k) {
                    match v {
                        Value::String(s) => *s = mask(s),
                        Value::Null => {}
                        other => *other = Value::String(REDACTED.into()),
                    }
                } else {
                    json(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json),
        _ => {}
    }
}

/// Redacts `application/x-www-form-urlencoded` text.
pub fn form(text: &str) -> String {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| {
            let v = if is_secret_field(&k) || PERSONAL_FIELDS.contains(&k.as_ref()) {
                REDACTED.to_string()
            } else {
                v.into_owned()
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
    fn short_values_are_masked_whole() {
        assert_eq!(mask("123"), "123");
        assert_eq!(mask("12345"), "*2345");
    }
}
