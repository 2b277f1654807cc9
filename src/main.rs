//! The `leanproxy` binary: parses arguments, loads the config, installs tracing and
//! runs the library. Exit codes: 0 success, 1 runtime failure, 2 bad configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use leanproxy::config::{self, ConfigError, RawConfig, Settings};
use leanproxy::mockbank::{Clock, Mockbank};
use leanproxy::{App, Error, Listeners};

/// jemalloc, with its background thread on (the crate's `background_threads`
/// feature): freed pages go back to the system after jemalloc's decay time
/// (10 s) even while the process sits idle. glibc's malloc kept the ~180 MiB
/// a storm of 5,000 connections had taken until the process ended
/// (benches/README.md, storm).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A reconnect-aware reverse proxy for Lean's open-banking API.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default when no command is given).
    Serve(ServeArgs),
    /// Validate the configuration and exit 0, or print the problems and exit 2.
    Check(ConfigArg),
    /// Run the embedded Mockbank (offline Lean sandbox) alone.
    Mockbank(MockbankArgs),
    /// Show or resolve the reconnects a running leanproxy has seen.
    Reconnects(ReconnectsArgs),
    /// Follow a running leanproxy's exchanges, reconnects, faults and webhooks live.
    Tail(AdminArg),
    /// Add, list or remove a running leanproxy's fault rules.
    Faults(FaultsArgs),
    /// Mint tokens with a running leanproxy's OAuth2 client credentials.
    Token(TokenArgs),
}

#[derive(Args, Clone)]
struct TokenArgs {
    #[command(flatten)]
    admin: AdminArg,
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Subcommand, Clone)]
enum TokenAction {
    /// A `customer.<id>` token for the LinkSDK (printed as JSON).
    Customer {
        /// The customer id.
        id: String,
    },
}

#[derive(Args, Clone)]
struct FaultsArgs {
    #[command(flatten)]
    admin: AdminArg,
    #[command(subcommand)]
    action: FaultAction,
}

#[derive(Subcommand, Clone)]
enum FaultAction {
    /// Add a rule from a compact spec, e.g. `reconnect path=/data/v2/* count=2`
    /// or `lean_error=RATE_LIMIT_EXCEEDED p=0.1` (every action and option:
    /// `--help`).
    #[command(after_long_help = leanproxy::fault::SPEC_HELP)]
    Add {
        /// The spec (its words may be given separately).
        #[arg(required = true, num_args = 1..)]
        spec: Vec<String>,
        /// Where the rule goes in the evaluation order (0: first; default: last).
        #[arg(long, value_name = "N", conflicts_with = "before")]
        position: Option<usize>,
        /// Put the rule just before the rule with this id.
        #[arg(long, value_name = "ID")]
        before: Option<String>,
    },
    /// The rules with their counters.
    List,
    /// Remove one rule.
    Rm {
        /// Rule id.
        #[arg(value_parser = rule_id)]
        id: String,
    },
    /// Pause a rule: it stays, with its counters, but faults nothing.
    Pause {
        /// Rule id.
        #[arg(value_parser = rule_id)]
        id: String,
    },
    /// Resume a paused rule.
    Resume {
        /// Rule id.
        #[arg(value_parser = rule_id)]
        id: String,
    },
    /// Remove every rule.
    Clear,
}

/// A rule id as the CLI takes it: not empty (an empty id would name the
/// collection, not a rule).
fn rule_id(id: &str) -> Result<String, String> {
    if id.is_empty() {
        return Err("a rule id is required (`leanproxy faults list` shows them; `leanproxy faults clear` removes every rule)".into());
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
    if !id.bytes().all(allowed) {
        return Err(format!(
            "`{id}` is not a rule id (letters, digits, `-`, `_`, `.` or `:`)"
        ));
    }
    Ok(id.to_string())
}

#[derive(Args, Clone)]
struct AdminArg {
    /// Admin API of the running instance (LEANPROXY_ADMIN_TOKEN is sent if set).
    #[arg(
        long,
        global = true,
        env = "LEANPROXY_ADMIN",
        default_value = "http://127.0.0.1:7071",
        value_name = "URL"
    )]
    admin: String,
}

#[derive(Args, Clone)]
struct ReconnectsArgs {
    #[command(flatten)]
    admin: AdminArg,
    #[command(subcommand)]
    action: Option<ReconnectAction>,
}

#[derive(Subcommand, Clone)]
enum ReconnectAction {
    /// One line per record (the default).
    List {
        /// Only `pending` or `resolved` records.
        #[arg(long)]
        state: Option<String>,
    },
    /// Everything recorded for one entity (or `reconnect:<id>`).
    Show {
        /// Entity id.
        id: String,
    },
    /// Mark an entity's reconnect resolved (by admin).
    Resolve {
        /// Entity id.
        id: String,
    },
}

#[derive(Args, Clone, Default)]
struct MockbankArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Mockbank listen address (overrides mockbank.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

#[derive(Args, Clone, Default)]
struct ConfigArg {
    /// Config file (TOML); see config/leanproxy.toml for every option.
    #[arg(long, short, env = config::ENV_CONFIG, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Upstream base URL, e.g. https://sandbox.leantech.me (overrides proxy.upstream).
    /// Without one, leanproxy runs in front of its embedded Mockbank.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Proxy listen address (overrides proxy.listen).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin listen address (overrides admin.listen).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Mockbank listen address when it runs (overrides mockbank.listen).
    #[arg(long, value_name = "ADDR")]
    mockbank_listen: Option<String>,
    /// Webhook catcher listen address (overrides webhooks.listen).
    #[arg(long, value_name = "ADDR")]
    webhooks_listen: Option<String>,
    /// Where leanproxy keeps its state (overrides proxy.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Log line format (overrides log.format).
    #[arg(long, value_enum)]
    log_format: Option<Format>,
}

#[derive(ValueEnum, Clone, Copy)]
enum Format {
    Pretty,
    Json,
}

impl ServeArgs {
    /// Command-line flags win over the file.
    fn apply(&self, raw: &mut RawConfig) {
        if let Some(upstream) = &self.upstream {
            raw.proxy.upstream = Some(upstream.clone());
        }
        if let Some(listen) = &self.listen {
            raw.proxy.listen = listen.clone();
        }
        if let Some(listen) = &self.admin_listen {
            raw.admin.listen = listen.clone();
        }
        if let Some(listen) = &self.mockbank_listen {
            raw.mockbank.listen = listen.clone();
        }
        if let Some(listen) = &self.webhooks_listen {
            raw.webhooks.listen = listen.clone();
        }
        if let Some(dir) = &self.data_dir {
            raw.proxy.data_dir = dir.clone();
        }
        if let Some(format) = self.log_format {
            raw.log.format = match format {
                Format::Pretty => "pretty",
                Format::Json => "json",
            }
            .into();
        }
    }
}

fn load(args: &ServeArgs) -> Result<Settings, ConfigError> {
    let mut raw = match &args.config.config {
        Some(path) => config::load(path)?,
        None => RawConfig::default(),
    };
    args.apply(&mut raw);
    Settings::from_raw(raw, &config::process_env)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A panic first writes the log lines still waiting (src/log/stderr.rs).
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        leanproxy::log::BatchedStderr::flush_global();
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
    leanproxy::log::BatchedStderr::flush_global();
    code
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    runtime_with(None)
}

/// A multi-thread runtime with `workers` threads (`None`: one per CPU).
fn runtime_with(
    workers: Option<std::num::NonZeroUsize>,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // `top -H` and /proc show whose threads these are (the blocking pool's
    // threads, started on demand, share the name).
    builder.thread_name("leanproxy-rt");
    if let Some(n) = workers {
        builder.worker_threads(n.get());
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("leanproxy: cannot start the runtime: {e}");
        ExitCode::FAILURE
    })
}

fn exit_code(result: Result<(), Error>) -> ExitCode {
    // Log lines still waiting come before the error that ends the process.
    leanproxy::log::BatchedStderr::flush_global();
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

fn admin_token() -> Option<config::Secret> {
    config::process_env(config::ENV_ADMIN_TOKEN)
        .filter(|t| !t.is_empty())
        .map(config::Secret::new)
}

fn faults(args: FaultsArgs) -> ExitCode {
    use http::Method;
    let body = match &args.action {
        FaultAction::Add { spec, .. } => match leanproxy::fault::parse_spec(&spec.join(" ")) {
            Ok(rule) => serde_json::to_value(rule.to_raw()).ok(),
            Err(e) => {
                eprintln!("leanproxy faults add: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    let (method, path) = match &args.action {
        FaultAction::Add {
            position, before, ..
        } => {
            let placement = match (position, before) {
                (Some(n), _) => format!("?position={n}"),
                (None, Some(id)) => format!(
                    "?{}",
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair("before", id)
                        .finish()
                ),
                (None, None) => String::new(),
            };
            (Method::POST, format!("/api/faults{placement}"))
        }
        FaultAction::List => (Method::GET, "/api/faults".to_string()),
        FaultAction::Rm { id } => (Method::DELETE, format!("/api/faults/{id}")),
        FaultAction::Pause { id } => (Method::POST, format!("/api/faults/{id}/pause")),
        FaultAction::Resume { id } => (Method::POST, format!("/api/faults/{id}/resume")),
        FaultAction::Clear => (Method::DELETE, "/api/faults".to_string()),
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let token = admin_token();
    let call = leanproxy::cli::admin_send(
        &args.admin.admin,
        method,
        &path,
        token.as_ref(),
        body.as_ref(),
    );
    match runtime.block_on(call) {
        Err(e) => {
            eprintln!("leanproxy faults: {e}");
            ExitCode::FAILURE
        }
        Ok((status, body)) if !status.is_success() => {
            let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("");
            eprintln!("leanproxy faults: {status}: {message}");
            ExitCode::from(if status == http::StatusCode::NOT_FOUND {
                3
            } else {
                1
            })
        }
        Ok((_, body)) => {
            match args.action {
                FaultAction::Add { .. } => println!(
                    "added {} ({})",
                    body.get("id").and_then(|v| v.as_str()).unwrap_or("?"),
                    body.get("action").and_then(|v| v.as_str()).unwrap_or("?")
                ),
                FaultAction::List => print!("{}", leanproxy::cli::fault_table(&body)),
                FaultAction::Rm { id } => println!("removed {id}"),
                FaultAction::Pause { id } => println!("paused {id}"),
                FaultAction::Resume { id } => println!("resumed {id}"),
                FaultAction::Clear => println!(
                    "removed {} rules",
                    body.get("removed").and_then(|v| v.as_u64()).unwrap_or(0)
                ),
            }
            ExitCode::SUCCESS
        }
    }
}

fn token(args: TokenArgs) -> ExitCode {
    let TokenAction::Customer { id } = args.action;
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let body = serde_json::json!({"customer_id": id});
    let token = admin_token();
    let call = leanproxy::cli::admin_send(
        &args.admin.admin,
        http::Method::POST,
        "/api/tokens/customer",
        token.as_ref(),
        Some(&body),
    );
    match runtime.block_on(call) {
        Ok((status, body)) if status.is_success() => {
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("");
            eprintln!("leanproxy token: {status}: {message}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("leanproxy token: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tail(args: AdminArg) -> ExitCode {
    use std::io::{IsTerminal, Write};
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let color = std::io::stdout().is_terminal();
    let token = admin_token();
    let result = runtime.block_on(leanproxy::cli::tail(
        &args.admin,
        token.as_ref(),
        color,
        |line| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        },
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("leanproxy tail: {e}");
            ExitCode::FAILURE
        }
    }
}

fn reconnects(args: ReconnectsArgs) -> ExitCode {
    use http::{Method, StatusCode};
    use leanproxy::cli::{admin_call, reconnect_table};
    let token = admin_token();
    let (method, path) = match &args.action {
        None | Some(ReconnectAction::List { state: None }) => {
            (Method::GET, "/api/reconnects".to_string())
        }
        Some(ReconnectAction::List { state: Some(s) }) => {
            (Method::GET, format!("/api/reconnects?state={s}"))
        }
        Some(ReconnectAction::Show { id }) => (Method::GET, format!("/api/reconnects/{id}")),
        Some(ReconnectAction::Resolve { id }) => (Method::DELETE, format!("/api/reconnects/{id}")),
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(admin_call(&args.admin.admin, method, &path, token.as_ref())) {
        Err(e) => {
            eprintln!("leanproxy reconnects: {e}");
            ExitCode::FAILURE
        }
        Ok((status, body)) if !status.is_success() => {
            let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("");
            eprintln!("leanproxy reconnects: {status}: {message}");
            ExitCode::from(if status == StatusCode::NOT_FOUND {
                3
            } else {
                1
            })
        }
        Ok((_, body)) => {
            match args.action {
                None | Some(ReconnectAction::List { .. }) => print!("{}", reconnect_table(&body)),
                Some(ReconnectAction::Show { .. }) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&body).unwrap_or_default()
                    )
                }
                Some(ReconnectAction::Resolve { id }) => println!(
                    "resolved {id} (reconnect id {}, {} calls while pending)",
                    body.get("reconnect_id")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?"),
                    body.get("calls_while_pending")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0)
                ),
            }
            ExitCode::SUCCESS
        }
    }
}

fn mockbank(args: MockbankArgs) -> ExitCode {
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
    leanproxy::log::install_tracing(settings.log.format);
    let runtime = match runtime_with(settings.proxy.workers) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    exit_code(runtime.block_on(async move {
        let clock = Clock::new(chrono::Utc::now(), settings.mockbank.time_scale);
        let mockbank = Mockbank::new(settings.mockbank.clone(), clock)?.with_guard(
            leanproxy::admin::Guard::new(settings.admin.allowed_hosts.clone()),
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
        println!("leanproxy mockbank listening on {url}");
        println!("{}", mockbank.banner(&url, mockbank.webhook_url().as_ref()));
        leanproxy::serve_mockbank(mockbank, listener, shutdown, (&settings.proxy).into()).await;
        Ok(())
    }))
}

fn check(args: ServeArgs) -> ExitCode {
    let origin = args
        .config
        .config
        .as_ref()
        .map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let result = load(&args).map_err(Error::from).and_then(|settings| {
        match leanproxy::proxy::tls::client_config(&settings.tls) {
            Ok(_) => Ok(settings),
            Err(e) => Err(e.into()),
        }
    });
    match result {
        Ok(settings) => {
            println!("config OK ({origin})");
            match &settings.proxy.upstream {
                Some(u) => println!("  upstream: {u}"),
                None => println!("  upstream: the embedded Mockbank (no proxy.upstream set)"),
            }
            for route in &settings.routes {
                let by = match &route.matcher {
                    leanproxy::config::RouteMatch::Prefix(p) => format!("prefix {p}"),
                    leanproxy::config::RouteMatch::Header(n, v) => {
                        format!("header {n}: {}", v.to_str().unwrap_or("?"))
                    }
                };
                println!("  route {}: {by} -> {}", route.name, route.upstream);
            }
            println!("  proxy:    http://{}", settings.proxy.listen);
            println!("  admin:    http://{}", settings.admin.listen);
            for warning in settings.warnings() {
                println!("  warning: {warning}");
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
    leanproxy::log::install_tracing(settings.log.format);
    let runtime = match runtime_with(settings.proxy.workers) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // On a worker, not on this thread: the accept loops then run where the
    // I/O driver wakes, and a new connection needs no wake-up of the main
    // thread first (a futex hop seen in `strace -f` on every accept).
    exit_code(runtime.block_on(async {
        match tokio::spawn(run(settings)).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }))
}

async fn run(settings: Settings) -> Result<(), Error> {
    let app = App::build(&settings)?;
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
