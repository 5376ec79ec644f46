//! Users, rules and quotas as the native protocol carries them (numbers for the enums, in
//! the tables of `docs/protocol.md`).

use sluice_client::protocol::{WireQuotas, WireRule, WireUser};

use super::acl::{Operation, PatternKind, Permission, ResourceKind, Rule};
use super::users::{Quotas, UserInfo};

const RESOURCES: [ResourceKind; 4] = [
    ResourceKind::Topic,
    ResourceKind::Queue,
    ResourceKind::Group,
    ResourceKind::Cluster,
];
const PATTERNS: [PatternKind; 2] = [PatternKind::Exact, PatternKind::Prefix];
const OPERATIONS: [Operation; 7] = [
    Operation::All,
    Operation::Read,
    Operation::Write,
    Operation::Create,
    Operation::Delete,
    Operation::Describe,
    Operation::Alter,
];
const PERMISSIONS: [Permission; 2] = [Permission::Allow, Permission::Deny];

fn code<T: PartialEq>(table: &[T], v: T) -> u8 {
    table
        .iter()
        .position(|x| *x == v)
        .expect("every value has a code") as u8
}

fn from_code<T: Copy>(table: &[T], c: u8, what: &str) -> Result<T, String> {
    table
        .get(c as usize)
        .copied()
        .ok_or_else(|| format!("unknown {what} code {c}"))
}

/// A rule on the wire.
pub fn rule_to_wire(r: &Rule) -> WireRule {
    WireRule {
        principal: r.principal.clone(),
        resource: code(&RESOURCES, r.resource),
        pattern: code(&PATTERNS, r.pattern),
        name: r.name.clone(),
        operation: code(&OPERATIONS, r.operation),
        permission: code(&PERMISSIONS, r.permission),
    }
}

/// A rule from the wire (codes checked, not the names: [`Rule::validate`] does that).
pub fn rule_from_wire(w: WireRule) -> Result<Rule, String> {
    Ok(Rule {
        resource: from_code(&RESOURCES, w.resource, "resource")?,
        pattern: from_code(&PATTERNS, w.pattern, "pattern")?,
        operation: from_code(&OPERATIONS, w.operation, "operation")?,
        permission: from_code(&PERMISSIONS, w.permission, "permission")?,
        principal: w.principal,
        name: w.name,
    })
}

/// Quotas from the wire (a connection count beyond `u32` is no limit at all).
pub fn quotas_from_wire(q: WireQuotas) -> Quotas {
    Quotas {
        produce_bytes_per_sec: q.produce_bytes_per_sec,
        fetch_bytes_per_sec: q.fetch_bytes_per_sec,
        connections_max: q.connections_max.map(|c| c.min(u32::MAX as u64) as u32),
    }
}

/// Quotas on the wire.
pub fn quotas_to_wire(q: Quotas) -> WireQuotas {
    WireQuotas {
        produce_bytes_per_sec: q.produce_bytes_per_sec,
        fetch_bytes_per_sec: q.fetch_bytes_per_sec,
        connections_max: q.connections_max.map(u64::from),
    }
}

/// A listed user on the wire.
pub fn user_to_wire(u: &UserInfo) -> WireUser {
    WireUser {
        name: u.name.clone(),
        superuser: u.superuser,
        expires_at_ms: u.expires_at_ms,
        quotas: quotas_to_wire(u.quotas),
        created_ms: u.created_ms,
    }
}

/// A listed user from the wire.
pub fn user_from_wire(u: WireUser) -> UserInfo {
    UserInfo {
        name: u.name,
        superuser: u.superuser,
        expires_at_ms: u.expires_at_ms,
        quotas: quotas_from_wire(u.quotas),
        created_ms: u.created_ms,
        mechanisms: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_survives_the_wire_and_bad_codes_are_refused() {
        for &resource in &RESOURCES {
            for &operation in &OPERATIONS {
                let r = Rule {
                    principal: "*".into(),
                    resource,
                    pattern: PatternKind::Prefix,
                    name: "a".into(),
                    operation,
                    permission: Permission::Deny,
                };
                assert_eq!(rule_from_wire(rule_to_wire(&r)).unwrap(), r);
            }
        }
        let mut w = rule_to_wire(&Rule {
            principal: "a".into(),
            resource: ResourceKind::Topic,
            pattern: PatternKind::Exact,
            name: "t".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        });
        assert_eq!((w.resource, w.operation, w.permission), (0, 1, 0));
        w.operation = 7;
        assert!(rule_from_wire(w).unwrap_err().contains("operation"));
    }
}
