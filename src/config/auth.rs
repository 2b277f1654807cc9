//! `[auth]`: the `lean-app-token` and the OAuth2 client credentials added on
//! the way out (the environment wins over the file).

use super::raw::RawAuth;
use super::{
    given, parse_upstream, secret, AppTokenValue, AuthSettings, Checker, Secret, Target,
    TokenPolicy, ENV_APP_TOKEN, ENV_CLIENT_ID, ENV_CLIENT_SECRET,
};

/// `auth.app_token_policy`'s values.
const POLICIES: &[(&str, TokenPolicy)] = &[
    ("override", TokenPolicy::Override),
    ("keep", TokenPolicy::Keep),
];

/// Validates `[auth]`; the token URL defaults to the named `target`'s, and
/// must be given when the upstream is a URL (`upstream_is_url`).
pub(super) fn validate(
    c: &mut Checker,
    raw: RawAuth,
    target: Option<&Target>,
    upstream_is_url: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> AuthSettings {
    let app_token = secret(c, "auth.app_token", ENV_APP_TOKEN, raw.app_token, env)
        .and_then(|token| app_token(c, "auth.app_token", &token));
    let app_token_policy = c
        .choice("auth.app_token_policy", &raw.app_token_policy, POLICIES)
        .unwrap_or_default();
    let client_id = env(ENV_CLIENT_ID)
        .filter(|v| !v.is_empty())
        .or(raw.client_id.clone());
    let client_secret = secret(
        c,
        "auth.client_secret",
        ENV_CLIENT_SECRET,
        raw.client_secret.clone(),
        env,
    );
    let client = match (client_id, client_secret) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (Some(_), None) => {
            c.fail(
                "auth.client_secret",
                format!("required with auth.client_id; set it or {ENV_CLIENT_SECRET}"),
            );
            None
        }
        (None, Some(_)) => {
            c.fail(
                "auth.client_id",
                format!("required with auth.client_secret; set it or {ENV_CLIENT_ID}"),
            );
            None
        }
        (None, None) => None,
    };
    let token_url = match given(&raw.token_url) {
        None => target.and_then(|t| t.token_url.clone()),
        Some(url) => parse_upstream(url)
            .map_err(|e| c.fail("auth.token_url", e))
            .ok(),
    };
    if client.is_some() && token_url.is_none() && upstream_is_url {
        c.fail(
            "auth.token_url",
            "required with client credentials when proxy.upstream is a URL, not a named target",
        );
    }
    AuthSettings {
        app_token,
        // Filled in with the Mockbank's settings.
        mockbank_app_token: None,
        app_token_policy,
        client,
        token_url,
        scope: raw.scope.clone(),
        refresh_margin: c.duration("auth.refresh_margin", &raw.refresh_margin),
    }
}

/// `token` as the header value it is sent as; `None` after an error when it
/// cannot be one.
pub(super) fn app_token(c: &mut Checker, key: &str, token: &Secret) -> Option<AppTokenValue> {
    AppTokenValue::new(token.expose())
        .map_err(|_| c.fail(key, "contains characters not allowed in a header value"))
        .ok()
}
