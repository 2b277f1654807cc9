//! The one place that orders the proxy's layers, outer to inner:
//!
//! ```text
//! request log  ->  reconnect  ->  auth (lean-app-token)  ->  upstream
//! ```
//!
//! The fault layer will slot in between reconnect and auth, as
//! `../shared/DESIGN.md` gives: a synthetic reconnect is what the app saw, so the
//! registry records it too.

use tower::util::Either;
use tower::Layer;

use crate::auth::{AppToken, AppTokenLayer};
use crate::log::{RequestLog, RequestLogLayer, Telemetry};
use crate::proxy::Upstream;
use crate::reconnect::{Reconnect, ReconnectLayer};

/// The assembled proxy service.
pub type ProxyService = RequestLog<Reconnect<Either<AppToken<Upstream>, Upstream>>>;

/// Wraps `upstream` in the proxy's layers.
pub fn proxy_stack(
    upstream: Upstream,
    app_token: Option<AppTokenLayer>,
    reconnect: ReconnectLayer,
    telemetry: Telemetry,
) -> ProxyService {
    let inner = match app_token {
        Some(layer) => Either::Left(layer.layer(upstream)),
        None => Either::Right(upstream),
    };
    RequestLogLayer::new(telemetry).layer(reconnect.layer(inner))
}
