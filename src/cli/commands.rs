//! What each subcommand does: serve, check, the Mockbank alone, and the
//! commands that talk to a running instance through [`AdminClient`].

use std::process::ExitCode;

use super::args::{
    AdminArg, BankAction, ClockAction, Command, ConsentAction, FaultAction, FaultsArgs,
    MockbankArgs, MockbankControl, ReconnectAction, ReconnectsArgs, ServeArgs, TokenAction,
    TokenArgs,
};
use super::{format, AdminClient, Cli, ClientError, MockbankClient};
use crate::config::{self, ConfigError, RawConfig, Settings};
use crate::mockbank::{Clock, Mockbank};
use crate::{App, Error, Listeners};

/// Writes a line to stdout; a closed stdout (`leanproxy … | head`) ends the
/// output quietly instead of panicking as `println!` does.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// [`say!`] without the line end.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Runs the command `cli` names. Exit codes: 0 success, 1 runtime failure,
/// 2 bad configuration, 3 (admin commands) what was asked for does not exist.
pub fn run(cli: Cli) -> ExitCode {
    // A panic first writes the log lines still waiting (src/log/stderr.rs).
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        crate::log::BatchedStderr::flush_global();
        report(info);
    }));
    let code = match cli.command {
        Some(Command::Check(config)) => check(ServeArgs {
            config,
            ..ServeArgs::default()
        }),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Mockbank(args)) => mockbank(args),
        Some(Command::Reconnects(args)) => reconnects(args),
        Some(Command::Tail(args)) => tail(args),
        Some(Command::Faults(args)) => faults(args),
        Some(Command::Token(args)) => token(args),
        None => serve(cli.serve),
    };
    crate::log::BatchedStderr::flush_global();
    code
}

fn load(args: &ServeArgs) -> Result<Settings, ConfigError> {
    let mut raw = match &args.config.config {
        Some(path) => config::load(path)?,
        None => RawConfig::default(),
    };
    args.apply(&mut raw);
    Settings::from_raw(raw, &config::process_env)
}

/// The runtime, or the exit code when it cannot start.
fn runtime(workers: Option<std::num::NonZeroUsize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    crate::cli::runtime(workers).map_err(|e| {
        eprintln!("leanproxy: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

fn exit_code(result: Result<(), Error>) -> ExitCode {
    // Log lines still waiting come before the error that ends the process.
    crate::log::BatchedStderr::flush_global();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (Error::Config(_) | Error::Tls(_) | Error::NoUpstream | Error::State(_))) => {
            eprintln!("leanproxy: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("leanproxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `call` against the admin API named by `admin`, then `show` with its
/// answer. A failure is printed as `leanproxy <command>: <why>` and exits 3
/// when what was asked for does not exist, 1 otherwise.
fn with_admin<T>(
    command: &str,
    admin: &AdminArg,
    call: impl AsyncFnOnce(&AdminClient) -> Result<T, ClientError>,
    show: impl FnOnce(T),
) -> ExitCode {
    let runtime = match runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let token = config::process_env(config::ENV_ADMIN_TOKEN)
        .filter(|t| !t.is_empty())
        .map(crate::secret::Secret::new);
    let client = AdminClient::new(&admin.admin, token);
    match runtime.block_on(call(&client)) {
        Ok(answer) => {
            show(answer);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("leanproxy {command}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn faults(args: FaultsArgs) -> ExitCode {
    use crate::fault::Placement;
    match args.action {
        FaultAction::Add {
            spec,
            position,
            before,
        } => {
            let rule = match crate::fault::parse_spec(&spec.join(" ")) {
                Ok(rule) => rule.to_raw(),
                Err(e) => {
                    eprintln!("leanproxy faults add: {e}");
                    return ExitCode::from(2);
                }
            };
            let placement = match (position, before) {
                (Some(n), _) => Placement::Position(n),
                (None, Some(id)) => Placement::Before(id),
                (None, None) => Placement::Last,
            };
            with_admin(
                "faults",
                &args.admin,
                async |c| c.add_fault(&rule, &placement).await,
                |added| {
                    let text = |v: Option<serde_json::Value>| {
                        v.and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    };
                    say!(
                        "added {} ({})",
                        text(added.rule.id),
                        text(added.rule.action)
                    );
                },
            )
        }
        FaultAction::List => with_admin(
            "faults",
            &args.admin,
            async |c| c.faults().await,
            |list| say_raw!("{}", crate::cli::fault_table(&list)),
        ),
        FaultAction::Rm { id } => with_admin(
            "faults",
            &args.admin,
            async |c| c.remove_fault(&id).await,
            |id| say!("removed {id}"),
        ),
        FaultAction::Pause { id } => with_admin(
            "faults",
            &args.admin,
            async |c| c.pause_fault(&id, true).await,
            |_| say!("paused {id}"),
        ),
        FaultAction::Resume { id } => with_admin(
            "faults",
            &args.admin,
            async |c| c.pause_fault(&id, false).await,
            |_| say!("resumed {id}"),
        ),
        FaultAction::Clear => with_admin(
            "faults",
            &args.admin,
            async |c| c.clear_faults().await,
            |n| say!("removed {n} rules"),
        ),
    }
}

fn token(args: TokenArgs) -> ExitCode {
    let TokenAction::Customer { id } = args.action;
    with_admin(
        "token",
        &args.admin,
        async |c| c.customer_token(&id).await,
        |minted| {
            say!(
                "{}",
                serde_json::to_string_pretty(&minted).unwrap_or_default()
            )
        },
    )
}

fn tail(args: AdminArg) -> ExitCode {
    use std::io::{IsTerminal, Write};
    let color = std::io::stdout().is_terminal();
    let print = |event: &str, data: &serde_json::Value| {
        if let Some(line) = crate::cli::tail_line(event, data, color) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    with_admin("tail", &args, async |c| c.events(print).await, |()| {})
}

fn reconnects(args: ReconnectsArgs) -> ExitCode {
    let pretty = |record: &crate::reconnect::Record| {
        serde_json::to_string_pretty(record).unwrap_or_default()
    };
    match args.action {
        None | Some(ReconnectAction::List { state: None }) => with_admin(
            "reconnects",
            &args.admin,
            async |c| c.reconnects(None).await,
            |list| say_raw!("{}", crate::cli::reconnect_table(&list)),
        ),
        Some(ReconnectAction::List { state: Some(state) }) => with_admin(
            "reconnects",
            &args.admin,
            async |c| c.reconnects(Some(&state)).await,
            |list| say_raw!("{}", crate::cli::reconnect_table(&list)),
        ),
        Some(ReconnectAction::Show { id }) => with_admin(
            "reconnects",
            &args.admin,
            async |c| c.reconnect(&id).await,
            |record| say!("{}", pretty(&record)),
        ),
        Some(ReconnectAction::Resolve { id }) => with_admin(
            "reconnects",
            &args.admin,
            async |c| c.resolve(&id).await,
            |r| {
                say!(
                    "resolved {id} (reconnect id {}, {} calls while pending)",
                    r.reconnect_id,
                    r.calls_while_pending
                )
            },
        ),
    }
}

fn mockbank(args: MockbankArgs) -> ExitCode {
    if let Some(control) = args.control {
        return mockbank_control(control);
    }
    let serve_args = ServeArgs {
        config: args.config,
        ..ServeArgs::default()
    };
    let mut settings = match load(&serve_args) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("leanproxy: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        match listen.parse() {
            Ok(addr) => settings.mockbank.listen = addr,
            Err(e) => {
                eprintln!("leanproxy: --listen: `{listen}` is not an address ({e})");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(region) = args.region {
        match crate::mockbank::Region::ALL
            .into_iter()
            .find(|r| r.name() == region)
        {
            Some(r) => settings.mockbank.region = r,
            None => {
                eprintln!("leanproxy: --region: `{region}` is not one of uae, ksa");
                return ExitCode::from(2);
            }
        }
    }
    crate::log::install_tracing(settings.log.format);
    let runtime = match runtime(settings.proxy.workers) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    exit_code(runtime.block_on(async move {
        let clock = Clock::new(chrono::Utc::now(), settings.mockbank.time_scale);
        let mockbank = Mockbank::new(settings.mockbank.clone(), clock)?.with_guard(
            crate::admin::Guard::new(settings.admin.allowed_hosts.clone()),
        );
        let addr = settings.mockbank.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                key: "mockbank.listen",
                addr,
                source,
            })?;
        let shutdown = shutdown_signal();
        let url = format!("http://{}", listener.local_addr()?);
        say!("leanproxy mockbank listening on {url}");
        say!("{}", mockbank.banner(&url, mockbank.webhook_url().as_ref()));
        crate::serve_mockbank(mockbank, listener, shutdown, settings.proxy.timeouts()).await;
        Ok(())
    }))
}

/// `leanproxy mockbank clock|expire|consent|bank|users|entities`: one call to
/// a running Mockbank's control API, its answer printed.
fn mockbank_control(control: MockbankControl) -> ExitCode {
    use http::Method;
    use MockbankControl as C;
    let post = |path: String| (Method::POST, path, Some(serde_json::json!({})));
    let (at, (method, path, body)) = match control {
        C::Clock { at, action } => (
            at,
            match action {
                None => (Method::GET, "clock".to_string(), None),
                Some(ClockAction::Advance { duration }) => (
                    Method::POST,
                    "clock/advance".into(),
                    Some(serde_json::json!({ "duration": duration })),
                ),
                Some(ClockAction::Pause) => post("clock/pause".into()),
                Some(ClockAction::Resume) => post("clock/resume".into()),
            },
        ),
        C::Expire { at, entity } => (at, post(format!("entities/{entity}/expire"))),
        C::Consent {
            at,
            action: ConsentAction::Expire { entity },
        } => (at, post(format!("entities/{entity}/consent/expire"))),
        C::Bank { at, action } => (
            at,
            match action {
                BankAction::Down { bank } => post(format!("banks/{bank}/down")),
                BankAction::Up { bank } => post(format!("banks/{bank}/up")),
            },
        ),
        C::Users { at } => (at, (Method::GET, "users".into(), None)),
        C::Entities { at } => (at, (Method::GET, "entities".into(), None)),
    };
    let runtime = match runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let client = MockbankClient::new(&at.mockbank);
    match runtime.block_on(client.control(method, &path, body.as_ref())) {
        Ok(answer) => {
            say!("{}", format::mockbank_answer(&path, &answer));
            ExitCode::SUCCESS
        }
        Err(ClientError::Unreachable { detail, .. }) => {
            eprintln!(
                "leanproxy mockbank: cannot reach the Mockbank at {} ({detail}); is it running? (--mockbank URL)",
                at.mockbank
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("leanproxy mockbank: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn check(args: ServeArgs) -> ExitCode {
    let origin = args
        .config
        .config
        .as_ref()
        .map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let result =
        load(&args).map_err(Error::from).and_then(
            |settings| match crate::client::tls::client_config(&settings.tls) {
                Ok(_) => Ok(settings),
                Err(e) => Err(e.into()),
            },
        );
    match result {
        Ok(settings) => {
            say!("config OK ({origin})");
            match &settings.proxy.upstream {
                Some(u) => say!("  upstream: {u}"),
                None => say!("  upstream: the embedded Mockbank (no proxy.upstream set)"),
            }
            for route in &settings.routes {
                let by = match &route.matcher {
                    crate::config::RouteMatch::Prefix(p) => format!("prefix {p}"),
                    crate::config::RouteMatch::Header(n, v) => {
                        format!("header {n}: {}", v.to_str().unwrap_or("?"))
                    }
                };
                say!("  route {}: {by} -> {}", route.name, route.upstream);
            }
            say!("  proxy:    http://{}", settings.proxy.listen);
            say!("  admin:    http://{}", settings.admin.listen);
            for warning in settings.warnings() {
                say!("  warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("leanproxy check: {origin}: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let settings = match load(&args) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("leanproxy: {e}");
            return ExitCode::from(2);
        }
    };
    crate::log::install_tracing(settings.log.format);
    let runtime = match runtime(settings.proxy.workers) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // On a worker, not on this thread: the accept loops then run where the
    // I/O driver wakes, and a new connection needs no wake-up of the main
    // thread first (a futex hop seen in `strace -f` on every accept).
    exit_code(runtime.block_on(async {
        match tokio::spawn(serve_until_signal(settings)).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }))
}

async fn serve_until_signal(settings: Settings) -> Result<(), Error> {
    let app = App::open(&settings).await?;
    let listeners = Listeners::bind(&settings).await?;
    let shutdown = shutdown_signal();
    // Stable lines on stdout: people and scripts (the tests) read the real ports.
    println!("{}", app.banner(&listeners)?);
    app.serve(listeners, shutdown).await
}

/// Completes on SIGINT or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: callers call it before printing the "listening" lines, so a
/// signal sent as soon as those lines appear stops the server gracefully
/// instead of killing it with the default action.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &'static str| {
            signal(kind)
                .map_err(|e| tracing::error!(error = %e, "cannot listen for {name}"))
                .ok()
        };
        let interrupt = listen(SignalKind::interrupt(), "SIGINT");
        let terminate = listen(SignalKind::terminate(), "SIGTERM");
        async move {
            let received = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = received(interrupt) => tracing::info!("SIGINT received"),
                () = received(terminate) => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let ctrl_c = tokio::signal::ctrl_c();
        async move {
            match ctrl_c.await {
                Ok(()) => tracing::info!("SIGINT received"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGINT");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}
