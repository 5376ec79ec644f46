//! `sluice user` and `sluice acl`: users, their quotas and access rules, on a stopped broker's
//! data directory (`--data-dir`) or through a running broker (`--addr`, as a user allowed to
//! alter the cluster); and the password of `--user` for client commands.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use sluice::client::Client;
use sluice::security::{
    wire, Offline, Operation, PatternKind, Permission, Quotas, ResourceKind, Rule, Security,
    UserInfo, UserOptions,
};
use sluice::storage::StdFs;

use super::Out;

/// User commands.
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user; its password is read from standard input (asked twice on a terminal).
    Add {
        /// Name: letters, digits and `. _ - @`.
        name: String,
        /// Skips every access rule.
        #[arg(long)]
        superuser: bool,
        /// Stops being accepted after this long (`90d`, `12h`, `30m`, `45s`).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
        expires_in: Option<u64>,
        #[command(flatten)]
        quotas: QuotaArgs,
        #[command(flatten)]
        place: Place,
    },
    /// List users.
    List {
        #[command(flatten)]
        place: Place,
    },
    /// Delete a user: its connections are refused from their next request.
    Delete {
        /// Name.
        name: String,
        #[command(flatten)]
        place: Place,
    },
    /// Set a user's quotas (a limit left out is removed).
    Quota {
        /// Name.
        name: String,
        #[command(flatten)]
        quotas: QuotaArgs,
        #[command(flatten)]
        place: Place,
    },
}

/// Access rule commands.
#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// Add a rule.
    Add(RuleArgs),
    /// List rules.
    List {
        /// Only the rules of this user (`*`: the rules for every user).
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        place: Place,
    },
    /// Remove a rule (given as it was added).
    Remove(RuleArgs),
}

/// Where users and rules are: a stopped broker's data directory, or else the running
/// broker at `--addr`.
#[derive(Args, Debug)]
pub struct Place {
    /// Change the data directory of a stopped broker instead of a running one.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// A user's quotas.
#[derive(Args, Debug, Clone, Copy)]
pub struct QuotaArgs {
    /// Bytes per second the user may publish, over all its connections.
    #[arg(long, value_name = "BYTES")]
    pub produce_bytes_per_sec: Option<u64>,
    /// Bytes per second the user may read, over all its connections.
    #[arg(long, value_name = "BYTES")]
    pub fetch_bytes_per_sec: Option<u64>,
    /// Connections the user may hold at once.
    #[arg(long, value_name = "N")]
    pub connections_max: Option<u32>,
}

/// One access rule.
#[derive(Args, Debug)]
pub struct RuleArgs {
    /// The user it applies to, or `*` for every user.
    #[arg(long)]
    pub principal: String,
    /// Allow these operations (comma-separated: read, write, create, delete, describe,
    /// alter, all).
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "deny",
        required_unless_present = "deny"
    )]
    pub allow: Vec<Operation>,
    /// Deny these operations (deny wins over any allow).
    #[arg(long, value_delimiter = ',')]
    pub deny: Vec<Operation>,
    /// On this topic.
    #[arg(long, group = "resource")]
    pub topic: Option<String>,
    /// On this queue.
    #[arg(long, group = "resource")]
    pub queue: Option<String>,
    /// On this group (named subscriber, consumer group, Kafka group).
    #[arg(long, group = "resource")]
    pub group: Option<String>,
    /// On the cluster (users and rules).
    #[arg(long, group = "resource")]
    pub cluster: bool,
    /// The name is a prefix: every name starting with it.
    #[arg(long)]
    pub prefix: bool,
    #[command(flatten)]
    pub place: Place,
}

impl QuotaArgs {
    fn quotas(self) -> Quotas {
        Quotas {
            produce_bytes_per_sec: self.produce_bytes_per_sec,
            fetch_bytes_per_sec: self.fetch_bytes_per_sec,
            connections_max: self.connections_max,
        }
    }
}

impl RuleArgs {
    fn rules(&self) -> Result<Vec<Rule>> {
        let (resource, name) = match (&self.topic, &self.queue, &self.group, self.cluster) {
            (Some(n), ..) => (ResourceKind::Topic, n.clone()),
            (_, Some(n), ..) => (ResourceKind::Queue, n.clone()),
            (_, _, Some(n), _) => (ResourceKind::Group, n.clone()),
            (.., true) => (ResourceKind::Cluster, String::new()),
            _ => bail!("name what the rule is on: --topic, --queue, --group or --cluster"),
        };
        let (permission, ops) = if self.deny.is_empty() {
            (Permission::Allow, &self.allow)
        } else {
            (Permission::Deny, &self.deny)
        };
        let pattern = if self.prefix {
            PatternKind::Prefix
        } else {
            PatternKind::Exact
        };
        Ok(ops
            .iter()
            .map(|&operation| Rule {
                principal: self.principal.clone(),
                resource,
                pattern,
                name: name.clone(),
                operation,
                permission,
            })
            .collect())
    }
}

/// `90d`, `12h`, `30m`, `45s` or a number of seconds, as milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let (n, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 90d, 12h, 30m, 45s"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    n.checked_mul(secs * 1000)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// The password of a new user: the first line of standard input, or asked twice on a
/// terminal.
fn new_password(name: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("password for {name}: "))?;
        let b = rpassword::prompt_password("again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        return Ok(a);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The password of `--user`: `SLUICE_PASSWORD`, or asked on a terminal.
pub fn client_password(user: &str) -> Result<String> {
    if let Ok(p) = std::env::var("SLUICE_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password(format!("password of {user}: "))?);
    }
    bail!("--user {user} needs a password: set SLUICE_PASSWORD (or run on a terminal)")
}

fn offline(dir: &std::path::Path) -> Result<Offline> {
    Offline::open(Arc::new(StdFs), dir)
        .with_context(|| format!("cannot open the users of {}", dir.display()))
}

fn print_user(out: &Out, u: &UserInfo) {
    let q = u.quotas;
    out.line(
        || {
            let mut s = u.name.clone();
            if u.superuser {
                s.push_str("  superuser");
            }
            if let Some(t) = u.expires_at_ms {
                s.push_str(&format!("  expires_at_ms={t}"));
            }
            for (k, v) in [
                ("produce_bytes_per_sec", q.produce_bytes_per_sec),
                ("fetch_bytes_per_sec", q.fetch_bytes_per_sec),
                ("connections_max", q.connections_max.map(u64::from)),
            ] {
                if let Some(v) = v {
                    s.push_str(&format!("  {k}={v}"));
                }
            }
            s
        },
        || {
            json!({"name": u.name, "superuser": u.superuser, "expires_at_ms": u.expires_at_ms,
                "created_ms": u.created_ms, "produce_bytes_per_sec": q.produce_bytes_per_sec,
                "fetch_bytes_per_sec": q.fetch_bytes_per_sec, "connections_max": q.connections_max})
        },
    );
}

fn print_rule(out: &Out, r: &Rule) {
    out.line(
        || r.to_string(),
        || {
            json!({"principal": r.principal, "permission": r.permission.as_str(),
                "operation": r.operation.as_str(), "resource": r.resource.as_str(),
                "pattern": r.pattern.as_str(), "name": r.name})
        },
    );
}

/// Where a user or rule command applies.
pub enum Target<'a> {
    /// A stopped broker's security file.
    Offline(&'a Security),
    /// A running broker.
    Online(&'a Client),
}

fn now_ms() -> u64 {
    sluice::storage::now_ms().max(0) as u64
}

/// The data directory a user command names, if any.
pub fn user_dir(cmd: &UserCmd) -> Option<&PathBuf> {
    match cmd {
        UserCmd::Add { place, .. }
        | UserCmd::List { place }
        | UserCmd::Delete { place, .. }
        | UserCmd::Quota { place, .. } => place.data_dir.as_ref(),
    }
}

/// The data directory an acl command names, if any.
pub fn acl_dir(cmd: &AclCmd) -> Option<&PathBuf> {
    match cmd {
        AclCmd::Add(r) | AclCmd::Remove(r) => r.place.data_dir.as_ref(),
        AclCmd::List { place, .. } => place.data_dir.as_ref(),
    }
}

/// Runs a user command offline on `dir`.
pub(crate) fn user_offline(dir: &std::path::Path, out: &Out, cmd: UserCmd) -> Result<()> {
    let off = offline(dir)?;
    futures_lite_block(user(Target::Offline(&off.security), out, cmd))
}

/// Runs an acl command offline on `dir`.
pub(crate) fn acl_offline(dir: &std::path::Path, out: &Out, cmd: AclCmd) -> Result<()> {
    let off = offline(dir)?;
    futures_lite_block(acl(Target::Offline(&off.security), out, cmd))
}

fn futures_lite_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime starts")
        .block_on(f)
}

/// Runs a user command.
pub(crate) async fn user(t: Target<'_>, out: &Out, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add {
            name,
            superuser,
            expires_in,
            quotas,
            ..
        } => {
            let password = new_password(&name)?;
            let o = UserOptions {
                superuser,
                expires_at_ms: expires_in.map(|d| now_ms() + d),
                quotas: quotas.quotas(),
            };
            match t {
                Target::Offline(s) => s.add_user(&name, &password, o)?,
                Target::Online(c) => {
                    let q = wire::quotas_to_wire(o.quotas);
                    c.add_user(&name, &password, superuser, o.expires_at_ms, q)
                        .await?
                }
            }
            out.line(|| format!("added user {name}"), || json!({"added": name}));
        }
        UserCmd::List { .. } => {
            let users = match t {
                Target::Offline(s) => s.users(),
                Target::Online(c) => c
                    .users()
                    .await?
                    .into_iter()
                    .map(wire::user_from_wire)
                    .collect(),
            };
            for u in &users {
                print_user(out, u);
            }
        }
        UserCmd::Delete { name, .. } => {
            match t {
                Target::Offline(s) => s.delete_user(&name)?,
                Target::Online(c) => c.delete_user(&name).await?,
            }
            out.line(
                || format!("deleted user {name}"),
                || json!({"deleted": name}),
            );
        }
        UserCmd::Quota { name, quotas, .. } => {
            match t {
                Target::Offline(s) => s.set_quotas(&name, quotas.quotas())?,
                Target::Online(c) => {
                    c.set_quotas(&name, wire::quotas_to_wire(quotas.quotas()))
                        .await?
                }
            }
            out.line(
                || format!("set the quotas of {name}"),
                || json!({"quotas": name}),
            );
        }
    }
    Ok(())
}

/// Runs an acl command.
pub(crate) async fn acl(t: Target<'_>, out: &Out, cmd: AclCmd) -> Result<()> {
    match cmd {
        AclCmd::Add(args) => {
            for rule in args.rules()? {
                match t {
                    Target::Offline(s) => {
                        s.add_rule(rule.clone())?;
                    }
                    Target::Online(c) => c.add_rule(wire::rule_to_wire(&rule)).await?,
                }
                out.line(
                    || format!("added: {rule}"),
                    || json!({"added": rule.to_string()}),
                );
            }
        }
        AclCmd::Remove(args) => {
            for rule in args.rules()? {
                match t {
                    Target::Offline(s) => {
                        if s.remove_rules(|r| *r == rule)?.is_empty() {
                            bail!("no rule \"{rule}\"");
                        }
                    }
                    Target::Online(c) => c.remove_rule(wire::rule_to_wire(&rule)).await?,
                }
                out.line(
                    || format!("removed: {rule}"),
                    || json!({"removed": rule.to_string()}),
                );
            }
        }
        AclCmd::List { principal, .. } => {
            let rules = match t {
                Target::Offline(s) => s.rules(),
                Target::Online(c) => c
                    .rules()
                    .await?
                    .into_iter()
                    .map(wire::rule_from_wire)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(anyhow::Error::msg)?,
            };
            for r in rules
                .iter()
                .filter(|r| principal.as_ref().map_or(true, |p| *p == r.principal))
            {
                print_rule(out, r);
            }
        }
    }
    Ok(())
}
