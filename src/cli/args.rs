//! The command line, as clap reads it: subcommands, their arguments, and the
//! flags that override the config file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, RawConfig};

/// A reconnect-aware reverse proxy for Lean's open-banking API.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub(super) command: Option<Command>,
    #[command(flatten)]
    pub(super) serve: ServeArgs,
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Run the proxy (the default when no command is given).
    Serve(ServeArgs),
    /// Validate the configuration and exit 0, or print the problems and exit 2.
    Check(ConfigArg),
    /// Run the embedded Mockbank (offline Lean sandbox) alone, or control a
    /// running one: clock, sessions, consents, banks.
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
pub(super) struct TokenArgs {
    #[command(flatten)]
    pub(super) admin: AdminArg,
    #[command(subcommand)]
    pub(super) action: TokenAction,
}

#[derive(Subcommand, Clone)]
pub(super) enum TokenAction {
    /// A `customer.<id>` token for the LinkSDK (printed as JSON).
    Customer {
        /// The customer id.
        id: String,
    },
}

#[derive(Args, Clone)]
pub(super) struct FaultsArgs {
    #[command(flatten)]
    pub(super) admin: AdminArg,
    #[command(subcommand)]
    pub(super) action: FaultAction,
}

#[derive(Subcommand, Clone)]
pub(super) enum FaultAction {
    /// Add a rule from a compact spec, e.g. `reconnect path=/data/v2/* count=2`
    /// or `lean_error=RATE_LIMIT_EXCEEDED p=0.1` (every action and option:
    /// `--help`).
    #[command(after_long_help = crate::fault::SPEC_HELP)]
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
pub(super) fn rule_id(id: &str) -> Result<String, String> {
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
pub(super) struct AdminArg {
    /// Admin API of the running instance (LEANPROXY_ADMIN_TOKEN is sent if set).
    #[arg(
        long,
        global = true,
        env = "LEANPROXY_ADMIN",
        default_value = "http://127.0.0.1:7071",
        value_name = "URL"
    )]
    pub(super) admin: String,
}

#[derive(Args, Clone)]
pub(super) struct ReconnectsArgs {
    #[command(flatten)]
    pub(super) admin: AdminArg,
    #[command(subcommand)]
    pub(super) action: Option<ReconnectAction>,
}

#[derive(Subcommand, Clone)]
pub(super) enum ReconnectAction {
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
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct MockbankArgs {
    #[command(subcommand)]
    pub(super) control: Option<MockbankControl>,
    #[command(flatten)]
    pub(super) config: ConfigArg,
    /// Mockbank listen address (overrides mockbank.listen).
    #[arg(long, value_name = "ADDR")]
    pub(super) listen: Option<String>,
    /// Which of Lean's sandboxes it emulates, uae or ksa (overrides mockbank.region).
    #[arg(long, value_name = "REGION")]
    pub(super) region: Option<String>,
}

/// What to do to a running Mockbank (alone, or embedded in the proxy).
#[derive(Subcommand, Clone)]
pub(super) enum MockbankControl {
    /// The Mockbank clock: show it, advance it, pause or resume it.
    Clock {
        #[command(flatten)]
        at: MockbankArg,
        #[command(subcommand)]
        action: Option<ClockAction>,
    },
    /// "Expire session": the entity's next data call answers RECONNECT_REQUIRED.
    Expire {
        #[command(flatten)]
        at: MockbankArg,
        /// Entity id.
        entity: String,
    },
    /// Expire an entity's consent: CONSENT_EXPIRED until the user links again.
    Consent {
        #[command(flatten)]
        at: MockbankArg,
        #[command(subcommand)]
        action: ConsentAction,
    },
    /// Take a bank down (maintenance, bank.availability.updated) or bring it up.
    Bank {
        #[command(flatten)]
        at: MockbankArg,
        #[command(subcommand)]
        action: BankAction,
    },
    /// The test users: usernames, passwords, behaviours.
    Users {
        #[command(flatten)]
        at: MockbankArg,
    },
    /// Linked entities and their sessions.
    Entities {
        #[command(flatten)]
        at: MockbankArg,
    },
}

#[derive(Subcommand, Clone)]
pub(super) enum ClockAction {
    /// Moves the clock on, e.g. `10m` or `90s`.
    Advance {
        /// A duration: 10m, 90s, 1h30m.
        duration: String,
    },
    /// Stops the clock.
    Pause,
    /// Restarts the clock.
    Resume,
}

#[derive(Subcommand, Clone)]
pub(super) enum ConsentAction {
    /// Expires the entity's consent.
    Expire {
        /// Entity id.
        entity: String,
    },
}

#[derive(Subcommand, Clone)]
pub(super) enum BankAction {
    /// Under maintenance: data calls answer FAILED / BANK_MAINTENANCE.
    Down {
        /// Bank identifier, e.g. LEAN_OF_RETAIL_UAE.
        bank: String,
    },
    /// Back from maintenance.
    Up {
        /// Bank identifier.
        bank: String,
    },
}

#[derive(Args, Clone)]
pub(super) struct MockbankArg {
    /// The running Mockbank (alone, or the proxy's embedded one).
    #[arg(
        long,
        global = true,
        env = "LEANPROXY_MOCKBANK",
        default_value = "http://127.0.0.1:7072",
        value_name = "URL"
    )]
    pub(super) mockbank: String,
}

#[derive(Args, Clone, Default)]
pub(super) struct ConfigArg {
    /// Config file (TOML); see config/leanproxy.toml for every option.
    #[arg(long, short, env = config::ENV_CONFIG, value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    pub(super) config: ConfigArg,
    /// Upstream base URL, e.g. https://sandbox.leantech.me (overrides proxy.upstream).
    /// Without one, leanproxy runs in front of its embedded Mockbank.
    #[arg(long, value_name = "URL")]
    pub(super) upstream: Option<String>,
    /// Proxy listen address (overrides proxy.listen).
    #[arg(long, value_name = "ADDR")]
    pub(super) listen: Option<String>,
    /// Admin listen address (overrides admin.listen).
    #[arg(long, value_name = "ADDR")]
    pub(super) admin_listen: Option<String>,
    /// Mockbank listen address when it runs (overrides mockbank.listen).
    #[arg(long, value_name = "ADDR")]
    pub(super) mockbank_listen: Option<String>,
    /// Webhook catcher listen address (overrides webhooks.listen).
    #[arg(long, value_name = "ADDR")]
    pub(super) webhooks_listen: Option<String>,
    /// Where leanproxy keeps its state (overrides proxy.data_dir).
    #[arg(long, value_name = "DIR")]
    pub(super) data_dir: Option<String>,
    /// Log line format (overrides log.format).
    #[arg(long, value_enum)]
    pub(super) log_format: Option<Format>,
}

#[derive(ValueEnum, Clone, Copy)]
pub(super) enum Format {
    Pretty,
    Json,
}

impl ServeArgs {
    /// Command-line flags win over the file.
    pub(super) fn apply(&self, raw: &mut RawConfig) {
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
            raw.proxy.data_dir = Some(dir.clone());
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
