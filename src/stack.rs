//! The one place that orders the proxy's layers, outer to inner:
//!
//! ```text
//! request log  ->  auth (lean-app-token)  ->  upstream
//! ```
//!
//! Later layers (reconnect, fault) slot in between request log and auth, in the
//! order `../shared/DESIGN.md` gives.

use tower::util::Either;
use tower::Layer;

use crate::auth::{AppToken, AppTokenLayer};
use crate::log::{RequestLog, RequestLogLayer};
use crate::proxy::Upstream;

/// The assembled proxy service.
pub type ProxyService = RequestLog<Either<AppToken<Upstream>, Upstream>>;

/// Wraps `upstream` in the proxy's layers.
pub fn proxy_stack(upstream: Upstream, app_token: Option<AppTokenLayer>) -> ProxyService {
    let inner = match app_token {
        Some(layer) => Either::Left(layer.layer(upstream)),
        None => Either::Right(upstream),
    };
    RequestLogLayer::new().layer(inner)
}
