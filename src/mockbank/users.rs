//! The Mockbank's test users and banks, generated deterministically from a seed.
//!
//! Five users, each with its own login behaviour (as Lean's sandbox gives each app
//! five test users): names, identity, accounts, balances and a few months of
//! transactions whose running balances add up. The same seed and start date give
//! the same users.

use chrono::{Datelike, Duration as Days, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use uuid::Uuid;

/// The OTP every sandbox challenge accepts.
pub const OTP: &str = "1111";

/// How a test user logs in and behaves afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// OTP at login; de-authenticated after the inactivity window.
    OtpRequired,
    /// Never asks for an OTP, never de-authenticated.
    NoOtp,
    /// OTP at login; current, savings and credit card accounts;
    /// de-authenticated after the inactivity window.
    MultiAccount,
    /// Corporate bank: OTP at login, session lasts only a few minutes.
    Corporate,
    /// Its bank is under maintenance: data calls answer `FAILED`;
    /// de-authenticated after the inactivity window.
    BankMaintenance,
}

impl Behaviour {
    /// Whether login and reconnect ask for the OTP.
    pub fn needs_otp(self) -> bool {
        !matches!(self, Behaviour::NoOtp)
    }

    /// One line for `/_mockbank/users` and the startup banner.
    pub fn description(self) -> &'static str {
        match self {
            Behaviour::OtpRequired => {
                "OTP required; RECONNECT_REQUIRED after the inactivity window without a data call"
            }
            Behaviour::NoOtp => "never asks for an OTP; never de-authenticated (the stable user)",
            Behaviour::MultiAccount => {
                "OTP required; current, savings and credit card accounts; RECONNECT_REQUIRED after the inactivity window"
            }
            Behaviour::Corporate => {
                "corporate bank; OTP required; session lasts only `corporate_session` after (re)connecting"
            }
            Behaviour::BankMaintenance => {
                "bank under maintenance; data calls answer FAILED / BANK_MAINTENANCE (the inactivity window applies as for otp_user)"
            }
        }
    }
}

/// A mock bank.
#[derive(Debug)]
pub struct Bank {
    /// Lean's bank identifier.
    pub identifier: &'static str,
    /// Display name.
    pub name: &'static str,
    /// `RETAIL` or `CORPORATE`.
    pub bank_type: &'static str,
    /// `PERSONAL` or `BUSINESS`.
    pub account_type: &'static str,
    /// SWIFT code.
    pub swift_code: &'static str,
    /// Brand colour.
    pub main_color: &'static str,
    /// Whether data calls work (false: maintenance).
    pub data_available: bool,
}

/// The banks Mockbank lists, in `/banks/v1/` order.
pub static BANKS: [Bank; 3] = [
    Bank {
        identifier: "LEAN_OF_RETAIL_UAE",
        name: "Lean Open Finance MockBank",
        bank_type: "RETAIL",
        account_type: "PERSONAL",
        swift_code: "MOCKAE01",
        main_color: "#1beb75",
        data_available: true,
    },
    Bank {
        identifier: "LEAN_OF_CORPORATE_UAE",
        name: "Lean Open Finance Corporate MockBank",
        bank_type: "CORPORATE",
        account_type: "BUSINESS",
        swift_code: "MOCKAE02",
        main_color: "#0b5cff",
        data_available: true,
    },
    Bank {
        identifier: "LEAN_OF_MAINTENANCE_UAE",
        name: "Lean Open Finance Maintenance MockBank",
        bank_type: "RETAIL",
        account_type: "PERSONAL",
        swift_code: "MOCKAE03",
        main_color: "#ff8a00",
        data_available: false,
    },
];

/// Kind of account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubType {
    /// Current account.
    Current,
    /// Savings account.
    Savings,
    /// Credit card (balance owed is a debit).
    CreditCard,
}

impl SubType {
    /// v2 `account_sub_type`.
    pub fn v2(self) -> &'static str {
        match self {
            SubType::Current => "CURRENT",
            SubType::Savings => "SAVINGS",
            SubType::CreditCard => "CREDIT",
        }
    }

    /// The product label in account names (`CURRENT_ACCOUNT Account`).
    pub fn product(self) -> &'static str {
        match self {
            SubType::Current => "CURRENT_ACCOUNT",
            SubType::Savings => "SAVINGS",
            SubType::CreditCard => "CREDIT_CARD",
        }
    }
}

/// A postal address.
#[derive(Debug, Clone)]
pub struct Address {
    /// Full line.
    pub line: String,
    /// Building.
    pub building: String,
    /// Apartment or villa.
    pub apartment: String,
    /// Street.
    pub street: String,
    /// Area.
    pub area: String,
    /// Town.
    pub town: String,
    /// Emirate.
    pub region: String,
    /// PO box.
    pub po_box: String,
}

/// Who the user is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Full legal name.
    pub full_name: String,
    /// First and last name.
    pub short_name: String,
    /// National id.
    pub national_id: String,
    /// Birth date.
    pub birth_date: NaiveDate,
    /// `M` or `F`.
    pub gender: &'static str,
    /// Email.
    pub email: String,
    /// Mobile number.
    pub mobile: String,
    /// Address.
    pub address: Address,
}

/// One booked transaction.
#[derive(Debug, Clone)]
pub struct Txn {
    /// Transaction id.
    pub id: Uuid,
    /// Booking date.
    pub date: NaiveDate,
    /// Description.
    pub information: String,
    /// Bank reference.
    pub reference: String,
    /// Amount in fils (always positive).
    pub amount: i64,
    /// Money in.
    pub credit: bool,
    /// Balance after this transaction, in fils (negative: owed).
    pub balance_after: i64,
    /// Merchant name and category code.
    pub merchant: (&'static str, &'static str),
    /// Lean transaction type.
    pub kind: &'static str,
}

/// One bank account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Account id.
    pub id: Uuid,
    /// Kind.
    pub sub_type: SubType,
    /// IBAN.
    pub iban: String,
    /// Local account number.
    pub number: String,
    /// Currency code.
    pub currency: &'static str,
    /// Opening date.
    pub opened: NaiveDate,
    /// Credit limit in fils (cards only).
    pub credit_limit: Option<i64>,
    /// Balance before the first listed transaction, in fils.
    pub opening_balance: i64,
    /// Transactions, oldest first.
    pub transactions: Vec<Txn>,
}

impl Account {
    /// Balance after the last transaction, in fils.
    pub fn closing_balance(&self) -> i64 {
        self.transactions
            .last()
            .map_or(self.opening_balance, |t| t.balance_after)
    }

    /// `Angelika Jacobs CURRENT_ACCOUNT Account`
    pub fn name(&self, user: &TestUser) -> String {
        format!(
            "{} {} Account",
            user.identity.short_name,
            self.sub_type.product()
        )
    }
}

/// A Mockbank test user.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Login name.
    pub username: String,
    /// Password.
    pub password: String,
    /// Login behaviour.
    pub behaviour: Behaviour,
    /// The user's bank.
    pub bank: &'static Bank,
    /// Who they are.
    pub identity: Identity,
    /// Their accounts.
    pub accounts: Vec<Account>,
}

const FIRST: [&str; 12] = [
    "Angelika", "Omar", "Fatima", "Rahul", "Mae", "Yousef", "Layla", "Daniel", "Aisha", "Karim",
    "Sofia", "Hamdan",
];
const MIDDLE: [&str; 6] = ["Art", "Salem", "Noor", "Darlene", "Ali", "Grace"];
const LAST: [&str; 10] = [
    "Jacobs",
    "Al Mansouri",
    "Haddad",
    "Menon",
    "Zulauf",
    "Khoury",
    "Rahman",
    "Fischer",
    "Nasser",
    "Okafor",
];
const MERCHANTS: [(&str, &str, &str); 10] = [
    ("Carrefour", "5411", "POS"),
    ("Emaar", "6513", "BILL_PAYMENTS"),
    ("Noon", "5399", "ONLINE_PURCHASE"),
    ("Talabat", "5814", "ONLINE_PURCHASE"),
    ("DEWA", "4900", "BILL_PAYMENTS"),
    ("Etisalat", "4814", "BILL_PAYMENTS"),
    ("ADNOC", "5541", "POS"),
    ("Starbucks", "5814", "POS"),
    ("Amazon.ae", "5942", "ONLINE_PURCHASE"),
    ("Careem", "4121", "ONLINE_PURCHASE"),
];
const TOWNS: [(&str, &str); 4] = [
    ("Dubai", "Dubai"),
    ("Abu Dhabi", "Abu Dhabi"),
    ("Sharjah", "Sharjah"),
    ("Al Ain", "Abu Dhabi"),
];

fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

fn uuid(rng: &mut ChaCha8Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

fn digits(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn letters(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'A' + rng.random_range(0..26u8)))
        .collect()
}

fn identity(rng: &mut ChaCha8Rng) -> Identity {
    let first = pick(rng, &FIRST);
    let middle = pick(rng, &MIDDLE);
    let last = pick(rng, &LAST);
    let (town, region) = pick(rng, &TOWNS);
    let building = format!(
        "{} Tower",
        pick(rng, &["Marina", "Burj", "Al Noor", "Palm"])
    );
    let street = format!(
        "{} Street",
        pick(rng, &["Sheikh Zayed", "Al Wasl", "Hamdan", "Corniche"])
    );
    let apartment = format!("{}", rng.random_range(101..2400));
    let po_box = digits(rng, 5);
    Identity {
        full_name: format!("{first} {middle} {last}"),
        short_name: format!("{first} {last}"),
        national_id: format!(
            "784-{}-{}-{}",
            rng.random_range(1960..2004),
            digits(rng, 7),
            digits(rng, 1)
        ),
        birth_date: NaiveDate::from_ymd_opt(
            rng.random_range(1960..2004),
            rng.random_range(1..13),
            rng.random_range(1..29),
        )
        .unwrap_or_default(),
        gender: pick(rng, &["M", "F"]),
        email: format!(
            "{}.{}@example.ae",
            first.to_lowercase(),
            last.to_lowercase().replace(' ', "")
        ),
        mobile: format!("9715{}", digits(rng, 8)),
        address: Address {
            line: format!("{apartment}, {building}, {street}, {town}, UAE"),
            building,
            apartment,
            street: street.clone(),
            area: street,
            town: town.into(),
            region: region.into(),
            po_box,
        },
    }
}

/// A Luhn-free but well-formed UAE IBAN: `AE` + 2 check digits + 3 bank + 16 account.
fn iban(rng: &mut ChaCha8Rng, number: &str) -> String {
    format!("AE{}033{number}", digits(rng, 2))
}

/// A transaction before it is booked: amount, credit, description, merchant, kind.
type Posting = (
    i64,
    bool,
    String,
    (&'static str, &'static str),
    &'static str,
);

fn account(rng: &mut ChaCha8Rng, sub_type: SubType, today: NaiveDate, months: i64) -> Account {
    let number = digits(rng, 16);
    let start = today - Days::days(30 * months);
    let (opening_balance, credit_limit) = match sub_type {
        SubType::Current => (rng.random_range(500_000..2_500_000), None),
        SubType::Savings => (rng.random_range(1_000_000..9_000_000), None),
        SubType::CreditCard => (-rng.random_range(50_000..400_000), Some(2_500_000)),
    };
    let mut balance = opening_balance;
    let mut transactions = Vec::new();
    let mut day = start;
    while day <= today {
        let mut todays: Vec<Posting> = Vec::new();
        match sub_type {
            SubType::Current => {
                if day.day() == 25 {
                    todays.push((
                        rng.random_range(1_800_000..3_200_000),
                        true,
                        "SALARY CREDIT".into(),
                        ("Payroll", "0000"),
                        "SALARY",
                    ));
                }
                if rng.random_bool(0.45) {
                    let (merchant, mcc, kind) = pick(rng, &MERCHANTS);
                    let info = format!("{} {} ARE", merchant.to_uppercase(), digits(rng, 4));
                    todays.push((
                        rng.random_range(1_500..120_000),
                        false,
                        info,
                        (merchant, mcc),
                        kind,
                    ));
                }
            }
            SubType::Savings => {
                if day.day() == 1 {
                    todays.push((
                        rng.random_range(100_000..400_000),
                        true,
                        "TRANSFER FROM CURRENT ACCOUNT".into(),
                        ("Self", "0000"),
                        "TRANSFER",
                    ));
                }
                if day.day() == 28 {
                    todays.push((
                        (balance.max(0) / 400).max(1),
                        true,
                        "PROFIT CREDIT".into(),
                        ("Bank", "0000"),
                        "INTEREST",
                    ));
                }
            }
            SubType::CreditCard => {
                if rng.random_bool(0.35) {
                    let (merchant, mcc, kind) = pick(rng, &MERCHANTS);
                    let info = format!("{} CARD PURCHASE", merchant.to_uppercase());
                    todays.push((
                        rng.random_range(2_000..90_000),
                        false,
                        info,
                        (merchant, mcc),
                        kind,
                    ));
                }
                if day.day() == 5 && balance < 0 {
                    todays.push((
                        (-balance) / 2,
                        true,
                        "CARD PAYMENT THANK YOU".into(),
                        ("Bank", "0000"),
                        "CARD_PAYMENT",
                    ));
                }
            }
        }
        for (amount, credit, information, merchant, kind) in todays {
            balance += if credit { amount } else { -amount };
            transactions.push(Txn {
                id: uuid(rng),
                date: day,
                information,
                reference: letters(rng, 18),
                amount,
                credit,
                balance_after: balance,
                merchant,
                kind,
            });
        }
        day += Days::days(1);
    }
    Account {
        id: uuid(rng),
        sub_type,
        iban: iban(rng, &number),
        number,
        currency: "AED",
        opened: start - Days::days(rng.random_range(30..900)),
        credit_limit,
        opening_balance,
        transactions,
    }
}

/// The five test users for `seed`, with transactions up to `today`.
pub fn test_users(seed: u64, today: NaiveDate) -> Vec<TestUser> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let plan: [(&str, Behaviour, usize, &[SubType]); 5] = [
        ("otp_user", Behaviour::OtpRequired, 0, &[SubType::Current]),
        (
            "no_otp_user",
            Behaviour::NoOtp,
            0,
            &[SubType::Current, SubType::Savings],
        ),
        (
            "multi_account_user",
            Behaviour::MultiAccount,
            0,
            &[SubType::Current, SubType::Savings, SubType::CreditCard],
        ),
        (
            "corporate_user",
            Behaviour::Corporate,
            1,
            &[SubType::Current],
        ),
        (
            "maintenance_user",
            Behaviour::BankMaintenance,
            2,
            &[SubType::Current],
        ),
    ];
    plan.iter()
        .map(|(username, behaviour, bank, kinds)| {
            let password = format!("mb-{}", digits(&mut rng, 6));
            let identity = identity(&mut rng);
            let accounts = kinds
                .iter()
                .map(|kind| account(&mut rng, *kind, today, 4))
                .collect();
            TestUser {
                username: (*username).into(),
                password,
                behaviour: *behaviour,
                bank: &BANKS[*bank],
                identity,
                accounts,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 5, 13).unwrap()
    }

    #[test]
    fn same_seed_same_users() {
        let a = test_users(7, today());
        let b = test_users(7, today());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let c = test_users(8, today());
        assert_ne!(a[0].password, c[0].password);
    }

    #[test]
    fn five_users_cover_the_required_behaviours() {
        let users = test_users(7, today());
        let behaviours: Vec<_> = users.iter().map(|u| u.behaviour).collect();
        assert_eq!(
            behaviours,
            [
                Behaviour::OtpRequired,
                Behaviour::NoOtp,
                Behaviour::MultiAccount,
                Behaviour::Corporate,
                Behaviour::BankMaintenance
            ]
        );
        let multi = &users[2];
        assert!(multi
            .accounts
            .iter()
            .any(|a| a.sub_type == SubType::CreditCard));
        assert_eq!(users[3].bank.bank_type, "CORPORATE");
        assert!(!users[4].bank.data_available);
    }

    #[test]
    fn running_balances_add_up() {
        for user in test_users(42, today()) {
            for account in &user.accounts {
                let mut balance = account.opening_balance;
                assert!(
                    account.transactions.len() > 3,
                    "a few months of transactions"
                );
                for t in &account.transactions {
                    balance += if t.credit { t.amount } else { -t.amount };
                    assert_eq!(t.balance_after, balance);
                    assert!(t.amount > 0);
                }
                assert_eq!(account.closing_balance(), balance);
            }
        }
    }
}
