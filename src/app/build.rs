//! [`App::build`], a named function per part.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tower::Layer;

use super::{invalid, App, Error, Target};
use crate::admin::Guard;
use crate::auth::{
    AppTokenLayer, AppTokenValue, CredentialsLayer, TokenConfig, TokenPolicy, TokenSource,
};
use crate::config::{RouteMatch, Settings};
use crate::events::{Event, Events};
use crate::fault::{FaultLayer, FaultRules};
use crate::log::Telemetry;
use crate::metrics::Metrics;
use crate::mockbank::{Clock, Mockbank};
use crate::proxy::{Upstream, UpstreamConfig};
use crate::reconnect::{Observer, ReconnectLayer, ReconnectRegistry, RegistryEvent};
use crate::secret::Secret;
use crate::server::Serving;
use crate::stack::TargetService;
use crate::state::{RedisState, StateSettings};
use crate::webhooks::{self, Relay, RelayConfig, WebhookConfig, Webhooks};

/// What a target's credentials are made of; [`Credentials::layer`] makes
/// them for the target's base URL, the same way for the default target and
/// for each route.
#[derive(Clone)]
pub(super) struct Credentials {
    app_token: Option<AppTokenValue>,
    client: Option<(String, Secret)>,
    /// `None`: the target serves its own (the Mockbank), at `/oauth2/token`.
    token_url: Option<Uri>,
    policy: TokenPolicy,
    scope: String,
    refresh_margin: Duration,
}

impl Credentials {
    /// The credentials layer for a target at `base`, and its token source
    /// when it has client credentials.
    pub(super) fn layer(
        &self,
        base: &Uri,
        tls: &rustls::ClientConfig,
    ) -> Result<(CredentialsLayer, Option<TokenSource>), Error> {
        let mut layer = CredentialsLayer::new();
        if let Some(token) = &self.app_token {
            layer = layer.app_token(AppTokenLayer::new(token.clone(), self.policy));
        }
        let source = match &self.client {
            Some((client_id, client_secret)) => {
                let config = self.token_config(client_id, client_secret, base)?;
                Some(TokenSource::new(config, tls.clone()))
            }
            None => None,
        };
        if let Some(source) = &source {
            layer = layer.bearer(source.clone(), self.policy);
        }
        Ok((layer, source))
    }

    /// The token configuration for `client_id` at a target at `base`.
    pub(super) fn token_config(
        &self,
        client_id: &str,
        client_secret: &Secret,
        base: &Uri,
    ) -> Result<TokenConfig, Error> {
        let url = match &self.token_url {
            Some(url) => url.clone(),
            None => format!("{}/oauth2/token", base.to_string().trim_end_matches('/'))
                .parse()
                .map_err(|e| std::io::Error::other(format!("token URL: {e}")))?,
        };
        Ok(TokenConfig {
            url,
            client_id: client_id.to_string(),
            client_secret: client_secret.clone(),
            scope: self.scope.clone(),
            refresh_margin: self.refresh_margin,
        })
    }

    /// Whether they add anything to a request.
    pub(super) fn adds_any(&self) -> bool {
        self.app_token.is_some() || self.client.is_some()
    }

    /// The same, with the Mockbank's client credentials when none are given:
    /// customer tokens (`leanproxy token customer`) work with nothing set.
    pub(super) fn or_mockbank(&self, mockbank: &Mockbank) -> Credentials {
        let mut with = self.clone();
        if with.client.is_none() {
            with.client = Some(mockbank.client_credentials());
        }
        with
    }
}

impl App {
    /// Builds the proxy and the admin service from validated settings. With no
    /// upstream configured, it builds the embedded Mockbank too, and the proxy
    /// sends the Mockbank's app token unless one is configured. Call it inside a
    /// Tokio runtime.
    pub fn build(settings: &Settings) -> Result<Self, Error> {
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        if !settings.log.requests.redact {
            tracing::warn!("log.redact is off: secrets and personal data will appear in the request log, journal and HAR. Use this only for local debugging.");
        }
        let tls = crate::client::tls::client_config(&settings.tls)?;
        let guard = Guard::new(settings.admin.allowed_hosts.clone());
        let target = target(settings, &guard)?;
        let credentials = default_credentials(settings, &target);
        let (events, metrics) = (Events::default(), Metrics::new());
        let redis = redis_state(settings, &metrics)?;
        let (events, fleet) = match &redis {
            Some(redis) => {
                let (events, fleet) = crate::state::fleet::link(events, redis.clone());
                (events, Some(fleet))
            }
            None => (events, None),
        };
        let telemetry = Telemetry::new(
            settings.log.requests.clone(),
            events.clone(),
            metrics.clone(),
        );
        let registry = match &redis {
            Some(redis) => ReconnectRegistry::on_redis(redis.clone(), settings.reconnect.history),
            None => {
                ReconnectRegistry::open(&settings.reconnect.state_file, settings.reconnect.history)?
            }
        };
        registry.set_observer(registry_events(events, metrics.clone()));
        let (webhooks, relay) = webhooks(settings, &registry, &telemetry, &tls, redis.as_ref())?;
        let faults = faults(settings, &registry, &telemetry, redis.as_ref())?;
        let reconnect = ReconnectLayer::new(registry, settings.reconnect.inspect_limit)
            .with_reconnect_header(settings.reconnect.reconnect_header);
        let upstream = upstream_config(settings, &metrics);
        let (routes, route_tokens) = routes(settings, &tls, &upstream)?;
        Ok(Self {
            target,
            upstream,
            credentials,
            tls,
            admin_token: settings.admin.token.clone(),
            guard,
            reconnect,
            webhooks,
            relay,
            telemetry,
            faults,
            serving: Serving {
                timeouts: settings.proxy.timeouts(),
                max_connections: settings.proxy.max_connections,
                name: "proxy",
                metrics: Some(metrics),
            },
            routes,
            route_names: settings
                .routes
                .iter()
                .map(|r| r.name.as_str().into())
                .collect(),
            route_tokens,
            relay_targets: settings.webhooks.relay.clone(),
            state: redis.zip(fleet),
        })
    }
}

/// The default target: the configured upstream, or the embedded Mockbank,
/// which accepts the configured `lean-app-token` (`LEAN_APP_TOKEN`
/// included), so the proxy and its Mockbank always agree.
fn target(settings: &Settings, guard: &Guard) -> Result<Target, Error> {
    if let Some(url) = &settings.proxy.upstream {
        return Ok(Target::Url(url.clone()));
    }
    let clock = Clock::new(chrono::Utc::now(), settings.mockbank.time_scale);
    let mut mockbank = settings.mockbank.clone();
    if let Some(token) = &settings.auth.app_token {
        mockbank.app_token = token.secret();
    }
    let mockbank = Mockbank::new(mockbank, clock)?.with_guard(guard.clone());
    Ok(Target::Mockbank(Box::new(mockbank)))
}

/// The default target's credentials: `[auth]`'s, and the Mockbank's app token
/// in front of it when none is configured.
fn default_credentials(settings: &Settings, target: &Target) -> Credentials {
    let auth = &settings.auth;
    let app_token = auth.app_token.clone().or_else(|| match target {
        Target::Mockbank(_) => auth.mockbank_app_token.clone(),
        Target::Url(_) => None,
    });
    Credentials {
        app_token,
        client: auth.client.clone(),
        token_url: auth.token_url.clone(),
        policy: auth.app_token_policy,
        scope: auth.scope.clone(),
        refresh_margin: auth.refresh_margin,
    }
}

/// Feeds the registry's new and resolved reconnects (and inspections) into
/// the metrics and the live events.
fn registry_events(events: Events, metrics: Metrics) -> Observer {
    Arc::new(move |event: &RegistryEvent<'_>| match event {
        RegistryEvent::New(r) => {
            metrics.reconnect_new();
            events.publish(Event::ReconnectNew {
                entity_id: r.entity_id.clone(),
                reconnect_id: r.reconnect_id.clone(),
                source: format!("{:?}", r.source).to_lowercase(),
            });
        }
        RegistryEvent::Resolved(r) => {
            let by = r
                .resolved_by
                .and_then(|b| serde_json::to_value(b).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            metrics.reconnect_resolved(&by);
            events.publish(Event::ReconnectResolved {
                entity_id: r.entity_id.clone(),
                reconnect_id: r.reconnect_id.clone(),
                resolved_by: by,
            });
        }
        RegistryEvent::Inspection(inspected) => metrics.inspection(*inspected),
    })
}

/// The connection to Redis when `[state]` keeps the shared state there.
fn redis_state(settings: &Settings, metrics: &Metrics) -> Result<Option<RedisState>, Error> {
    let StateSettings::Redis(r) = &settings.state else {
        return Ok(None);
    };
    let redis = RedisState::new(r).map_err(|e| invalid("state.url", e.detail))?;
    Ok(Some(redis.with_metrics(metrics.clone())))
}

/// The webhook catcher, with its store (bounded), its event-id claims and
/// its relay queue: in the data directory, or on Redis for the fleet.
fn webhooks(
    settings: &Settings,
    registry: &ReconnectRegistry,
    telemetry: &Telemetry,
    tls: &rustls::ClientConfig,
    redis: Option<&RedisState>,
) -> Result<(Webhooks, Relay), Error> {
    let w = &settings.webhooks;
    let data_dir = &settings.proxy.data_dir;
    let store = webhooks::Store::new(w.history, w.history_bytes);
    let config = RelayConfig {
        targets: w.relay.clone(),
        dir: data_dir.join("webhook-relay"),
        queue_limit: w.queue_limit,
        retry_initial: w.retry_initial,
        retry_max: w.retry_max,
        max_attempts: w.max_attempts,
    };
    let (claims, relay) = match redis {
        Some(redis) => (
            webhooks::Claims::on_redis(redis.clone(), w.claim_window),
            Relay::on_redis(config, store.clone(), tls.clone(), redis.clone()),
        ),
        None => {
            let (claims, claimed) = webhooks::ClaimLog::open(
                &data_dir.join("webhook-claims.log"),
                w.claim_window,
                w.history * webhooks::Store::CLAIMS_PER_DELIVERY,
            )?;
            (
                webhooks::Claims::logged(claims, claimed),
                Relay::open(config, store.clone(), tls.clone())?,
            )
        }
    };
    let webhooks = Webhooks::new(
        WebhookConfig {
            secret: w.secret.clone(),
            policy: w.policy,
            body_limit: w.body_limit,
            history: w.history,
        },
        store,
        claims,
        Some(relay.clone()),
        registry.clone(),
        telemetry.clone(),
    );
    Ok((webhooks, relay))
}

/// The fault layer over the configured rules, guarded against production.
fn faults(
    settings: &Settings,
    registry: &ReconnectRegistry,
    telemetry: &Telemetry,
    redis: Option<&RedisState>,
) -> Result<FaultLayer, Error> {
    let f = &settings.faults;
    // On Redis, these rules start the fleet's when it has none yet
    // (`App::open`).
    let rules = match redis {
        Some(redis) => FaultRules::on_redis(f.seed, f.refusal.clone(), redis.clone()),
        None => FaultRules::guarded(f.seed, f.refusal.clone()),
    };
    rules
        .install(f.rules.clone())
        .map_err(|e| invalid(format!("faults.{}", e.field), e.reason))?;
    Ok(FaultLayer::new(rules)
        .with_header_faults(f.allow_header)
        .with_registry(registry.clone())
        .with_telemetry(telemetry.clone()))
}

/// How connections to an upstream behave.
fn upstream_config(settings: &Settings, metrics: &Metrics) -> UpstreamConfig {
    let p = &settings.proxy;
    UpstreamConfig {
        connect_timeout: p.connect_timeout,
        response_timeout: p.response_timeout,
        pool_idle_timeout: p.pool_idle_timeout,
        pool_max_idle_per_host: p.pool_max_idle_per_host,
        body_timeout: p.upstream_body_timeout,
        metrics: Some(metrics.clone()),
    }
}

/// Each `[[routes]]` target: its credentials in front of its upstream, and
/// its token source by route name (for the admin API).
#[allow(clippy::type_complexity)]
fn routes(
    settings: &Settings,
    tls: &rustls::ClientConfig,
    upstream: &UpstreamConfig,
) -> Result<(Vec<(RouteMatch, TargetService)>, Vec<(String, TokenSource)>), Error> {
    let mut targets = Vec::new();
    let mut tokens = Vec::new();
    for route in &settings.routes {
        let credentials = Credentials {
            app_token: route.app_token.clone(),
            client: route.client.clone(),
            token_url: route.token_url.clone(),
            policy: settings.auth.app_token_policy,
            scope: settings.auth.scope.clone(),
            refresh_margin: settings.auth.refresh_margin,
        };
        let (layer, source) = credentials.layer(&route.upstream, tls)?;
        if let Some(source) = source {
            tokens.push((route.name.clone(), source));
        }
        tracing::info!(route = %route.name, upstream = %route.upstream, matcher = ?route.matcher, "route");
        let service = layer.layer(Upstream::new(
            route.upstream.clone(),
            upstream.clone(),
            tls.clone(),
        ));
        targets.push((route.matcher.clone(), service));
    }
    Ok((targets, tokens))
}
