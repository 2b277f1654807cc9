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

use super::region::{self, Employer, Region, KSA_EMPLOYERS};

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
    /// Logo URL.
    pub logo: &'static str,
    /// Its region.
    pub region: Region,
    /// Whether data calls work (false: maintenance).
    pub data_available: bool,
}

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
        self.shown_name(user).to_string()
    }

    /// The account's name as `name` spells it, written where it is shown
    /// (data answers) without a `String` of its own.
    pub fn shown_name<'a>(&'a self, user: &'a TestUser) -> AccountName<'a> {
        AccountName {
            short_name: &user.identity.short_name,
            sub_type: self.sub_type,
        }
    }
}

/// An account's name (`Account::shown_name`), shown with `Display`.
#[derive(Debug, Clone, Copy)]
pub struct AccountName<'a> {
    short_name: &'a str,
    sub_type: SubType,
}

impl std::fmt::Display for AccountName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} Account", self.short_name, self.sub_type.product())
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
    /// Who pays their salary (KSA users; UAE salaries say `SALARY CREDIT`).
    pub employer: Option<&'static Employer>,
    /// Who they are.
    pub identity: Identity,
    /// Their accounts.
    pub accounts: Vec<Account>,
}

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

fn identity(rng: &mut ChaCha8Rng, region: Region) -> Identity {
    let people = region.people();
    let first = pick(rng, people.first);
    let middle = pick(rng, people.middle);
    let last = pick(rng, people.last);
    let (town, province) = pick(rng, people.towns);
    if region == Region::Ksa {
        return saudi_identity(rng, [first, middle, last], (town, province));
    }
    let building = format!("{} Tower", pick(rng, people.buildings));
    let street = format!("{} Street", pick(rng, people.streets));
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
        birth_date: birth_date(rng),
        gender: pick(rng, &["M", "F"]),
        email: email(first, last, "ae"),
        mobile: format!("9715{}", digits(rng, 8)),
        address: Address {
            line: format!("{apartment}, {building}, {street}, {town}, UAE"),
            building,
            apartment,
            street: street.clone(),
            area: street,
            town: town.into(),
            region: province.into(),
            po_box,
        },
    }
}

fn birth_date(rng: &mut ChaCha8Rng) -> NaiveDate {
    NaiveDate::from_ymd_opt(
        rng.random_range(1960..2004),
        rng.random_range(1..13),
        rng.random_range(1..29),
    )
    .unwrap_or_default()
}

/// `first.last@example.<tld>`
fn email(first: &str, last: &str, tld: &str) -> String {
    format!(
        "{}.{}@example.{tld}",
        first.to_lowercase(),
        last.to_lowercase().replace(' ', "")
    )
}

/// A KSA identity: a three-part name (given, father's, family), a national id
/// (`1…`) or iqama (`2…`) with its check digit, a `+966 5…` mobile and a
/// Saudi national address (building number, street, district, city, postal
/// code).
fn saudi_identity(rng: &mut ChaCha8Rng, name: [&str; 3], place: (&str, &str)) -> Identity {
    let [first, father, family] = name;
    let (town, province) = place;
    let people = Region::Ksa.people();
    let building = digits(rng, 4);
    let street = pick(rng, people.streets).to_string();
    let district = format!("{} District", pick(rng, people.buildings));
    let unit = format!("{}", rng.random_range(1..40));
    let postal_code = format!("{}{}", rng.random_range(1..10), digits(rng, 4));
    let resident = if rng.random_bool(0.25) { '2' } else { '1' };
    Identity {
        full_name: format!("{first} {father} {family}"),
        short_name: format!("{first} {family}"),
        national_id: region::saudi_id(resident, &digits(rng, 8)),
        birth_date: birth_date(rng),
        gender: pick(rng, &["M", "F"]),
        email: email(first, family, "sa"),
        mobile: format!("9665{}", digits(rng, 8)),
        address: Address {
            line: format!("{building} {street}, {district}, {town} {postal_code}, Saudi Arabia"),
            building,
            apartment: unit,
            street,
            area: district,
            town: town.into(),
            region: province.into(),
            po_box: postal_code,
        },
    }
}

/// An IBAN of the region: UAE's is well-formed (`AE` + 2 digits + 3 bank +
/// 16 account); KSA's has valid check digits (`SA` + 2 check + `80`, the
/// mock bank's code as in Lean's KSA sample, + 18 account).
fn iban(rng: &mut ChaCha8Rng, region: Region, number: &str) -> String {
    match region {
        Region::Uae => format!("AE{}033{number}", digits(rng, 2)),
        Region::Ksa => region::saudi_iban("80", number),
    }
}

/// A transaction before it is booked: amount, credit, description, merchant, kind.
type Posting = (
    i64,
    bool,
    String,
    (&'static str, &'static str),
    &'static str,
);

/// What shapes an account's transactions beyond its kind: the region (its
/// merchants and currency), the user's employer (KSA salaries name it) and
/// the monthly finance installment of KSA current accounts.
#[derive(Clone, Copy)]
struct Plan {
    region: Region,
    employer: Option<&'static Employer>,
}

fn account(
    rng: &mut ChaCha8Rng,
    sub_type: SubType,
    today: NaiveDate,
    months: i64,
    plan: Plan,
) -> Account {
    let number = digits(rng, if plan.region == Region::Ksa { 18 } else { 16 });
    let start = today - Days::days(30 * months);
    let (opening_balance, credit_limit) = match sub_type {
        SubType::Current => (rng.random_range(500_000..2_500_000), None),
        SubType::Savings => (rng.random_range(1_000_000..9_000_000), None),
        SubType::CreditCard => (-rng.random_range(50_000..400_000), Some(2_500_000)),
    };
    // KSA current accounts repay a personal finance every month.
    let installment = match (plan.region, sub_type) {
        (Region::Ksa, SubType::Current) => rng.random_range(80_000..240_000),
        _ => 0,
    };
    let mut balance = opening_balance;
    let mut transactions = Vec::new();
    let mut day = start;
    while day <= today {
        for (amount, credit, information, merchant, kind) in
            postings(rng, sub_type, day, balance, plan, installment)
        {
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
        iban: iban(rng, plan.region, &number),
        number,
        currency: plan.region.currency(),
        opened: start - Days::days(rng.random_range(30..900)),
        credit_limit,
        opening_balance,
        transactions,
    }
}

/// The transactions of one day of an account whose balance is `balance`.
fn postings(
    rng: &mut ChaCha8Rng,
    sub_type: SubType,
    day: NaiveDate,
    balance: i64,
    plan: Plan,
    installment: i64,
) -> Vec<Posting> {
    let merchants = plan.region.people().merchants;
    let mut todays: Vec<Posting> = Vec::new();
    match sub_type {
        SubType::Current => {
            if day.day() == 25 {
                let (information, payer) = match plan.employer {
                    Some(e) => (
                        format!("SALARY {}", e.bank_name.to_uppercase()),
                        e.bank_name,
                    ),
                    None => ("SALARY CREDIT".into(), "Payroll"),
                };
                todays.push((
                    rng.random_range(1_800_000..3_200_000),
                    true,
                    information,
                    (payer, "0000"),
                    "SALARY",
                ));
            }
            if installment > 0 && day.day() == 27 {
                todays.push((
                    installment,
                    false,
                    "PERSONAL FINANCE INSTALLMENT".into(),
                    ("Mockbank Finance", "6012"),
                    "LOAN_REPAYMENT",
                ));
            }
            if rng.random_bool(0.45) {
                let (merchant, mcc, kind) = pick(rng, merchants);
                let info = format!(
                    "{} {} {}",
                    merchant.to_uppercase(),
                    digits(rng, 4),
                    plan.region.country3()
                );
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
                let (merchant, mcc, kind) = pick(rng, merchants);
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
    todays
}

/// The five test users of `region` for `seed`, with transactions up to
/// `today`. The same users behave the same in both regions; KSA's bank at
/// the region's banks (`LEA1_SAMAOB_SAU`, and `LEANMB1` for `no_otp_user`).
pub fn test_users(seed: u64, today: NaiveDate, region: Region) -> Vec<TestUser> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Index into `region.banks()` per user: UAE has one bank per behaviour,
    // KSA adds LEANMB1 (index 1) for the stable user.
    let banks: [usize; 5] = match region {
        Region::Uae => [0, 0, 0, 1, 2],
        Region::Ksa => [0, 1, 0, 2, 3],
    };
    let plan: [(&str, Behaviour, &[SubType]); 5] = [
        ("otp_user", Behaviour::OtpRequired, &[SubType::Current]),
        (
            "no_otp_user",
            Behaviour::NoOtp,
            &[SubType::Current, SubType::Savings],
        ),
        (
            "multi_account_user",
            Behaviour::MultiAccount,
            &[SubType::Current, SubType::Savings, SubType::CreditCard],
        ),
        ("corporate_user", Behaviour::Corporate, &[SubType::Current]),
        (
            "maintenance_user",
            Behaviour::BankMaintenance,
            &[SubType::Current],
        ),
    ];
    plan.iter()
        .zip(banks)
        .map(|((username, behaviour, kinds), bank)| {
            let password = format!("mb-{}", digits(&mut rng, 6));
            let identity = identity(&mut rng, region);
            let employer = match region {
                Region::Uae => None,
                Region::Ksa => Some(&KSA_EMPLOYERS[rng.random_range(0..KSA_EMPLOYERS.len())]),
            };
            let plan = Plan { region, employer };
            let accounts = kinds
                .iter()
                .map(|kind| account(&mut rng, *kind, today, 4, plan))
                .collect();
            TestUser {
                username: (*username).into(),
                password,
                behaviour: *behaviour,
                bank: &region.banks()[bank],
                identity,
                employer,
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
        let a = test_users(7, today(), Region::Uae);
        let b = test_users(7, today(), Region::Uae);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let c = test_users(8, today(), Region::Uae);
        assert_ne!(a[0].password, c[0].password);
    }

    #[test]
    fn five_users_cover_the_required_behaviours() {
        let users = test_users(7, today(), Region::Uae);
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
        for user in test_users(42, today(), Region::Uae) {
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
