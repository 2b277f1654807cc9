//! `[admin]`: the admin listener, its token and the names it answers to.

use super::raw::RawAdmin;
use super::{secret, AdminSettings, Checker, ENV_ADMIN_TOKEN};

/// Validates `[admin]`: a listener off loopback needs a token.
pub(super) fn validate(
    c: &mut Checker,
    raw: RawAdmin,
    env: &dyn Fn(&str) -> Option<String>,
) -> AdminSettings {
    let admin = AdminSettings {
        listen: c.addr("admin.listen", &raw.listen),
        token: secret(c, "admin.token", ENV_ADMIN_TOKEN, raw.token, env),
        allowed_hosts: raw
            .allowed_hosts
            .iter()
            .enumerate()
            .filter_map(|(i, host)| {
                host.parse()
                    .map_err(|e: String| c.fail(&format!("admin.allowed_hosts[{i}]"), e))
                    .ok()
            })
            .collect(),
    };
    if !admin.listen.ip().is_loopback() && admin.token.is_none() {
        c.fail(
            "admin.token",
            format!(
                "required when admin.listen ({}) is not a loopback address; \
                 set it or {ENV_ADMIN_TOKEN}",
                admin.listen
            ),
        );
    }
    admin
}
