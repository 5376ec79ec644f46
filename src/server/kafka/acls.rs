//! DescribeAcls, CreateAcls and DeleteAcls (versions 1 to 3): Kafka's ACL bindings read and
//! written as sluice's access rules (`crate::security::Rule`), so rules made here apply on
//! every listener and rules made elsewhere show here.
//!
//! Mapping: resource TOPIC (2) is a topic rule (a queue's rules, which a Kafka topic name may
//! stand for, are managed natively and not listed here), GROUP (3) a group rule, CLUSTER (4)
//! the cluster rule (its name is `kafka-cluster`); pattern LITERAL (3) is an exact rule (`*`:
//! every name), PREFIXED (4) a prefix rule; filters also take ANY (1) and MATCH (2). Principals
//! are `User:<name>` or `User:*`; the host must be `*`. Operations ALL, READ, WRITE, CREATE,
//! DELETE, ALTER and DESCRIBE are themselves; DESCRIBE_CONFIGS is describe, ALTER_CONFIGS
//! alter, IDEMPOTENT_WRITE write on the cluster. Anything else is refused per entry with
//! INVALID_REQUEST and a message. Describing needs describe on the cluster; creating and
//! deleting need alter on the cluster (CLUSTER_AUTHORIZATION_FAILED otherwise).

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz::{check, cluster_denied};
use super::codec::Header;
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use crate::broker::spawn_blocking;
use crate::security::{Operation, PatternKind, Permission, Resource, ResourceKind, Rule};

/// The name Kafka gives the cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// Kafka's `ANY` in a filter (resource, pattern, operation or permission).
const ANY: i8 = 1;
/// Kafka's `MATCH` pattern filter: the rules that apply to the named resource.
const PATTERN_MATCH: i8 = 2;
const PATTERN_LITERAL: i8 = 3;
const PATTERN_PREFIXED: i8 = 4;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_GROUP: i8 = 3;
const RESOURCE_CLUSTER: i8 = 4;
const PERMISSION_DENY: i8 = 2;
const PERMISSION_ALLOW: i8 = 3;
/// The principal prefix Kafka's ACLs use.
const USER_PREFIX: &str = "User:";
/// Kafka's operation codes, by sluice operation; `IDEMPOTENT_WRITE` (12), `DESCRIBE_CONFIGS`
/// (10) and `ALTER_CONFIGS` (11) are read as write, describe and alter.
const OPERATIONS: [(i8, Operation); 7] = [
    (2, Operation::All),
    (3, Operation::Read),
    (4, Operation::Write),
    (5, Operation::Create),
    (6, Operation::Delete),
    (7, Operation::Alter),
    (8, Operation::Describe),
];
const OP_DESCRIBE_CONFIGS: i8 = 10;
const OP_ALTER_CONFIGS: i8 = 11;
const OP_IDEMPOTENT_WRITE: i8 = 12;

/// An entry refused: INVALID_REQUEST and why.
type Invalid = String;

fn resource_kind(t: i8) -> Result<ResourceKind, Invalid> {
    match t {
        RESOURCE_TOPIC => Ok(ResourceKind::Topic),
        RESOURCE_GROUP => Ok(ResourceKind::Group),
        RESOURCE_CLUSTER => Ok(ResourceKind::Cluster),
        t => Err(format!(
            "resource type {t} is not served (TOPIC 2, GROUP 3 and CLUSTER 4 are)"
        )),
    }
}

fn kind_code(k: ResourceKind) -> Option<i8> {
    match k {
        ResourceKind::Topic => Some(RESOURCE_TOPIC),
        ResourceKind::Group => Some(RESOURCE_GROUP),
        ResourceKind::Cluster => Some(RESOURCE_CLUSTER),
        ResourceKind::Queue => None,
    }
}

fn operation(op: i8, kind: Option<ResourceKind>) -> Result<Operation, Invalid> {
    if let Some((_, o)) = OPERATIONS.iter().find(|(c, _)| *c == op) {
        return Ok(*o);
    }
    match op {
        OP_DESCRIBE_CONFIGS => Ok(Operation::Describe),
        OP_ALTER_CONFIGS => Ok(Operation::Alter),
        OP_IDEMPOTENT_WRITE if kind.map_or(true, |k| k == ResourceKind::Cluster) => {
            Ok(Operation::Write)
        }
        op => Err(format!(
            "operation {op} is not served (ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, \
             DESCRIBE_CONFIGS, ALTER_CONFIGS and IDEMPOTENT_WRITE on the cluster are)"
        )),
    }
}

fn operation_code(o: Operation) -> i8 {
    OPERATIONS
        .iter()
        .find(|(_, x)| *x == o)
        .map_or(0, |(c, _)| *c)
}

fn permission(p: i8) -> Result<Permission, Invalid> {
    match p {
        PERMISSION_ALLOW => Ok(Permission::Allow),
        PERMISSION_DENY => Ok(Permission::Deny),
        p => Err(format!("permission {p} (ALLOW 3 or DENY 2)")),
    }
}

fn permission_code(p: Permission) -> i8 {
    match p {
        Permission::Allow => PERMISSION_ALLOW,
        Permission::Deny => PERMISSION_DENY,
    }
}

/// `User:alice` as `alice`, `User:*` as `*`.
fn principal(p: &str) -> Result<String, Invalid> {
    match p.strip_prefix(USER_PREFIX) {
        Some(u) if !u.is_empty() => Ok(u.to_string()),
        _ => Err(format!("principal {p:?}: User:<name> or User:* only")),
    }
}

fn check_host(h: Option<&str>) -> Result<(), Invalid> {
    match h {
        None | Some("*") => Ok(()),
        Some(h) => Err(format!(
            "host {h:?}: sluice's rules hold for every host; use \"*\""
        )),
    }
}

/// The rule a CreateAcls entry asks for.
fn rule_of(c: &AclCreation) -> Result<Rule, Invalid> {
    let resource = resource_kind(c.resource_type)?;
    let pattern = match c.resource_pattern_type {
        PATTERN_LITERAL => PatternKind::Exact,
        PATTERN_PREFIXED if resource != ResourceKind::Cluster => PatternKind::Prefix,
        p => return Err(format!("pattern type {p} (LITERAL 3 or PREFIXED 4)")),
    };
    let name = match resource {
        ResourceKind::Cluster if c.resource_name.as_str() == CLUSTER_NAME => String::new(),
        ResourceKind::Cluster => return Err(format!("the cluster is named {CLUSTER_NAME:?}")),
        _ => c.resource_name.to_string(),
    };
    check_host(Some(c.host.as_str()))?;
    let rule = Rule {
        principal: principal(c.principal.as_str())?,
        resource,
        pattern,
        name,
        operation: operation(c.operation, Some(resource))?,
        permission: permission(c.permission_type)?,
    };
    rule.validate()?;
    Ok(rule)
}

/// A DescribeAcls or DeleteAcls filter, checked.
struct Filter {
    kind: Option<ResourceKind>,
    name: Option<String>,
    pattern: i8,
    principal: Option<String>,
    operation: Option<Operation>,
    permission: Option<Permission>,
}

impl Filter {
    #[allow(clippy::too_many_arguments)]
    fn new(
        resource_type: i8,
        name: Option<&StrBytes>,
        pattern: i8,
        principal_filter: Option<&StrBytes>,
        host: Option<&StrBytes>,
        op: i8,
        perm: i8,
    ) -> Result<Filter, Invalid> {
        let kind = match resource_type {
            ANY => None,
            t => Some(resource_kind(t)?),
        };
        if !matches!(
            pattern,
            ANY | PATTERN_MATCH | PATTERN_LITERAL | PATTERN_PREFIXED
        ) {
            return Err(format!("pattern type filter {pattern}"));
        }
        check_host(host.map(|h| h.as_str()))?;
        Ok(Filter {
            kind,
            name: name.map(|n| n.to_string()),
            pattern,
            principal: principal_filter
                .map(|p| principal(p.as_str()))
                .transpose()?,
            operation: (op != ANY).then(|| operation(op, kind)).transpose()?,
            permission: (perm != ANY).then(|| permission(perm)).transpose()?,
        })
    }

    fn matches(&self, r: &Rule) -> bool {
        let Some(_) = kind_code(r.resource) else {
            return false;
        };
        let shown = shown_name(r);
        let name_ok = match (&self.name, self.pattern) {
            (None, PATTERN_LITERAL) => r.pattern == PatternKind::Exact,
            (None, PATTERN_PREFIXED) => r.pattern == PatternKind::Prefix,
            (None, _) => true,
            (Some(n), PATTERN_MATCH) => match r.pattern {
                PatternKind::Exact => shown == *n || r.name == "*",
                PatternKind::Prefix => n.starts_with(&r.name),
            },
            (Some(n), PATTERN_LITERAL) => r.pattern == PatternKind::Exact && shown == *n,
            (Some(n), PATTERN_PREFIXED) => r.pattern == PatternKind::Prefix && shown == *n,
            (Some(n), _) => shown == *n,
        };
        self.kind.map_or(true, |k| k == r.resource)
            && name_ok
            && self.principal.as_ref().map_or(true, |p| *p == r.principal)
            && self.operation.map_or(true, |o| o == r.operation)
            && self.permission.map_or(true, |p| p == r.permission)
    }
}

/// A rule's resource name as Kafka shows it.
fn shown_name(r: &Rule) -> String {
    match r.resource {
        ResourceKind::Cluster => CLUSTER_NAME.to_string(),
        _ => r.name.clone(),
    }
}

fn pattern_code(p: PatternKind) -> i8 {
    match p {
        PatternKind::Exact => PATTERN_LITERAL,
        PatternKind::Prefix => PATTERN_PREFIXED,
    }
}

fn shown_principal(r: &Rule) -> StrBytes {
    StrBytes::from_string(format!("{USER_PREFIX}{}", r.principal))
}

/// The rules as DescribeAcls lists them: grouped by resource and pattern, in order added.
fn described(rules: &[&Rule]) -> Vec<DescribeAclsResource> {
    let mut out: Vec<DescribeAclsResource> = Vec::new();
    for r in rules {
        let Some(t) = kind_code(r.resource) else {
            continue;
        };
        let name = shown_name(r);
        let pattern = pattern_code(r.pattern);
        let pos = out.iter().position(|x| {
            x.resource_type == t && x.resource_name.as_str() == name && x.pattern_type == pattern
        });
        let i = pos.unwrap_or_else(|| {
            let mut x = DescribeAclsResource::default();
            x.resource_type = t;
            x.resource_name = StrBytes::from_string(name);
            x.pattern_type = pattern;
            out.push(x);
            out.len() - 1
        });
        let mut a = AclDescription::default();
        a.principal = shown_principal(r);
        a.host = StrBytes::from_static_str("*");
        a.operation = operation_code(r.operation);
        a.permission_type = permission_code(r.permission);
        out[i].acls.push(a);
    }
    out
}

fn matching_acl(r: &Rule) -> DeleteAclsMatchingAcl {
    let mut m = DeleteAclsMatchingAcl::default();
    m.resource_type = kind_code(r.resource).unwrap_or(0);
    m.resource_name = StrBytes::from_string(shown_name(r));
    m.pattern_type = pattern_code(r.pattern);
    m.principal = shown_principal(r);
    m.host = StrBytes::from_static_str("*");
    m.operation = operation_code(r.operation);
    m.permission_type = permission_code(r.permission);
    m
}

fn delete_filter(f: &DeleteAclsFilter) -> Result<Filter, Invalid> {
    Filter::new(
        f.resource_type_filter,
        f.resource_name_filter.as_ref(),
        f.pattern_type_filter,
        f.principal_filter.as_ref(),
        f.host_filter.as_ref(),
        f.operation,
        f.permission_type,
    )
}

fn message(m: String) -> Option<StrBytes> {
    Some(StrBytes::from_string(m))
}

impl Conn {
    pub(super) fn describe_acls(&self, tx: Slot, h: Header, req: DescribeAclsRequest) {
        let mut resp = DescribeAclsResponse::default();
        let p = &self.auth.principal;
        let filter = Filter::new(
            req.resource_type_filter,
            req.resource_name_filter.as_ref(),
            req.pattern_type_filter,
            req.principal_filter.as_ref(),
            req.host_filter.as_ref(),
            req.operation,
            req.permission_type,
        );
        if !check(&self.ctx, p, Operation::Describe, Resource::cluster()) {
            resp.error_code = cluster_denied();
            resp.error_message = message(format!("{p} may not describe the cluster's rules"));
        } else {
            match filter {
                Err(m) => {
                    resp.error_code = ResponseError::InvalidRequest.code();
                    resp.error_message = message(m);
                }
                Ok(f) => {
                    let rules = self.ctx.broker.security().rules();
                    let found: Vec<&Rule> = rules.iter().filter(|r| f.matches(r)).collect();
                    resp.resources = described(&found);
                }
            }
        }
        respond(self.ctx.broker.metrics(), tx, &h, &resp);
    }

    pub(super) fn create_acls(&self, tx: Slot, h: Header, req: CreateAclsRequest) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let mut resp = CreateAclsResponse::default();
            let allowed = check(&ctx, &p, Operation::Alter, Resource::cluster());
            for c in &req.creations {
                let mut r = AclCreationResult::default();
                let outcome = match allowed {
                    false => Err((cluster_denied(), format!("{p} may not alter the cluster"))),
                    true => rule_of(c)
                        .map_err(|m| (ResponseError::InvalidRequest.code(), m))
                        .and_then(|rule| {
                            ctx.broker
                                .security()
                                .add_rule(rule)
                                .map_err(|e| (ResponseError::InvalidRequest.code(), e.to_string()))
                        }),
                };
                if let Err((code, m)) = outcome {
                    r.error_code = code;
                    r.error_message = message(m);
                }
                resp.results.push(r);
            }
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }

    pub(super) fn delete_acls(&self, tx: Slot, h: Header, req: DeleteAclsRequest) {
        let ctx = self.ctx.clone();
        let p = self.auth.principal.clone();
        spawn_blocking(move || {
            let filters: Vec<Result<Filter, Invalid>> =
                req.filters.iter().map(delete_filter).collect();
            let allowed = check(&ctx, &p, Operation::Alter, Resource::cluster());
            let removed = match allowed {
                false => Err((cluster_denied(), format!("{p} may not alter the cluster"))),
                true => ctx
                    .broker
                    .security()
                    .remove_rules(|r| filters.iter().flatten().any(|f| f.matches(r)))
                    .map_err(|e| (ResponseError::UnknownServerError.code(), e.to_string())),
            };
            let mut resp = DeleteAclsResponse::default();
            for f in &filters {
                let mut out = DeleteAclsFilterResult::default();
                match (&removed, f) {
                    (Err((code, m)), _) => {
                        out.error_code = *code;
                        out.error_message = message(m.clone());
                    }
                    (Ok(_), Err(m)) => {
                        out.error_code = ResponseError::InvalidRequest.code();
                        out.error_message = message(m.clone());
                    }
                    (Ok(gone), Ok(f)) => {
                        out.matching_acls = gone
                            .iter()
                            .filter(|r| f.matches(r))
                            .map(matching_acl)
                            .collect();
                    }
                }
                resp.filter_results.push(out);
            }
            respond(ctx.broker.metrics(), tx, &h, &resp);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: ResourceKind, pattern: PatternKind, name: &str) -> Rule {
        Rule {
            principal: "alice".into(),
            resource: kind,
            pattern,
            name: name.into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn filters_match_as_kafka_reads_them() {
        let name = StrBytes::from_static_str("orders.eu");
        let f = |pattern| Filter::new(RESOURCE_TOPIC, Some(&name), pattern, None, None, ANY, ANY);
        let exact = rule(ResourceKind::Topic, PatternKind::Exact, "orders.eu");
        let star = rule(ResourceKind::Topic, PatternKind::Exact, "*");
        let prefix = rule(ResourceKind::Topic, PatternKind::Prefix, "orders.");
        let group = rule(ResourceKind::Group, PatternKind::Exact, "orders.eu");
        let m = f(PATTERN_MATCH).unwrap();
        assert!(m.matches(&exact) && m.matches(&star) && m.matches(&prefix));
        assert!(!m.matches(&group));
        let lit = f(PATTERN_LITERAL).unwrap();
        assert!(lit.matches(&exact) && !lit.matches(&star) && !lit.matches(&prefix));
        let any = f(ANY).unwrap();
        assert!(any.matches(&exact) && !any.matches(&prefix));
        let host = StrBytes::from_static_str("10.0.0.1");
        assert!(Filter::new(ANY, None, ANY, None, Some(&host), ANY, ANY).is_err());
        let who = StrBytes::from_static_str("Group:x");
        assert!(Filter::new(ANY, None, ANY, Some(&who), None, ANY, ANY).is_err());
    }

    #[test]
    fn creations_map_onto_rules() {
        let mut c = AclCreation::default();
        c.resource_type = RESOURCE_CLUSTER;
        c.resource_name = StrBytes::from_static_str(CLUSTER_NAME);
        c.resource_pattern_type = PATTERN_LITERAL;
        c.principal = StrBytes::from_static_str("User:*");
        c.host = StrBytes::from_static_str("*");
        c.operation = OP_IDEMPOTENT_WRITE;
        c.permission_type = PERMISSION_ALLOW;
        let r = rule_of(&c).unwrap();
        assert_eq!((r.principal.as_str(), r.operation), ("*", Operation::Write));
        assert_eq!((r.resource, r.name.as_str()), (ResourceKind::Cluster, ""));
        c.resource_type = RESOURCE_TOPIC;
        assert!(rule_of(&c).unwrap_err().contains("operation 12"));
        c.operation = 9; // CLUSTER_ACTION
        assert!(rule_of(&c).is_err());
        c.operation = 3;
        c.host = StrBytes::from_static_str("10.0.0.1");
        assert!(rule_of(&c).unwrap_err().contains("host"));
    }
}
