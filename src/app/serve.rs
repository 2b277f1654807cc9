//! [`App::serve`]: the built parts on their listeners, until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use http::Uri;
use tokio::sync::watch;
use tower::Layer;

use super::{invalid, mockbank_webhook_url, App, Error, Listeners, Target};
use crate::admin::Admin;
use crate::mockbank::Mockbank;
use crate::proxy::{Upstream, UpstreamSlots};
use crate::server::{self, Serving};
use crate::{route, stack};

impl App {
    /// Serves the listeners until `shutdown` completes, then drains in-flight
    /// exchanges for at most the configured grace period. Refuses an admin
    /// listener off loopback without an admin token.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let App {
            target,
            upstream,
            credentials,
            tls,
            admin_token,
            guard,
            reconnect,
            webhooks,
            relay,
            telemetry,
            faults,
            serving,
            routes,
            route_tokens,
            route_names,
            relay_targets: _,
            state,
        } = self;
        let admin_addr = listeners.admin.local_addr()?;
        if !admin_addr.ip().is_loopback() && admin_token.is_none() {
            return Err(invalid(
                "admin.token",
                format!("required when the admin listener ({admin_addr}) is not on loopback"),
            ));
        }
        let (base, mockbank) = match (target, listeners.mockbank) {
            (Target::Url(base), _) => (base, None),
            (Target::Mockbank(mockbank), Some(listener)) => {
                let base = called_at(listener.local_addr()?)?;
                let webhooks = listeners.webhooks.local_addr()?;
                mockbank.set_webhook_url(mockbank_webhook_url(&mockbank, webhooks)?);
                (base, Some((mockbank, listener)))
            }
            (Target::Mockbank(_), None) => return Err(Error::NoUpstream),
        };
        let proxy_addr = listeners.proxy.local_addr()?;
        if !proxy_addr.ip().is_loopback() && credentials.adds_any() {
            tracing::warn!(%proxy_addr, "the proxy listens off loopback and adds credentials: anyone who reaches it can call Lean as your app");
        }
        let (layer, source) = credentials.layer(&base, &tls)?;
        // In front of the embedded Mockbank its client credentials are known:
        // customer tokens (`leanproxy token customer`) work with nothing set.
        let tokens = match (source, &mockbank) {
            (Some(source), _) => Some(source),
            (None, Some((mockbank, _))) => credentials.or_mockbank(mockbank).layer(&base, &tls)?.1,
            (None, None) => None,
        };
        let mockbank_url = mockbank.as_ref().map(|_| base.to_string());
        let stack = stack::proxy_stack(
            route::Router::new(layer.layer(Upstream::new(base, upstream, tls)), routes)
                .with_names(route_names),
            reconnect.clone(),
            faults.clone(),
            telemetry.clone(),
        );
        let (tx, rx) = watch::channel(false);
        let registry = reconnect.registry().clone();
        let admin = Admin::new(
            admin_token,
            registry.clone(),
            webhooks.clone(),
            telemetry.clone(),
        )
        .with_faults(faults.rules().clone())
        .with_tokens(tokens)
        .with_route_tokens(route_tokens)
        .with_guard(guard)
        .with_state(state.as_ref().map(|(redis, _)| redis.clone()))
        .with_shutdown(rx.clone())
        .with_listeners(
            called_at(proxy_addr)?,
            mockbank
                .as_ref()
                .zip(mockbank_url)
                .map(|((m, _), url)| (crate::admin::Controls::new((**m).clone()), url)),
        );
        let (stop_writer, writer_stopped) = tokio::sync::oneshot::channel::<()>();
        let writer = tokio::spawn(registry.clone().run_writer(async {
            let _ = writer_stopped.await;
        }));
        let relays = relay.start();
        let shared = state.map(|(redis, fleet)| {
            tokio::spawn(share(redis, fleet, faults.rules().clone(), rx.clone()))
        });
        let servers = Servers {
            listeners: Listeners {
                mockbank: None,
                ..listeners
            },
            mockbank,
            serving,
        };
        let trigger = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, draining in-flight exchanges");
            let _ = tx.send(true);
        };
        servers
            .run(stack, admin, webhooks, telemetry, trigger, rx)
            .await;
        let _ = stop_writer.send(());
        let _ = writer.await;
        for relay in relays {
            // Queued deliveries stay on disk (or Redis) for the next start.
            relay.abort();
        }
        if let Some(shared) = shared {
            shared.abort();
        }
        registry.flush().await?;
        Ok(())
    }
}

/// What a replica on Redis runs beside its listeners until shutdown: the
/// health pings, the notices from the other replicas, the fleet's live
/// events and the fleet's fault rules.
async fn share(
    redis: crate::state::RedisState,
    fleet: crate::state::fleet::Fleet,
    faults: crate::fault::FaultRules,
    rx: watch::Receiver<bool>,
) {
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::join!(
        redis.clone().watch_health(stop(rx.clone())),
        redis.listen(stop(rx.clone())),
        fleet.run(stop(rx.clone())),
        faults.follow(stop(rx)),
    );
}

/// The listeners with the Mockbank they serve, when it runs.
struct Servers {
    listeners: Listeners,
    mockbank: Option<(Box<Mockbank>, tokio::net::TcpListener)>,
    serving: Serving,
}

impl Servers {
    /// Serves each listener until `trigger` (shutdown) has told them to stop
    /// (`rx`) and they have drained.
    async fn run(
        self,
        stack: stack::ProxyService,
        admin: Admin,
        webhooks: crate::webhooks::Webhooks,
        telemetry: crate::log::Telemetry,
        trigger: impl Future<Output = ()>,
        rx: watch::Receiver<bool>,
    ) {
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // Reports until every server has drained, so lines held back during
        // the drain are counted too.
        let (servers_done, drained) = tokio::sync::oneshot::channel::<()>();
        let held_lines = telemetry.report_held_lines(async {
            let _ = drained.await;
        });
        // Each listener has its own cap: a full proxy listener leaves the
        // admin API (and its /metrics) reachable.
        let serving = |name| Serving {
            name,
            ..self.serving.clone()
        };
        let Listeners {
            proxy,
            admin: admin_listener,
            webhooks: catcher,
            ..
        } = self.listeners;
        let proxy = server::serve_with(
            proxy,
            stack,
            UpstreamSlots,
            stopped(rx.clone()),
            serving("proxy"),
        );
        let admin = server::serve(admin_listener, admin, stopped(rx.clone()), serving("admin"));
        let catcher = server::serve(catcher, webhooks, stopped(rx.clone()), serving("webhooks"));
        let mockbank = async {
            if let Some((mockbank, listener)) = self.mockbank {
                server::serve(listener, *mockbank, stopped(rx), serving("mockbank")).await;
            }
        };
        let all = async move {
            tokio::join!(proxy, admin, catcher, mockbank, trigger);
            let _ = servers_done.send(());
        };
        tokio::join!(all, held_lines);
    }
}

/// The URL a listener bound at `addr` is called by (the Mockbank by the proxy,
/// the proxy by the dashboard's replays). A Mockbank on every
/// interface is called on loopback: the Host its control endpoints accept is
/// an address connected to, never `0.0.0.0`.
fn called_at(addr: SocketAddr) -> Result<Uri, Error> {
    format!("http://{}", super::called_by(addr))
        .parse()
        .map_err(|e| std::io::Error::other(format!("listener address: {e}")).into())
}
