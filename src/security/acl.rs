//! Access rules: a user (or `*`, every user) is allowed or denied an operation on a topic,
//! queue, group or the cluster, by exact name or name prefix. A request is allowed when some
//! allow rule matches and no deny rule does: deny wins, and no rule means no access.
//! Superusers skip the rules. As in Kafka, allowing read, write, delete or alter also allows
//! describe.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest resource name in a rule.
pub const RULE_NAME_BYTES_MAX: usize = 255;
/// Most rules a broker keeps.
pub const RULES_MAX: usize = 100_000;

/// What a rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResourceKind {
    /// A topic.
    Topic,
    /// A queue.
    Queue,
    /// An offset group: a named subscriber, a Kafka consumer group, a topic's consumer group
    /// or a Kafka share group.
    Group,
    /// The broker itself: users, rules.
    Cluster,
}

/// How a rule's name matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PatternKind {
    /// The name itself (`*`: every name).
    Exact,
    /// Every name that starts with it.
    Prefix,
}

/// An operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Every operation.
    All,
    /// Read messages (subscribe, consume, fetch); on a group: use it to consume.
    Read,
    /// Publish.
    Write,
    /// Create.
    Create,
    /// Delete (and purge).
    Delete,
    /// See that it exists and its figures.
    Describe,
    /// Change its settings (partitions, offsets of a group, users and rules on the cluster).
    Alter,
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// Allow.
    Allow,
    /// Deny (wins over any allow).
    Deny,
}

/// One rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// A user name, or `*` for every user.
    pub principal: String,
    /// What it names.
    pub resource: ResourceKind,
    /// How `name` matches.
    pub pattern: PatternKind,
    /// The name or prefix.
    pub name: String,
    /// The operation.
    pub operation: Operation,
    /// Allow or deny.
    pub permission: Permission,
}

/// A resource a request touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource<'a> {
    /// Its kind.
    pub kind: ResourceKind,
    /// Its name (empty for the cluster).
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    /// A topic.
    pub fn topic(name: &'a str) -> Self {
        Resource {
            kind: ResourceKind::Topic,
            name,
        }
    }
    /// A queue.
    pub fn queue(name: &'a str) -> Self {
        Resource {
            kind: ResourceKind::Queue,
            name,
        }
    }
    /// A group.
    pub fn group(name: &'a str) -> Self {
        Resource {
            kind: ResourceKind::Group,
            name,
        }
    }
    /// The cluster.
    pub fn cluster() -> Self {
        Resource {
            kind: ResourceKind::Cluster,
            name: "",
        }
    }
}

impl Rule {
    /// Whether this rule speaks of `user` doing `op` on `r` (an allow rule of read, write,
    /// delete or alter also speaks of describe).
    pub fn matches(&self, user: &str, op: Operation, r: &Resource<'_>) -> bool {
        let who = self.principal == "*" || self.principal == user;
        let what = self.resource == r.kind
            && match self.pattern {
                PatternKind::Exact => self.name == "*" || self.name == r.name,
                PatternKind::Prefix => r.name.starts_with(&self.name),
            };
        let implied = self.permission == Permission::Allow
            && op == Operation::Describe
            && matches!(
                self.operation,
                Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
            );
        who && what && (self.operation == Operation::All || self.operation == op || implied)
    }

    /// Checks the rule's fields.
    pub fn validate(&self) -> Result<(), String> {
        if self.principal != "*" {
            super::users::validate_name(&self.principal)?;
        }
        if self.name.len() > RULE_NAME_BYTES_MAX {
            return Err(format!(
                "a rule's name has at most {RULE_NAME_BYTES_MAX} bytes"
            ));
        }
        if self.resource != ResourceKind::Cluster
            && self.name.is_empty()
            && self.pattern == PatternKind::Exact
        {
            return Err("an exact rule needs a name (or * for every name)".into());
        }
        Ok(())
    }
}

/// Whether `rules` let `user` do `op` on `r`: some allow matches and no deny does.
pub fn decide(rules: &[Rule], user: &str, op: Operation, r: &Resource<'_>) -> bool {
    let mut allowed = false;
    for rule in rules.iter().filter(|x| x.matches(user, op, r)) {
        match rule.permission {
            Permission::Deny => return false,
            Permission::Allow => allowed = true,
        }
    }
    allowed
}

macro_rules! names {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            /// The lower-case name used by the CLI, the admin API and the docs.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.to_ascii_lowercase().as_str() {
                    $($s => Ok(Self::$v),)*
                    _ => Err(format!(
                        "unknown {}: {s:?} (one of {})",
                        stringify!($t).to_ascii_lowercase(),
                        [$($s),*].join(", ")
                    )),
                }
            }
        }
    };
}

names!(ResourceKind { Topic = "topic", Queue = "queue", Group = "group", Cluster = "cluster" });
names!(PatternKind { Exact = "exact", Prefix = "prefix" });
names!(Permission { Allow = "allow", Deny = "deny" });
names!(Operation {
    All = "all",
    Read = "read",
    Write = "write",
    Create = "create",
    Delete = "delete",
    Describe = "describe",
    Alter = "alter",
});

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match (self.resource, self.pattern) {
            (ResourceKind::Cluster, _) => String::new(),
            (_, PatternKind::Exact) => format!(" {}", self.name),
            (_, PatternKind::Prefix) => format!(" {}*", self.name),
        };
        write!(
            f,
            "{} {} {} {}{name}",
            self.permission, self.principal, self.operation, self.resource
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(p: Permission, who: &str, op: Operation, pat: PatternKind, name: &str) -> Rule {
        Rule {
            principal: who.into(),
            resource: ResourceKind::Topic,
            pattern: pat,
            name: name.into(),
            operation: op,
            permission: p,
        }
    }

    #[test]
    fn deny_wins_prefixes_match_and_describe_is_implied() {
        use Operation::*;
        use PatternKind::*;
        use Permission::*;
        let rules = vec![
            rule(Allow, "alice", Write, Prefix, "orders."),
            rule(Deny, "alice", Write, Exact, "orders.secret"),
            rule(Allow, "*", Read, Exact, "public"),
            rule(Deny, "mallory", All, Exact, "*"),
        ];
        let t = Resource::topic;
        assert!(decide(&rules, "alice", Write, &t("orders.eu")));
        assert!(decide(&rules, "alice", Describe, &t("orders.eu")));
        assert!(!decide(&rules, "alice", Write, &t("orders.secret")));
        assert!(!decide(&rules, "alice", Read, &t("orders.eu")));
        assert!(!decide(&rules, "alice", Write, &t("orders")));
        assert!(!decide(
            &rules,
            "alice",
            Write,
            &Resource::queue("orders.eu")
        ));
        assert!(decide(&rules, "bob", Read, &t("public")));
        assert!(!decide(&rules, "mallory", Read, &t("public")));
        assert!(!decide(&rules, "bob", Read, &t("other")));
        assert!(!decide(&[], "bob", Describe, &t("x")));
    }

    #[test]
    fn names_parse_and_print() {
        assert_eq!("READ".parse::<Operation>().unwrap(), Operation::Read);
        assert!("fly".parse::<Operation>().unwrap_err().contains("read"));
        let r = rule(
            Permission::Deny,
            "*",
            Operation::Alter,
            PatternKind::Prefix,
            "a.",
        );
        assert_eq!(r.to_string(), "deny * alter topic a.*");
    }
}
