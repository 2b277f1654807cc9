//! Lean's error envelopes, as `lean_error` presets, and the texts of Lean's data
//! errors (`status: FAILED`).
//!
//! Statuses, HTTP codes and messages come from the answers recorded in Lean's
//! Postman collection (README, "Where Lean's shapes come from") where Lean's
//! collection has one; [`Preset::is_recorded`] says which. The others follow
//! Lean's general-errors table, which lists codes and meanings but not the
//! exact texts, so their messages are leanproxy's wording.

use std::fmt;

use http::StatusCode;

use crate::lean::ErrorEnvelope;

/// One of Lean's non-2xx answers, produced by the `lean_error` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// 500 `INTERNAL_SERVER_ERROR` (recorded, with `results_id`).
    InternalServerError,
    /// 429 `RATE_LIMIT_EXCEEDED`.
    RateLimitExceeded,
    /// 400 `INVALID_PARAMETERS` (recorded).
    InvalidParameters,
    /// 400 `MISSING_PARAMETERS`.
    MissingParameters,
    /// 404 `UNKNOWN_ENTITY` (recorded).
    UnknownEntity,
    /// 404 `UNKNOWN_ACCOUNT` (recorded).
    UnknownAccount,
    /// 404 `UNKNOWN_RESULTS_ID` (recorded).
    UnknownResultsId,
    /// 404 `DATA_NOT_FOUND` (recorded).
    DataNotFound,
    /// 403 `CONSENT_EXPIRED` (recorded, no `results_id`).
    ConsentExpired,
    /// 409 `CUSTOMER_ALREADY_EXISTS` (recorded, no `results_id`).
    CustomerAlreadyExists,
    /// 429 `DUPLICATED_REQUEST` (recorded: a refresh already pending).
    DuplicatedRequest,
    /// 404 `INVALID_URL`.
    InvalidUrl,
    /// 405 `INVALID_HTTP_METHOD`.
    InvalidHttpMethod,
    /// 403 `INSUFFICIENT_ACCESS_LEVEL` (a sandbox-only app calling production).
    InsufficientAccessLevel,
    /// 403 `INCORRECT_ACCESS_LEVEL` (no permission for the service).
    IncorrectAccessLevel,
    /// 403 `INVALID_CERTIFICATE`.
    InvalidCertificate,
    /// 401 `CERTIFICATE_TOKEN_MISMATCH` (mTLS certificate not assigned to the token).
    CertificateTokenMismatch,
}

/// What Lean sends for one preset.
struct Spec {
    name: &'static str,
    code: StatusCode,
    message: &'static str,
    results_id: bool,
    recorded: bool,
}

/// What Lean sends for each preset, in [`Preset::ALL`] order (the enum's).
const SPECS: [Spec; 17] = [
    // InternalServerError
    Spec {
        name: "INTERNAL_SERVER_ERROR",
        code: StatusCode::INTERNAL_SERVER_ERROR,
        message: "Something has gone wrong. If you continue to see this error, please get in touch with Lean.",
        results_id: true,
        recorded: true,
    },
    // RateLimitExceeded
    Spec {
        name: "RATE_LIMIT_EXCEEDED",
        code: StatusCode::TOO_MANY_REQUESTS,
        message: "Too many requests have been made. Please wait before making another request.",
        results_id: false,
        recorded: false,
    },
    // InvalidParameters
    Spec {
        name: "INVALID_PARAMETERS",
        code: StatusCode::BAD_REQUEST,
        message: "The request is badly formatted or a parameter of the wrong type has been provided",
        results_id: true,
        recorded: true,
    },
    // MissingParameters
    Spec {
        name: "MISSING_PARAMETERS",
        code: StatusCode::BAD_REQUEST,
        message: "A required parameter is missing from the request",
        results_id: true,
        recorded: false,
    },
    // UnknownEntity
    Spec {
        name: "UNKNOWN_ENTITY",
        code: StatusCode::NOT_FOUND,
        message: "The entity_id provided did not match an account in our records.",
        results_id: true,
        recorded: true,
    },
    // UnknownAccount
    Spec {
        name: "UNKNOWN_ACCOUNT",
        code: StatusCode::NOT_FOUND,
        message: "The account_id provided does not match an account with the entity_id provided.",
        results_id: true,
        recorded: true,
    },
    // UnknownResultsId
    Spec {
        name: "UNKNOWN_RESULTS_ID",
        code: StatusCode::NOT_FOUND,
        message: "The results_id provided has not been recognized by Lean or has not been processed yet",
        results_id: true,
        recorded: true,
    },
    // DataNotFound
    Spec {
        name: "DATA_NOT_FOUND",
        code: StatusCode::NOT_FOUND,
        message: "The data requested could not be found",
        results_id: false,
        recorded: true,
    },
    // ConsentExpired
    Spec {
        name: "CONSENT_EXPIRED",
        code: StatusCode::FORBIDDEN,
        message: "Consent was suspended, revoked, or expired. New consent is required, please connect the entity once again.",
        results_id: false,
        recorded: true,
    },
    // CustomerAlreadyExists
    Spec {
        name: "CUSTOMER_ALREADY_EXISTS",
        code: StatusCode::CONFLICT,
        message: "A customer already exists for the app_user_id you have provided.",
        results_id: false,
        recorded: true,
    },
    // DuplicatedRequest
    Spec {
        name: "DUPLICATED_REQUEST",
        code: StatusCode::TOO_MANY_REQUESTS,
        message: "Data refresh is already pending.",
        results_id: false,
        recorded: true,
    },
    // InvalidUrl
    Spec {
        name: "INVALID_URL",
        code: StatusCode::NOT_FOUND,
        message: "The URL requested does not exist",
        results_id: false,
        recorded: false,
    },
    // InvalidHttpMethod
    Spec {
        name: "INVALID_HTTP_METHOD",
        code: StatusCode::METHOD_NOT_ALLOWED,
        message: "The HTTP method used is not supported for this URL",
        results_id: false,
        recorded: false,
    },
    // InsufficientAccessLevel
    Spec {
        name: "INSUFFICIENT_ACCESS_LEVEL",
        code: StatusCode::FORBIDDEN,
        message: "This application only has access to the sandbox: use sandbox.leantech.me instead of api.leantech.me",
        results_id: false,
        recorded: false,
    },
    // IncorrectAccessLevel
    Spec {
        name: "INCORRECT_ACCESS_LEVEL",
        code: StatusCode::FORBIDDEN,
        message: "This application does not have permission to use this service",
        results_id: false,
        recorded: false,
    },
    // InvalidCertificate
    Spec {
        name: "INVALID_CERTIFICATE",
        code: StatusCode::FORBIDDEN,
        message: "The client certificate provided is invalid",
        results_id: false,
        recorded: false,
    },
    // CertificateTokenMismatch
    Spec {
        name: "CERTIFICATE_TOKEN_MISMATCH",
        code: StatusCode::UNAUTHORIZED,
        message: "The client certificate provided is not assigned to the lean-app-token provided",
        results_id: false,
        recorded: false,
    },
];

impl Preset {
    /// Every preset, in the order they are listed in errors and docs.
    pub const ALL: [Preset; 17] = [
        Preset::InternalServerError,
        Preset::RateLimitExceeded,
        Preset::InvalidParameters,
        Preset::MissingParameters,
        Preset::UnknownEntity,
        Preset::UnknownAccount,
        Preset::UnknownResultsId,
        Preset::DataNotFound,
        Preset::ConsentExpired,
        Preset::CustomerAlreadyExists,
        Preset::DuplicatedRequest,
        Preset::InvalidUrl,
        Preset::InvalidHttpMethod,
        Preset::InsufficientAccessLevel,
        Preset::IncorrectAccessLevel,
        Preset::InvalidCertificate,
        Preset::CertificateTokenMismatch,
    ];

    fn spec(self) -> &'static Spec {
        // `ALL` lists the variants in declaration order (a test checks it).
        &SPECS[self as usize]
    }

    /// Lean's status code, e.g. `RATE_LIMIT_EXCEEDED`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The HTTP status Lean answers with.
    pub fn status_code(self) -> StatusCode {
        self.spec().code
    }

    /// The envelope's `message`.
    pub fn message(self) -> &'static str {
        self.spec().message
    }

    /// Whether Lean puts a `results_id` in this envelope.
    pub fn has_results_id(self) -> bool {
        self.spec().results_id
    }

    /// Whether the message is Lean's recorded text (otherwise it is leanproxy's
    /// wording of Lean's documented meaning).
    pub fn is_recorded(self) -> bool {
        self.spec().recorded
    }

    /// The preset named `name` (Lean's status code, any case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// Lean's envelope for this error, stamped now, with a fresh `results_id`
    /// where Lean sends one.
    pub fn envelope(&self) -> (StatusCode, ErrorEnvelope) {
        let spec = self.spec();
        let mut envelope = ErrorEnvelope::new(spec.name, spec.message);
        if spec.results_id {
            envelope.results_id = Some(uuid::Uuid::new_v4().to_string());
        }
        (spec.code, envelope)
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `granular_status_code` a `failed` fault uses when none is given.
pub const DEFAULT_GRANULAR_STATUS: &str = "BANK_MAINTENANCE";

/// The `granular_status_code`s Lean documents for data errors (`status: FAILED`,
/// HTTP 200, from Lean's general-errors table). Lean's published list is
/// incomplete, so `failed` accepts other upper-case codes too.
pub const GRANULAR_STATUS_CODES: [&str; 10] = [
    "UNSEEN_BANK_ERROR",
    "BANK_MAINTENANCE",
    "BANK_ISSUE",
    "LEAN_ERROR",
    "DISABLED_BY_LEAN",
    "DISABLED_BY_CLIENT",
    "DUPLICATED_REQUEST",
    "EU_ACCOUNT_LOCKED",
    "LOGGED_IN_ELSEWHERE",
    "UNSUPPORTED_BY_BANK",
];

#[cfg(test)]
mod tests {
    #[test]
    fn all_lists_the_presets_in_their_table_order() {
        for (i, preset) in super::Preset::ALL.iter().enumerate() {
            assert_eq!(*preset as usize, i, "{preset:?}");
        }
        assert_eq!(super::Preset::ALL.len(), super::SPECS.len());
    }

    use super::*;

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    #[test]
    fn names_round_trip_in_any_case() {
        for preset in Preset::ALL {
            assert_eq!(Preset::from_name(preset.name()), Some(preset));
            assert_eq!(
                Preset::from_name(&preset.name().to_ascii_lowercase()),
                Some(preset)
            );
            assert_eq!(preset.to_string(), preset.name());
        }
        assert_eq!(Preset::from_name("EXPLODE"), None);
    }

    #[test]
    fn envelopes_have_lean_keys_and_results_id_where_lean_sends_one() {
        for preset in Preset::ALL {
            let (code, envelope) = preset.envelope();
            assert_eq!(code, preset.status_code());
            let v = serde_json::to_value(&envelope).unwrap();
            let mut expected = vec!["message", "metadata", "status", "timestamp"];
            if preset.has_results_id() {
                expected.push("results_id");
                expected.sort();
            }
            assert_eq!(keys(&v), expected, "{preset}");
            assert_eq!(v["status"], preset.name());
            assert_eq!(v["message"], preset.message());
            assert!(v["metadata"].is_null());
            assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        }
    }

    #[test]
    fn recorded_presets_match_the_recorded_answers() {
        let (code, e) = Preset::InternalServerError.envelope();
        assert_eq!(code, 500);
        assert!(e.results_id.is_some());
        let (code, e) = Preset::ConsentExpired.envelope();
        assert_eq!(code, 403);
        assert!(e.results_id.is_none());
        assert_eq!(Preset::RateLimitExceeded.status_code(), 429);
        assert_eq!(Preset::DuplicatedRequest.status_code(), 429);
        assert_eq!(Preset::CertificateTokenMismatch.status_code(), 401);
        assert_eq!(Preset::UnknownEntity.status_code(), 404);
        assert_eq!(Preset::InvalidParameters.status_code(), 400);
    }

    #[test]
    fn each_envelope_gets_a_fresh_results_id() {
        let (_, a) = Preset::UnknownEntity.envelope();
        let (_, b) = Preset::UnknownEntity.envelope();
        assert_ne!(a.results_id, b.results_id);
        uuid::Uuid::parse_str(a.results_id.as_deref().unwrap()).unwrap();
    }

    #[test]
    fn status_detail_names_the_code() {
        use crate::lean::status_detail;
        let d = status_detail("LOGGED_IN_ELSEWHERE");
        assert_eq!(d["granular_status_code"], "LOGGED_IN_ELSEWHERE");
        assert!(d["status_additional_info"].is_string());
    }
}
