use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::*;
use sluice_storage::StdFs;

fn rule(who: &str, op: Operation, kind: ResourceKind, name: &str, p: Permission) -> Rule {
    Rule {
        principal: who.into(),
        resource: kind,
        pattern: PatternKind::Exact,
        name: name.into(),
        operation: op,
        permission: p,
    }
}

#[test]
fn users_and_rules_persist_and_decide() {
    let dir = tempfile::tempdir().unwrap();
    let fs: FsRef = Arc::new(StdFs);
    let s = Security::open(fs.clone(), dir.path(), false).unwrap();
    let lan = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
    assert!(!s.enabled());
    assert!(s.anonymous_allowed(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert!(s.anonymous_allowed(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    assert!(!s.anonymous_allowed(lan));
    s.authorize(
        &Principal::Anonymous,
        Operation::Delete,
        Resource::topic("t"),
    )
    .unwrap();

    let refused = s.add_user("alice", "pw-a", UserOptions::default());
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("first user must be a superuser"));
    assert!(!s.enabled());
    let admin = UserOptions {
        superuser: true,
        ..Default::default()
    };
    s.add_user("root", "pw-r", admin).unwrap();
    s.add_user("alice", "pw-a", UserOptions::default()).unwrap();
    assert!(matches!(
        s.add_user("alice", "x", UserOptions::default()),
        Err(SecurityError::UserExists(_))
    ));
    s.add_rule(rule(
        "alice",
        Operation::Write,
        ResourceKind::Topic,
        "t",
        Permission::Allow,
    ))
    .unwrap();
    assert!(s.enabled());
    assert!(!s.anonymous_allowed(IpAddr::V4(Ipv4Addr::LOCALHOST)));

    // Reopened from the file: the same users and rules.
    let s = Security::open(fs.clone(), dir.path(), false).unwrap();
    let alice = Principal::User("alice".into());
    let root = Principal::User("root".into());
    assert_eq!(
        s.authorize(&Principal::Anonymous, Operation::Read, Resource::topic("t")),
        Err(Denied::Unauthenticated)
    );
    s.authorize(&alice, Operation::Write, Resource::topic("t"))
        .unwrap();
    s.authorize(&alice, Operation::Describe, Resource::topic("t"))
        .unwrap();
    let no = s
        .authorize(&alice, Operation::Read, Resource::topic("t"))
        .unwrap_err();
    assert_eq!(no.to_string(), "alice may not read topic t");
    s.authorize(&root, Operation::Delete, Resource::cluster())
        .unwrap();

    // Revoked: refused from the next request, and a login fails.
    s.delete_user("alice").unwrap();
    assert_eq!(
        s.authorize(&alice, Operation::Write, Resource::topic("t")),
        Err(Denied::Revoked("alice".into()))
    );
    assert_eq!(s.admit("alice"), Err(AuthError::InvalidCredentials));
    assert_eq!(s.rules().len(), 1);
    assert_eq!(s.remove_rules(|r| r.principal == "alice").unwrap().len(), 1);
    assert!(Security::open(fs, dir.path(), false)
        .unwrap()
        .rules()
        .is_empty());
}

#[tokio::test]
async fn passwords_expiry_and_connection_quotas() {
    let s = Security::disabled();
    let root = UserOptions {
        superuser: true,
        ..Default::default()
    };
    s.add_user("root", "pw-r", root).unwrap();
    let o = UserOptions {
        expires_at_ms: Some(1),
        ..Default::default()
    };
    s.add_user("old", "pw", o).unwrap();
    let q = UserOptions {
        quotas: Quotas {
            connections_max: Some(1),
            produce_bytes_per_sec: Some(100),
            fetch_bytes_per_sec: None,
        },
        ..Default::default()
    };
    s.add_user("bob", "pw-b", q).unwrap();
    assert_eq!(
        s.check_password("old", "pw").await,
        Err(AuthError::Expired("old".into()))
    );
    let old = Principal::User("old".into());
    assert_eq!(
        s.authorize(&old, Operation::Read, Resource::topic("t")),
        Err(Denied::Expired("old".into()))
    );
    assert_eq!(
        s.check_password("bob", "nope").await,
        Err(AuthError::InvalidCredentials)
    );
    assert_eq!(
        s.check_password("ghost", "pw").await,
        Err(AuthError::InvalidCredentials)
    );
    let bob = s.check_password("bob", "pw-b").await.unwrap();
    let held = s.connect(&bob).unwrap();
    assert!(matches!(
        s.connect(&bob),
        Err(AuthError::TooManyConnections(_, 1))
    ));
    drop(held);
    let _again = s.connect(&bob).unwrap();
    assert!(s.throttle(&bob, Direction::Produce, 1000) > Duration::from_secs(5));
    assert_eq!(s.throttle(&bob, Direction::Fetch, 1000), Duration::ZERO);
    // A stand-in credential for an unknown user, stable per name.
    let a = s.scram_credential("ghost", Mechanism::Sha256);
    let b = s.scram_credential("ghost", Mechanism::Sha256);
    assert_eq!(a.salt, b.salt);
}

#[test]
fn a_damaged_file_stops_the_open_and_offline_needs_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let fs: FsRef = Arc::new(StdFs);
    {
        let off = Offline::open(fs.clone(), dir.path()).unwrap();
        let root = UserOptions {
            superuser: true,
            ..Default::default()
        };
        off.security.add_user("a", "b", root).unwrap();
        assert!(matches!(
            Offline::open(fs.clone(), dir.path()),
            Err(SecurityError::Locked(_))
        ));
    }
    let p = file::path(dir.path());
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let e = Security::open(fs, dir.path(), false).err().unwrap();
    assert!(e.to_string().contains("damaged"), "{e}");
}
