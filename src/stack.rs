//! The one place that orders the proxy's layers, outer to inner:
//!
//! ```text
//! request log -> route select -> reconnect -> fault -> router -> credentials -> upstream
//! ```
//!
//! The fault layer sits inside the reconnect layer on purpose: a synthetic
//! reconnect is what the app saw, so the registry records it
//! too (`source: fault`). The route selector picks a target per request and
//! rewrites the path for it before the reconnect and fault layers read it; the
//! router then hands it to that target's credentials and upstream pool.

use tower::Layer;

use crate::auth::Credentials;
use crate::fault::{Fault, FaultLayer};
use crate::log::{RequestLog, RequestLogLayer, Telemetry};
use crate::proxy::Upstream;
use crate::reconnect::{Reconnect, ReconnectLayer};
use crate::route::{RouteSelect, Router};

/// One target: its credentials in front of its upstream.
pub type TargetService = Credentials<Upstream>;

/// The assembled proxy service.
pub type ProxyService = RequestLog<RouteSelect<Reconnect<Fault<Router<TargetService>>>>>;

/// Wraps a [`Router`] over several targets in the proxy's layers; its
/// selector goes just inside the request log, which keeps the path the app
/// sent.
pub fn proxy_stack(
    router: Router<TargetService>,
    reconnect: ReconnectLayer,
    faults: FaultLayer,
    telemetry: Telemetry,
) -> ProxyService {
    let select = router.selector(reconnect.layer(faults.layer(router.clone())));
    RequestLogLayer::new(telemetry).layer(select)
}
