//! Reconnect awareness: notice every RECONNECT_REQUIRED answer, remember which
//! entity needs a reconnect and with which id, and notice when it is resolved.
//!
//! [`ReconnectLayer`] goes in front of anything that talks to Lean (in leanproxy,
//! outside the fault layer, so injected reconnects are recorded too); its
//! [`ReconnectRegistry`] handle is read by the admin API and fed by webhooks.
//! The handle keeps its records in a backend (`store.rs`: the trait and the
//! memory backend with its state file).
//!
//! In an app's own hyper client stack:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use leanproxy::reconnect::{ReconnectLayer, DEFAULT_INSPECT_LIMIT};
//! use leanproxy::body::{self, Body};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
//!     .build_http::<Body>();
//! let (reconnect, registry) = ReconnectLayer::pair(DEFAULT_INSPECT_LIMIT);
//! let lean = ServiceBuilder::new().layer(reconnect).service_fn(move |req: Request<Body>| {
//!     let client = client.clone();
//!     async move {
//!         let response = client.request(req).await?;
//!         Ok::<_, hyper_util::client::legacy::Error>(response.map(body::boxed))
//!     }
//! });
//! let request = Request::post("http://127.0.0.1:7070/data/v1/accounts")
//!     .header("content-type", "application/json")
//!     .body(body::full(r#"{"entity_id":"e-1"}"#))?;
//! let response: Response<Body> = lean.oneshot(request).await?;
//! // Once the body has been read, the registry knows (its operations are
//! // futures: a backend on the network answers later, the memory one at once):
//! let _ = http_body_util::BodyExt::collect(response.into_body()).await;
//! for record in registry.list().await {
//!     println!("{:?} needs a reconnect with {}", record.entity_id, record.reconnect_id);
//! }
//! # Ok(())
//! # }
//! ```

mod inspect;
mod layer;
mod record;
mod redis;
mod registry;
mod state_file;
mod store;
#[cfg(test)]
pub(crate) mod store_contract;

pub use crate::exchange::Api;
pub use inspect::{entity_of_body, entity_of_query, is_ok_answer, scan, Found, Scan};
pub(crate) use inspect::{status_value, Lead};
pub use layer::{Reconnect, ReconnectLayer, ResponseFuture, DEFAULT_INSPECT_LIMIT};
pub use registry::{
    Observer, ReconnectRegistry, Record, RegistryEvent, ResolvedBy, Sighting, SightingOutcome,
    Source, State, StateError, Stats,
};
