//! The Mockbank's regions: Lean's UAE sandbox (the default) and its KSA one
//! (`mockbank.region = "ksa"`). Everything that differs between them is here:
//! currency, banks, how people, addresses, phones, national ids and IBANs
//! look, the merchants of the generated transactions, the permissions Link
//! grants. The users, shapes and payments read it from the Mockbank's region;
//! nothing else names a country.

use serde::Serialize;

use super::users::Bank;

/// Which of Lean's sandboxes the Mockbank emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// Lean's UAE sandbox (`sandbox.leantech.me`): AED, UAE banks.
    #[default]
    Uae,
    /// Lean's KSA sandbox (`sandbox.sa.leantech.me`): SAR, SAMA open banking
    /// banks, the KSA-only insights.
    Ksa,
}

/// A merchant: name, merchant category code, Lean transaction type.
pub(super) type Merchant = (&'static str, &'static str, &'static str);

/// An employer of the KSA users, as `/insights/v2/income/employment` matches
/// it: the name on the salary, the registered names and the commercial
/// registration number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Employer {
    /// The name the bank shows on salary credits.
    pub bank_name: &'static str,
    /// Registered name in English.
    pub en: &'static str,
    /// Registered name in Arabic.
    pub ar: &'static str,
    /// Commercial registration number.
    pub cr_number: u64,
}

/// The region's people and places, for the generated users.
pub(super) struct People {
    pub(super) first: &'static [&'static str],
    pub(super) middle: &'static [&'static str],
    pub(super) last: &'static [&'static str],
    /// Town and its emirate or region.
    pub(super) towns: &'static [(&'static str, &'static str)],
    pub(super) buildings: &'static [&'static str],
    pub(super) streets: &'static [&'static str],
    pub(super) merchants: &'static [Merchant],
    /// Beneficiaries: full name, short name, BIC, bank.
    pub(super) beneficiaries: [(&'static str, &'static str, &'static str, &'static str); 2],
    /// Direct debits: biller and amount in the minor unit.
    pub(super) direct_debits: [(&'static str, i64); 2],
}

/// The UAE banks, in `/banks/v1/` order.
pub static UAE_BANKS: [Bank; 3] = [
    Bank {
        identifier: "LEAN_OF_RETAIL_UAE",
        name: "Lean Open Finance MockBank",
        bank_type: "RETAIL",
        account_type: "PERSONAL",
        swift_code: "MOCKAE01",
        main_color: "#1beb75",
        logo: WHITE_LEAN,
        region: Region::Uae,
        data_available: true,
    },
    Bank {
        identifier: "LEAN_OF_CORPORATE_UAE",
        name: "Lean Open Finance Corporate MockBank",
        bank_type: "CORPORATE",
        account_type: "BUSINESS",
        swift_code: "MOCKAE02",
        main_color: "#0b5cff",
        logo: WHITE_LEAN,
        region: Region::Uae,
        data_available: true,
    },
    Bank {
        identifier: "LEAN_OF_MAINTENANCE_UAE",
        name: "Lean Open Finance Maintenance MockBank",
        bank_type: "RETAIL",
        account_type: "PERSONAL",
        swift_code: "MOCKAE03",
        main_color: "#ff8a00",
        logo: WHITE_LEAN,
        region: Region::Uae,
        data_available: false,
    },
];

/// The KSA banks, in `/banks/v1/` order. `LEA1_SAMAOB_SAU` is Lean's KSA
/// mock bank as its webhook samples show it (name, logo, colour, swift);
/// `LEANMB1` is the v1-era mock bank of Lean's KSA data docs. The corporate
/// and maintenance banks are the Mockbank's own, like UAE's.
pub static KSA_BANKS: [Bank; 4] = [
    Bank {
        identifier: "LEA1_SAMAOB_SAU",
        name: "Mockbank 1",
        bank_type: "RETAIL",
        account_type: "PERSONAL",
        swift_code: "MOCKSA01",
        main_color: "#1beb75",
        logo: "https://cdn.leantech.me/img/banks/color-gmockbank2.png",
        region: Region::Ksa,
        data_available: true,
    },
    Bank {
        identifier: "LEANMB1",
        name: "Lean Mock Bank",
        bank_type: "RETAIL",
        account_type: "PERSONAL",
        swift_code: "MOCKSA02",
        main_color: "#6a4cff",
        logo: WHITE_LEAN,
        region: Region::Ksa,
        data_available: true,
    },
    Bank {
        identifier: "LEA1_SAMAOB_CORP_SAU",
        name: "Mockbank 1 Corporate",
        bank_type: "CORPORATE",
        account_type: "BUSINESS",
        swift_code: "MOCKSA03",
        main_color: "#0b5cff",
        logo: WHITE_LEAN,
        region: Region::Ksa,
        data_available: true,
    },
    Bank {
        identifier: "LEA1_SAMAOB_MAINT_SAU",
        name: "Mockbank 1 Maintenance",
        bank_type: "RETAIL",
        account_type: "PERSONAL",
        swift_code: "MOCKSA04",
        main_color: "#ff8a00",
        logo: WHITE_LEAN,
        region: Region::Ksa,
        data_available: false,
    },
];

const WHITE_LEAN: &str = "https://cdn.leantech.me/img/banks/white-lean.png";

static UAE_PEOPLE: People = People {
    first: &[
        "Angelika", "Omar", "Fatima", "Rahul", "Mae", "Yousef", "Layla", "Daniel", "Aisha",
        "Karim", "Sofia", "Hamdan",
    ],
    middle: &["Art", "Salem", "Noor", "Darlene", "Ali", "Grace"],
    last: &[
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
    ],
    towns: &[
        ("Dubai", "Dubai"),
        ("Abu Dhabi", "Abu Dhabi"),
        ("Sharjah", "Sharjah"),
        ("Al Ain", "Abu Dhabi"),
    ],
    buildings: &["Marina", "Burj", "Al Noor", "Palm"],
    streets: &["Sheikh Zayed", "Al Wasl", "Hamdan", "Corniche"],
    merchants: &[
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
    ],
    beneficiaries: [
        (
            "Khalid Al Nuaimi",
            "Khalid Nuaimi",
            "EBILAEAD",
            "Emirates NBD",
        ),
        (
            "Priya Nair",
            "Priya Nair",
            "NBADAEAA",
            "First Abu Dhabi Bank",
        ),
    ],
    direct_debits: [("DEWA", 48_250), ("Etisalat", 39_900)],
};

static KSA_PEOPLE: People = People {
    first: &[
        "Mohammed", "Abdullah", "Noura", "Fahad", "Sara", "Faisal", "Reem", "Khalid", "Lama",
        "Turki", "Hessa", "Nawaf",
    ],
    middle: &["Abdulaziz", "Saleh", "Ibrahim", "Nasser", "Hamad", "Sultan"],
    last: &[
        "Al Qahtani",
        "Al Otaibi",
        "Al Ghamdi",
        "Al Harbi",
        "Al Dosari",
        "Al Shehri",
        "Al Zahrani",
        "Al Mutairi",
        "Al Anazi",
        "Al Subaie",
    ],
    towns: &[
        ("Riyadh", "Riyadh Region"),
        ("Jeddah", "Makkah Region"),
        ("Dammam", "Eastern Region"),
        ("Al Khobar", "Eastern Region"),
    ],
    buildings: &["Al Olaya", "Al Malqa", "Al Rawdah", "Al Shati"],
    streets: &[
        "King Fahd Road",
        "Prince Sultan Street",
        "Tahlia Street",
        "King Abdulaziz Road",
    ],
    merchants: &[
        ("Panda", "5411", "POS"),
        ("Ejar", "6513", "BILL_PAYMENTS"),
        ("Noon", "5399", "ONLINE_PURCHASE"),
        ("HungerStation", "5814", "ONLINE_PURCHASE"),
        ("SEC", "4900", "BILL_PAYMENTS"),
        ("STC", "4814", "BILL_PAYMENTS"),
        ("Aldrees", "5541", "POS"),
        ("Barns", "5814", "POS"),
        ("Jarir", "5942", "ONLINE_PURCHASE"),
        ("Careem", "4121", "ONLINE_PURCHASE"),
    ],
    beneficiaries: [
        (
            "Abdulrahman Al Shammari",
            "Abdulrahman Shammari",
            "RJHISARI",
            "Al Rajhi Bank",
        ),
        (
            "Maha Al Johani",
            "Maha Johani",
            "NCBKSAJE",
            "Saudi National Bank",
        ),
    ],
    direct_debits: [("SEC", 31_500), ("STC", 23_000)],
};

/// The employers of the KSA users' salaries (invented companies).
pub(super) static KSA_EMPLOYERS: [Employer; 4] = [
    Employer {
        bank_name: "Riyadh Logistics",
        en: "Riyadh Logistics Co",
        ar: "شركة الرياض للخدمات اللوجستية",
        cr_number: 1010123456,
    },
    Employer {
        bank_name: "NAJD SOFTWARE",
        en: "Najd Software House",
        ar: "دار نجد للبرمجيات",
        cr_number: 1010234567,
    },
    Employer {
        bank_name: "Red Sea Retail",
        en: "Red Sea Retail Co",
        ar: "شركة البحر الأحمر للتجزئة",
        cr_number: 4030345678,
    },
    Employer {
        bank_name: "EASTERN ENERGY",
        en: "Eastern Energy Services",
        ar: "خدمات الطاقة الشرقية",
        cr_number: 2050456789,
    },
];

impl Region {
    /// Every region, the default first.
    pub const ALL: [Region; 2] = [Region::Uae, Region::Ksa];

    /// The name `mockbank.region` takes.
    pub fn name(self) -> &'static str {
        match self {
            Region::Uae => "uae",
            Region::Ksa => "ksa",
        }
    }

    /// ISO 4217 currency of its accounts, payments and insights.
    pub fn currency(self) -> &'static str {
        match self {
            Region::Uae => "AED",
            Region::Ksa => "SAR",
        }
    }

    /// ISO 3166 alpha-2 country code (`AE`, `SA`), as IBANs and identities use it.
    pub fn country(self) -> &'static str {
        match self {
            Region::Uae => "AE",
            Region::Ksa => "SA",
        }
    }

    /// ISO 3166 alpha-3 country code (`ARE`, `SAU`), as banks and destinations use it.
    pub fn country3(self) -> &'static str {
        match self {
            Region::Uae => "ARE",
            Region::Ksa => "SAU",
        }
    }

    /// The country's name, as account identities spell it.
    pub fn country_name(self) -> &'static str {
        match self {
            Region::Uae => "United Arab Emirates",
            Region::Ksa => "Saudi Arabia",
        }
    }

    /// The banks the Mockbank lists in this region.
    pub fn banks(self) -> &'static [Bank] {
        match self {
            Region::Uae => &UAE_BANKS,
            Region::Ksa => &KSA_BANKS,
        }
    }

    /// The region's mock bank: where the stable users bank.
    pub fn mock_bank(self) -> &'static Bank {
        &self.banks()[0]
    }

    /// The bank a destination gets when none is given.
    pub(super) fn destination_bank(self) -> &'static str {
        match self {
            Region::Uae => "MOCKBANK_UAE",
            Region::Ksa => "LEA1_SAMAOB_SAU",
        }
    }

    /// The time zone booked transactions carry.
    pub(super) fn time_zone(self) -> &'static str {
        match self {
            Region::Uae => "UTC+04:00",
            Region::Ksa => "UTC+03:00",
        }
    }

    /// The region's people, places and merchants.
    pub(super) fn people(self) -> &'static People {
        match self {
            Region::Uae => &UAE_PEOPLE,
            Region::Ksa => &KSA_PEOPLE,
        }
    }

    /// The region of a Link script path (`/ae/`, `/sa/`).
    pub(super) fn of_link(region: super::link::Region) -> Region {
        match region {
            super::link::Region::Ae => Region::Uae,
            super::link::Region::Sa => Region::Ksa,
        }
    }

    /// The Link region whose permission names this region takes.
    pub(super) fn link(self) -> super::link::Region {
        match self {
            Region::Uae => super::link::Region::Ae,
            Region::Ksa => super::link::Region::Sa,
        }
    }
}

/// A Saudi IBAN: `SA`, two check digits (ISO 13616, mod 97), a two-digit
/// bank code and an 18-digit account number: 24 characters.
pub(super) fn saudi_iban(bank_code: &str, account: &str) -> String {
    let bban = format!("{bank_code}{account}");
    let check = 98 - mod97(&format!("{bban}SA00"));
    format!("SA{check:02}{bban}")
}

/// Whether `iban`'s check digits are right (ISO 13616).
pub(super) fn iban_valid(iban: &str) -> bool {
    iban.len() > 4
        && iban.is_ascii()
        && iban.chars().all(|c| c.is_ascii_alphanumeric())
        && mod97(&format!("{}{}", &iban[4..], &iban[..4])) == 1
}

/// `text` (digits and upper-case letters, `A` = 10 …) modulo 97.
fn mod97(text: &str) -> u32 {
    text.chars().fold(0u32, |acc, c| {
        let v = c.to_digit(36).unwrap_or(0);
        if v >= 10 {
            (acc * 100 + v) % 97
        } else {
            (acc * 10 + v) % 97
        }
    })
}

/// A Saudi national id (`1…`, citizens) or iqama (`2…`, residents): ten
/// digits, the last a Luhn check digit over the first nine.
pub(super) fn saudi_id(first: char, body: &str) -> String {
    let nine = format!("{first}{body}");
    let sum: u32 = nine
        .chars()
        .filter_map(|c| c.to_digit(10))
        .enumerate()
        .map(|(i, d)| {
            // Luhn from the right of the ten-digit number: the check digit is
            // position 0, so the nine digits' last one is doubled.
            if (nine.len() - 1 - i) % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    format!("{nine}{}", (10 - sum % 10) % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saudi_ibans_are_24_characters_with_valid_check_digits() {
        // Lean's own sample account: SA03 8000 0000 6080 1016 7519.
        assert!(iban_valid("SA0380000000608010167519"));
        assert_eq!(
            saudi_iban("80", "000000608010167519"),
            "SA0380000000608010167519"
        );
        let iban = saudi_iban("80", "123456789012345678");
        assert_eq!(iban.len(), 24);
        assert!(iban_valid(&iban));
        assert!(!iban_valid(&iban.replace("SA", "AE")));
    }

    #[test]
    fn saudi_ids_have_ten_digits_and_a_luhn_check_digit() {
        // Check digits worked out by hand (Luhn over the first nine).
        assert_eq!(saudi_id('1', "23456789"), "1234567897");
        assert_eq!(saudi_id('2', "00000000"), "2000000006");
    }

    #[test]
    fn each_region_has_its_currency_and_mock_bank() {
        assert_eq!(Region::default(), Region::Uae);
        assert_eq!(Region::Ksa.currency(), "SAR");
        assert_eq!(Region::Ksa.mock_bank().identifier, "LEA1_SAMAOB_SAU");
        assert!(Region::Ksa
            .banks()
            .iter()
            .any(|b| b.identifier == "LEANMB1"));
        assert_eq!(Region::Uae.mock_bank().identifier, "LEAN_OF_RETAIL_UAE");
    }
}
