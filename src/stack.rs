//! The one place that orders the proxy's layers, outer to inner:
//!
//! ```text
//! request log  ->  reconnect  ->  fault  ->  router  ->  credentials  ->  upstream
//! ```
//!
//! The fault layer sits inside the reconnect layer, as `../shared/DESIGN.md`
//! gives: a synthetic reconnect is what the app saw, so the registry records it
//! too (`source: fault`). The router picks a target per request; each target
//! has its own credentials and its own upstream pool.

use tower::Layer;

use crate::auth::{Credentials, CredentialsLayer};
use crate::fault::{Fault, FaultLayer};
use crate::log::{RequestLog, RequestLogLayer, Telemetry};
use crate::proxy::Upstream;
use crate::reconnect::{Reconnect, ReconnectLayer};
use crate::route::Router;

/// One target: its credentials in front of its upstream.
pub type TargetService = Credentials<Upstream>;

/// The assembled proxy service.
pub type ProxyService = RequestLog<Reconnect<Fault<Router<TargetService>>>>;

/// Wraps `upstream` in the proxy's layers.
pub fn proxy_stack(
    upstream: Upstream,
    credentials: CredentialsLayer,
    reconnect: ReconnectLayer,
    faults: FaultLayer,
    telemetry: Telemetry,
) -> ProxyService {
    routed_stack(
        Router::new(credentials.layer(upstream), Vec::new()),
        reconnect,
        faults,
        telemetry,
    )
}

/// Wraps a [`Router`] over several targets in the proxy's layers.
pub fn routed_stack(
    router: Router<TargetService>,
    reconnect: ReconnectLayer,
    faults: FaultLayer,
    telemetry: Telemetry,
) -> ProxyService {
    RequestLogLayer::new(telemetry).layer(reconnect.layer(faults.layer(router)))
}
