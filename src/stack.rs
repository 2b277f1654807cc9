//! The one place that orders the proxy's layers, outer to inner:
//!
//! ```text
//! request log  ->  reconnect  ->  fault  ->  credentials  ->  upstream
//! ```
//!
//! The fault layer sits inside the reconnect layer, as `../shared/DESIGN.md`
//! gives: a synthetic reconnect is what the app saw, so the registry records it
//! too (`source: fault`).

use tower::Layer;

use crate::auth::{Credentials, CredentialsLayer};
use crate::fault::{Fault, FaultLayer};
use crate::log::{RequestLog, RequestLogLayer, Telemetry};
use crate::proxy::Upstream;
use crate::reconnect::{Reconnect, ReconnectLayer};

/// The assembled proxy service.
pub type ProxyService = RequestLog<Reconnect<Fault<Credentials<Upstream>>>>;

/// Wraps `upstream` in the proxy's layers.
pub fn proxy_stack(
    upstream: Upstream,
    credentials: CredentialsLayer,
    reconnect: ReconnectLayer,
    faults: FaultLayer,
    telemetry: Telemetry,
) -> ProxyService {
    let inner = credentials.layer(upstream);
    RequestLogLayer::new(telemetry).layer(reconnect.layer(faults.layer(inner)))
}
