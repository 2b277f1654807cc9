//! Where leanproxy forwards: Lean's named targets and hosts, and upstream URL
//! validation.

use http::Uri;

use crate::mockbank::Region;

/// Lean's sandbox hosts: header faults are on by default in front of them.
pub const SANDBOX_HOSTS: [&str; 4] = [
    "sandbox.leantech.me",
    "sandbox.sa.leantech.me",
    "mtls.sandbox.leantech.me",
    "mtls.sandbox.sa.leantech.me",
];

/// Lean's production API hosts: faults are refused against them by default.
pub const PRODUCTION_HOSTS: [&str; 4] = [
    "api.leantech.me",
    "api.sa.leantech.me",
    "api2.leantech.me",
    "api2.sa.leantech.me",
];

/// A named target: Lean's hosts per region and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// API base URL (`None`: the embedded Mockbank).
    pub base: Option<Uri>,
    /// OAuth2 token URL, when known.
    pub token_url: Option<Uri>,
    /// Whether Lean requires a client certificate (mTLS) there.
    pub mtls: bool,
    /// The embedded Mockbank's region when the name says it
    /// (`mockbank-ksa`); `None`: `mockbank.region` decides.
    pub mockbank_region: Option<Region>,
}

/// Resolves `mockbank`, `mockbank-uae`, `mockbank-ksa` (the embedded
/// Mockbank standing in for Lean's sandbox of that region), `sandbox-uae`,
/// `sandbox-ksa`, `production-uae`, `production-ksa` (hosts from Lean's
/// documentation) or any URL.
pub fn resolve_target(value: &str) -> Result<Target, String> {
    let preset = |base: &str, token: &str, mtls: bool| Target {
        base: base.parse().ok(),
        token_url: token.parse().ok(),
        mtls,
        mockbank_region: None,
    };
    let mockbank = |region: Option<Region>| Target {
        base: None,
        token_url: None,
        mtls: false,
        mockbank_region: region,
    };
    Ok(match value {
        "mockbank" => mockbank(None),
        "mockbank-uae" => mockbank(Some(Region::Uae)),
        "mockbank-ksa" => mockbank(Some(Region::Ksa)),
        "sandbox-uae" => preset(
            "https://sandbox.leantech.me",
            "https://auth.sandbox.leantech.me/oauth2/token",
            false,
        ),
        "sandbox-ksa" => preset(
            "https://sandbox.sa.leantech.me",
            "https://auth.sandbox.sa.leantech.me/oauth2/token",
            false,
        ),
        "production-uae" => preset(
            "https://api.leantech.me",
            "https://auth.leantech.me/oauth2/token",
            true,
        ),
        "production-ksa" => preset(
            "https://api.sa.leantech.me",
            "https://auth.sa.leantech.me/oauth2/token",
            true,
        ),
        url => {
            let base = parse_upstream(url).map_err(|e| {
                format!("{e} (or one of mockbank, mockbank-uae, mockbank-ksa, sandbox-uae, sandbox-ksa, production-uae, production-ksa)")
            })?;
            let host = normal_host(&base);
            // Lean's v1 production hosts need mTLS; api2 (OAuth) does not.
            let mtls = host == "api.leantech.me" || host == "api.sa.leantech.me";
            Target {
                base: Some(base),
                token_url: None,
                mtls,
                mockbank_region: None,
            }
        }
    })
}

/// Validates an upstream base URL: absolute, `http` or `https`, no query.
pub fn parse_upstream(value: &str) -> Result<Uri, String> {
    let uri: Uri = value
        .parse()
        .map_err(|e| format!("`{value}` is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(format!(
                "scheme `{other}` is not supported; use http or https"
            ))
        }
        None => {
            return Err(format!(
                "`{value}` has no scheme; write e.g. https://{value}"
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{value}` has no host"));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        // Never echo the value: it holds credentials.
        return Err("must not carry credentials (user:password@); use [auth] instead".into());
    }
    if uri.query().is_some() {
        return Err(format!("`{value}` must not carry a query string"));
    }
    Ok(uri)
}

/// Why a target that needs mTLS is refused without a client certificate.
pub(super) const MTLS_REQUIRED: &str =
    "Lean's production API needs your client certificate and key (mTLS); \
     set tls.client_cert and tls.client_key";

/// `uri`'s host as compared against Lean's hosts: lowercase, without a
/// trailing dot, so no spelling slips past a check.
pub fn normal_host(uri: &Uri) -> String {
    uri.host()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase()
}
