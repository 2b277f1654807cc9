//! Lean's answers, built to the shapes recorded in Lean's Postman collection
//! (README, "Where Lean's shapes come from"): same keys, nesting and value types, including the
//! recorded quirks (`account_id: null` on account identities, `gender: null` on the
//! entity identity). The conformance test compares them key by key. The data
//! answers read most, and the envelopes of the data API's answers, are structs
//! written straight to bytes, in `wire` (`shapes/wire.rs`).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::region::Region;
use super::users::{Account, Bank, SubType, TestUser};

pub(super) mod wire;
use wire::{Amount, Midnight, Page};

/// Nanosecond timestamp (`2026-05-13T19:42:30.487549603Z`), as on envelopes.
pub(super) fn ts(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Millisecond timestamp (`2026-05-13T19:39:18.748Z`), as on resources.
pub(super) fn ts_ms(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn midnight(day: NaiveDate) -> String {
    Midnight(day).to_string()
}

/// Fils to a JSON amount with two decimals.
fn money(fils: i64) -> Value {
    json!(wire::money(fils))
}

fn amount(currency: &str, fils: i64) -> Value {
    json!(Amount::new(currency, fils))
}

/// A v2 `page` object.
pub(super) fn page(number: usize, size: usize, total: usize) -> Value {
    json!(Page::new(number, size, total))
}

/// Page `number` of `size` of `items`.
pub(super) fn paginate<T>(
    items: impl IntoIterator<Item = T>,
    number: usize,
    size: usize,
) -> Vec<T> {
    items
        .into_iter()
        .skip(number.saturating_mul(size))
        .take(size)
        .collect()
}

// ------------------------------------------------------------------ v2 resources

/// The entity-level v2 identity. Lean's KSA sandbox answers it in the
/// account holder's shape (its recorded example: `national_id` null, the
/// gender, `street_address` and `post_code`, an `account_role`), the
/// national id or iqama in `party_number`.
pub(super) fn v2_identity(entity: Uuid, user: &TestUser) -> Value {
    if user.bank.region == Region::Ksa {
        return v2_account_identity(entity, user);
    }
    let id = &user.identity;
    json!({
        "entity_id": entity,
        "full_legal_name": id.full_name,
        "name": id.full_name,
        "national_id": id.national_id,
        "birth_date": id.birth_date.to_string(),
        "gender": null,
        "email_address": id.email,
        "legal_structure": null,
        "phone": id.mobile,
        "mobile_number": id.mobile,
        "address": {
            "address_line": id.address.line,
            "address_type": "Residential",
            "building_type": null,
            "apartment_or_villa_number": id.address.apartment,
            "building_name": id.address.building,
            "street": id.address.street,
            "area": id.address.area,
            "street_address": null,
            "post_code": null,
            "town_name": id.address.town,
            "region": id.address.region,
            "po_box": id.address.po_box,
            "country": user.bank.region.country(),
        },
        "account_role": null,
        "party_type": "UNSUPPORTED",
        "party_id": id.mobile[id.mobile.len().saturating_sub(5)..].to_string(),
        "party_number": id.national_id.replace('-', ""),
        "regional_data": null,
    })
}

/// An account-level v2 identity (account holder).
pub(super) fn v2_account_identity(entity: Uuid, user: &TestUser) -> Value {
    let id = &user.identity;
    json!({
        "entity_id": entity,
        "full_legal_name": id.full_name,
        "name": id.short_name,
        "phone": id.mobile,
        "email_address": id.email,
        "legal_structure": null,
        "mobile_number": id.mobile,
        "address": {
            "address_type": null,
            "building_type": null,
            "apartment_or_villa_number": null,
            "building_name": null,
            "street": null,
            "area": null,
            "town_name": id.address.town,
            "region": id.address.region,
            "country": user.bank.region.country_name(),
            "post_code": id.address.po_box,
            "po_box": null,
            "street_address": id.address.street,
            "address_line": id.address.line,
        },
        "national_id": null,
        "birth_date": id.birth_date.to_string(),
        "gender": id.gender,
        "account_role": "OWNER",
        "party_type": "SOLE",
        "party_id": id.mobile[id.mobile.len().saturating_sub(6)..].to_string(),
        "party_number": id.national_id.replace('-', ""),
        "regional_data": null,
    })
}

/// Beneficiaries of an account (two, derived from the account).
pub(super) fn v2_beneficiaries(region: Region, a: &Account) -> Vec<Value> {
    let town = match region {
        Region::Uae => "Dubai",
        Region::Ksa => "Riyadh",
    };
    let country = region.country_name();
    region
        .people()
        .beneficiaries
        .iter()
        .enumerate()
        .map(|(i, (name, short, bic, bank))| {
            json!({
                "account_id": a.id,
                "account_holder_name": name,
                "account_holder_short_name": short,
                "beneficiary_id": format!("{}{i}", &a.number[..6]),
                "beneficiary_type": "OTHER",
                "creditor_agent": {
                    "scheme_name": "BICFI",
                    "identification": bic,
                    "name": bank,
                    "postal_address": {
                        "address_line": format!("P.O. Box 777, {town}"),
                        "address_type": "BUSINESS",
                        "building_number": "777",
                        "country": country,
                        "department": null,
                        "post_code": "00000",
                        "street_name": null,
                        "sub_department": null,
                        "town_name": town,
                        "country_sub_division": null,
                    },
                },
                "creditor_account": {"scheme_name": "IBAN", "identification": format!("{}07{}{}", region.country(), bic.len(), &a.number), "name": short},
                "reference": "FAMILY SUPPORT",
                "supplementary_data": null,
                "regional_data": null,
            })
        })
        .collect()
}

/// Direct debits of an account.
pub(super) fn v2_direct_debits(region: Region, a: &Account) -> Vec<Value> {
    region
        .people()
        .direct_debits
        .iter()
        .enumerate()
        .map(|(i, (name, fils))| {
            json!({
                "account_id": a.id,
                "direct_debit_id": Uuid::new_v5(&a.id, format!("dd{i}").as_bytes()),
                "status_code": "ACTIVE",
                "frequency": "MONTHLY",
                "mandate_identification": format!("MND{}{i}", &a.number[..8]),
                "name": name,
                "previous_payment_date_time": midnight(a.opened),
                "previous_payment_amount": amount(a.currency, *fils),
                "regional_data": null,
            })
        })
        .collect()
}

/// Scheduled payments of an account.
pub(super) fn v2_scheduled_payments(region: Region, a: &Account) -> Vec<Value> {
    let bic = region.people().beneficiaries[0].2;
    [120_000i64, 75_000]
        .iter()
        .enumerate()
        .map(|(i, fils)| {
            json!({
                "account_id": a.id,
                "scheduled_payment_id": Uuid::new_v5(&a.id, format!("sp{i}").as_bytes()),
                "scheduled_type": "ARRIVAL",
                "scheduled_payment_date_time": midnight(a.opened),
                "debtor_reference": format!("RENT{}{i}", &a.number[..6]),
                "reference": null,
                "instructed_amount": amount(a.currency, *fils),
                "creditor_agent": {"scheme_name": "BICFI", "identification": bic},
                "creditor_account": {"scheme_name": "IBAN", "identification": format!("{}44033{}", region.country(), &a.number), "name": null},
                "regional_data": null,
            })
        })
        .collect()
}

/// Standing orders of an account.
pub(super) fn v2_standing_orders(region: Region, a: &Account) -> Vec<Value> {
    let bic = region.people().beneficiaries[0].2;
    let at = |days: i64| {
        ts_ms(
            (a.opened + chrono::Duration::days(days))
                .and_hms_opt(8, 0, 0)
                .unwrap_or_default()
                .and_utc(),
        )
    };
    [50_000i64, 1_000]
        .iter()
        .enumerate()
        .map(|(i, fils)| {
            json!({
                "account_id": a.id,
                "standing_order_id": Uuid::new_v5(&a.id, format!("so{i}").as_bytes()),
                "standing_order_status_code": "ACTIVE",
                "first_payment_date_time": at(30),
                "last_payment_date_time": at(395),
                "next_payment_date_time": at(425),
                "final_payment_date_time": at(1095),
                "frequency": {"frequency_type": "MONTHLY", "interval": "IntervalMonth:1"},
                "number_of_payments": 36,
                "reference": null,
                "standing_order_type": "LOCAL_BANK_TRANSFER",
                "purpose": "SAVINGS",
                "first_payment_amount": amount(a.currency, *fils),
                "last_payment_amount": amount(a.currency, *fils),
                "next_payment_amount": amount(a.currency, *fils),
                "final_payment_amount": amount(a.currency, *fils),
                "creditor_agent": {"scheme_name": "BICFI", "identification": bic},
                "creditor_account": null,
                "regional_data": null,
            })
        })
        .collect()
}

// ------------------------------------------------------------------ v1 payloads

fn v1_type(sub: SubType) -> &'static str {
    match sub {
        SubType::Current => "CURRENT",
        SubType::Savings => "SAVINGS",
        SubType::CreditCard => "CREDIT",
    }
}

/// v1 accounts payload.
pub(super) fn v1_accounts(user: &TestUser) -> Value {
    let accounts: Vec<Value> = user
        .accounts
        .iter()
        .map(|a| {
            let mut v = json!({
                "account_id": a.id,
                "name": a.name(user),
                "currency_code": a.currency,
                "type": v1_type(a.sub_type),
                "iban": a.iban,
                "account_number": a.number,
            });
            if let Some(limit) = a.credit_limit {
                v["credit"] = json!({
                    "card_number_last_four": &a.number[a.number.len() - 4..],
                    "limit": money(limit),
                    "next_payment_due_date": a.opened.to_string(),
                    "next_payment_due_amount": money(a.closing_balance().abs() / 10),
                });
            }
            v
        })
        .collect();
    json!({"accounts": accounts, "type": "accounts"})
}

/// v1 identity payload.
pub(super) fn v1_identity(user: &TestUser) -> Value {
    let id = &user.identity;
    json!({
        "full_name": id.full_name,
        "mobile_number": id.mobile,
        "gender": if id.gender == "F" { "FEMALE" } else { "MALE" },
        "national_identity_number": id.national_id,
        "birth_date": id.birth_date.to_string(),
        "email_address": id.email,
        "address": id.address.line,
        "type": "identity",
    })
}

// ------------------------------------------------------------------ others

/// A bank in `/banks/v1/`.
/// A bank as `/banks/v1/` lists it; `up`: whether its data calls work now.
pub(super) fn bank(b: &Bank, up: bool) -> Value {
    json!({
        "identifier": b.identifier,
        "name": b.name,
        "arabic_name": null,
        "commercial_name": b.name,
        "commercial_name_arabic": null,
        "logo": b.logo,
        "logo_alt": b.logo.replace(".png", ".svg"),
        "main_color": b.main_color,
        "background_color": "#ffffff",
        "theme": "light",
        "country_code": b.region.country3(),
        "active": true,
        "mock": true,
        "traits": ["auth-redirect"],
        "supported_account_types": ["CURRENT", "SAVINGS", "CREDIT"],
        "supported_account_sub_types": ["CURRENT", "SAVINGS", "CREDIT"],
        "bank_type": b.bank_type,
        "swift_code": b.swift_code,
        "transfer_limits": [{"currency": b.region.currency(), "min": 5, "max": 50000}],
        "international_transfer_limits": [],
        "international_destinations": [],
        "account_type": b.account_type,
        "connection_type": "OPEN_BANKING",
        "availability": {
            "active": {"payments": up, "data": up},
            "enabled": {"payments": true, "data": true},
        },
    })
}

/// The payload of `bank.availability.updated`, as Lean's samples show it.
pub(super) fn bank_availability(identifier: &str, up: bool) -> Value {
    json!({
        "identifier": identifier,
        "availability": {
            "active": {"payments": up, "data": up},
            "enabled": {"payments": true, "data": true},
        },
    })
}

/// The permissions Mockbank grants a linked entity.
/// Every permission an entity can hold, as Lean lists them on entities.
pub(super) const ALL_PERMISSIONS: [&str; 9] = [
    "identity",
    "accounts",
    "balance",
    "transactions",
    "identities",
    "scheduled_payments",
    "standing_orders",
    "direct_debits",
    "beneficiaries",
];

/// The permission map of an entity and its consent: each of Lean's keys, true
/// where `granted` names it (`payments` appears only when granted).
pub(super) fn permissions(granted: &[String]) -> Value {
    let mut map = serde_json::Map::new();
    for key in ALL_PERMISSIONS {
        map.insert(key.into(), json!(granted.iter().any(|g| g == key)));
    }
    if granted.iter().any(|g| g == "payments") {
        map.insert("payments".into(), json!(true));
    }
    Value::Object(map)
}

/// An entity, as `/customers/v1/{customer_id}/entities/{entity_id}` shows it.
pub(super) fn entity(
    id: Uuid,
    customer: Uuid,
    user: &TestUser,
    created: DateTime<Utc>,
    granted: &[String],
) -> Value {
    let accounts: Vec<Value> = user
        .accounts
        .iter()
        .flat_map(|a| {
            let name = a.name(user);
            [
                json!({"scheme_name": "IBAN", "identification": a.iban, "name": name, "secondary_identification": null}),
                json!({"scheme_name": "ACCOUNT_NUMBER", "identification": a.number, "name": name, "secondary_identification": null}),
            ]
        })
        .collect();
    json!({
        "id": id,
        "customer_id": customer,
        "bank_identifier": user.bank.identifier,
        "permissions": permissions(granted),
        "bank_type": user.bank.bank_type,
        "created_at": ts_ms(created),
        "consents": [{
            "id": Uuid::new_v5(&id, b"consent"),
            "bank_consent_id": Uuid::new_v5(&id, b"bank-consent"),
            "bank_identifier": null,
            "consent_type": null,
            "consent_status": "ACTIVE",
            "standard_consent_status": null,
            "permissions": permissions(granted),
            "creation_date_time": ts_ms(created),
            "status_update_date_time": ts_ms(created),
            "expiration_date_time": ts_ms(created + chrono::Duration::days(365)),
            "transaction_from_date_time": ts_ms(created - chrono::Duration::days(365)),
            "transaction_to_date_time": ts_ms(created + chrono::Duration::days(365)),
            "accounts": accounts,
        }],
    })
}

/// `bank_details` in entity webhooks.
pub(super) fn bank_details(b: &Bank) -> Value {
    json!({
        "logo": b.logo,
        "name": b.name,
        "bank_type": b.bank_type,
        "identifier": b.identifier,
        "main_color": b.main_color,
        "swift_code": b.swift_code,
        "account_type": b.account_type,
        "background_color": "#ffffff",
    })
}
