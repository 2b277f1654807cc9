//! [`Endpoint`]: a request's method and path, matched once into the endpoint
//! it asks for, which also says where its answer is made.

use http::Method;

/// One admin endpoint (the table in the module docs), with the path's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Endpoint {
    Health,
    Reconnects,
    Reconnect(String),
    ResolveReconnect(String),
    Tokens,
    ForgetTokens,
    CustomerToken,
    Faults,
    AddFault,
    ClearFaults,
    /// `DELETE /api/faults/`: a rule id left empty, not "every rule".
    MissingFaultId,
    RemoveFault(String),
    PauseFault(String, bool),
    Requests,
    Har,
    Request(String),
    Events,
    Metrics,
    Webhooks,
    DeadLetters,
    ReplayDead(String),
    Webhook(String),
    ReplayWebhook(String),
    /// `GET /`: the dashboard.
    Dashboard,
    /// `GET /ui/{file}`: its scripts and styles.
    UiAsset(String),
    /// `GET /api/info`: where the proxy and the Mockbank listen.
    Info,
    /// `POST /api/requests/{id}/replay`.
    ReplayRequest(String),
    /// `/api/mockbank/{rest}`: the embedded Mockbank's `/_mockbank/{rest}`.
    Mockbank(String),
    /// A known path with another method.
    MethodNotAllowed,
    /// No admin endpoint here.
    NotFound,
}

/// Where an endpoint's answer is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Runs {
    /// From the request head, on the runtime's thread.
    Head,
    /// After reading a JSON body (which must say `application/json`).
    ReadsJson,
    /// Handed to the embedded Mockbank, body and all.
    Forwarded,
    /// On the blocking pool: it can render megabytes (the request log as
    /// HAR: 4.4 MB took 124 ms; webhooks) or writes the relay queue with
    /// `fsync`, and the runtime's one thread keeps proxying meanwhile.
    Blocking,
}

impl Endpoint {
    /// The endpoint `method path` asks for. Empty segments are ignored
    /// (`/api//requests/` is `/api/requests`), but a trailing slash after
    /// `DELETE /api/faults` is an empty rule id.
    pub(super) fn of(method: &Method, path: &str) -> Endpoint {
        use Endpoint as E;
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let id = |s: &&str| s.to_string();
        match (method, segments.as_slice()) {
            (&Method::GET | &Method::HEAD, ["healthz"]) => E::Health,
            (&Method::GET | &Method::HEAD, []) => E::Dashboard,
            (&Method::GET | &Method::HEAD, ["ui", file]) => E::UiAsset(id(file)),
            (&Method::GET, ["api", "info"]) => E::Info,
            (&Method::POST, ["api", "requests", exchange, "replay"]) => {
                E::ReplayRequest(id(exchange))
            }
            (&Method::GET | &Method::POST, ["api", "mockbank", rest @ ..]) if !rest.is_empty() => {
                E::Mockbank(rest.join("/"))
            }
            (_, ["healthz"]) => E::MethodNotAllowed,
            (&Method::GET, ["api", "reconnects"]) => E::Reconnects,
            (&Method::GET, ["api", "reconnects", key]) => E::Reconnect(id(key)),
            (&Method::DELETE, ["api", "reconnects", key]) => E::ResolveReconnect(id(key)),
            (_, ["api", "reconnects"] | ["api", "reconnects", _]) => E::MethodNotAllowed,
            (&Method::GET, ["api", "tokens"]) => E::Tokens,
            (&Method::DELETE, ["api", "tokens"]) => E::ForgetTokens,
            (&Method::POST, ["api", "tokens", "customer"]) => E::CustomerToken,
            (_, ["api", "tokens", ..]) => E::MethodNotAllowed,
            (&Method::GET, ["api", "faults"]) => E::Faults,
            (&Method::POST, ["api", "faults"]) => E::AddFault,
            (&Method::DELETE, ["api", "faults"]) if path.ends_with('/') => E::MissingFaultId,
            (&Method::DELETE, ["api", "faults"]) => E::ClearFaults,
            (&Method::DELETE, ["api", "faults", rule]) => E::RemoveFault(id(rule)),
            (&Method::POST, ["api", "faults", rule, "pause"]) => E::PauseFault(id(rule), true),
            (&Method::POST, ["api", "faults", rule, "resume"]) => E::PauseFault(id(rule), false),
            (_, ["api", "faults", ..]) => E::MethodNotAllowed,
            (&Method::GET, ["api", "requests"]) => E::Requests,
            (&Method::GET, ["api", "requests.har"]) => E::Har,
            (&Method::GET, ["api", "requests", exchange]) => E::Request(id(exchange)),
            (&Method::GET, ["api", "events"]) => E::Events,
            (&Method::GET, ["metrics"]) => E::Metrics,
            (_, ["api", "requests" | "requests.har" | "events", ..] | ["metrics"]) => {
                E::MethodNotAllowed
            }
            (&Method::GET, ["api", "webhooks"]) => E::Webhooks,
            (&Method::GET, ["api", "webhooks", "dead"]) => E::DeadLetters,
            (&Method::POST, ["api", "webhooks", "dead", dead, "replay"]) => E::ReplayDead(id(dead)),
            (&Method::GET, ["api", "webhooks", hook]) => E::Webhook(id(hook)),
            (&Method::POST, ["api", "webhooks", hook, "replay"]) => E::ReplayWebhook(id(hook)),
            (_, ["api", "webhooks", ..]) => E::MethodNotAllowed,
            _ => E::NotFound,
        }
    }

    /// Where its answer is made.
    pub(super) fn runs(&self) -> Runs {
        match self {
            Endpoint::AddFault | Endpoint::CustomerToken | Endpoint::ReplayRequest(_) => {
                Runs::ReadsJson
            }
            Endpoint::Mockbank(_) => Runs::Forwarded,
            Endpoint::Requests
            | Endpoint::Har
            | Endpoint::Webhooks
            | Endpoint::ReplayWebhook(_)
            | Endpoint::ReplayDead(_) => Runs::Blocking,
            _ => Runs::Head,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_is_matched_once_with_its_ids() {
        let of = |m: Method, p: &str| Endpoint::of(&m, p);
        assert_eq!(of(Method::GET, "/healthz/"), Endpoint::Health);
        assert_eq!(
            of(Method::POST, "/api/faults/f-1/pause"),
            Endpoint::PauseFault("f-1".into(), true)
        );
        assert_eq!(of(Method::DELETE, "/api/faults/"), Endpoint::MissingFaultId);
        assert_eq!(of(Method::DELETE, "/api/faults"), Endpoint::ClearFaults);
        assert_eq!(of(Method::GET, "/api//requests/"), Endpoint::Requests);
        assert_eq!(
            of(Method::HEAD, "/api/requests"),
            Endpoint::MethodNotAllowed
        );
        assert_eq!(of(Method::GET, "/api/webhooks/dead"), Endpoint::DeadLetters);
        assert_eq!(of(Method::GET, "/nothing"), Endpoint::NotFound);
        assert_eq!(Endpoint::Har.runs(), Runs::Blocking);
        assert_eq!(Endpoint::AddFault.runs(), Runs::ReadsJson);
        assert_eq!(Endpoint::Faults.runs(), Runs::Head);
    }
}
