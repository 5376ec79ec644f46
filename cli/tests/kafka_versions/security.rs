//! The SASL and ACL APIs at each served version (on a broker without users: SASL still
//! answers, and the ACL APIs read and change the rules).

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sluice::client::scram::{Mechanism, ScramClient};

use super::common::kafka_raw::Raw;

fn handshake(c: &mut Raw, v: i16, mechanism: &str) -> SaslHandshakeResponse {
    let req =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()));
    c.call(ApiKey::SaslHandshake, v, &req)
}

pub fn check_handshake(addr: &str, v: i16) {
    let mut c = Raw::connect(addr);
    let r = handshake(&mut c, v, "SCRAM-SHA-256");
    let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
    assert!(
        offered.contains(&"SCRAM-SHA-256") && offered.contains(&"SCRAM-SHA-512"),
        "v{v}: {offered:?}"
    );
    assert!(!offered.contains(&"PLAIN"), "v{v}: PLAIN only over TLS");
    if v == 0 {
        assert_eq!(
            r.error_code, 35,
            "v0: UNSUPPORTED_VERSION (raw SASL tokens are not served)"
        );
        assert!(c.closed(), "v0 closes the connection");
    } else {
        assert_eq!(r.error_code, 0, "v{v}");
    }
}

pub fn check_authenticate(addr: &str, v: i16) {
    let mut c = Raw::connect(addr);
    assert_eq!(handshake(&mut c, 1, "SCRAM-SHA-256").error_code, 0);
    let (mut scram, first) = ScramClient::new(Mechanism::Sha256, "nobody", "guess");
    let auth = |bytes: Vec<u8>| SaslAuthenticateRequest::default().with_auth_bytes(bytes.into());
    let r: SaslAuthenticateResponse = c.call(ApiKey::SaslAuthenticate, v, &auth(first));
    assert_eq!(r.error_code, 0, "v{v}: the server's first message");
    let last = scram
        .step(&r.auth_bytes)
        .expect("a well-formed server-first message");
    let r: SaslAuthenticateResponse = c.call(ApiKey::SaslAuthenticate, v, &auth(last));
    assert_eq!(
        r.error_code, 58,
        "v{v}: SASL_AUTHENTICATION_FAILED for an unknown user"
    );
    assert!(
        c.closed(),
        "v{v}: a failed authentication closes the connection"
    );
}

fn binding_filter(name: &str) -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(2)
        .with_resource_name_filter(Some(StrBytes::from_string(name.into())))
        .with_pattern_type_filter(3)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1)
}

fn listed(c: &mut Raw, v: i16, name: &str) -> usize {
    let r: DescribeAclsResponse = c.call(ApiKey::DescribeAcls, v, &binding_filter(name));
    assert_eq!(r.error_code, 0, "v{v}");
    r.resources.iter().map(|res| res.acls.len()).sum()
}

pub fn check_describe(c: &mut Raw, v: i16) {
    assert_eq!(listed(c, v, &format!("nothing-v{v}")), 0, "v{v}");
}

pub fn check_create_and_delete(c: &mut Raw, create_v: i16, delete_v: i16) {
    let name = format!("acl-v{create_v}-{delete_v}");
    let creation = create_acls_request::AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_string(name.clone()))
        .with_resource_pattern_type(3)
        .with_principal(StrBytes::from_static_str("User:alice"))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(3)
        .with_permission_type(3);
    let req = CreateAclsRequest::default().with_creations(vec![creation]);
    let r: CreateAclsResponse = c.call(ApiKey::CreateAcls, create_v, &req);
    assert_eq!(r.results[0].error_code, 0, "CreateAcls v{create_v}");
    assert_eq!(listed(c, 1, &name), 1, "CreateAcls v{create_v}: listed");
    let filter = delete_acls_request::DeleteAclsFilter::default()
        .with_resource_type_filter(2)
        .with_resource_name_filter(Some(StrBytes::from_string(name.clone())))
        .with_pattern_type_filter(3)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1);
    let req = DeleteAclsRequest::default().with_filters(vec![filter]);
    let r: DeleteAclsResponse = c.call(ApiKey::DeleteAcls, delete_v, &req);
    assert_eq!(r.filter_results[0].error_code, 0, "DeleteAcls v{delete_v}");
    assert_eq!(
        r.filter_results[0].matching_acls.len(),
        1,
        "DeleteAcls v{delete_v}"
    );
    assert_eq!(listed(c, 1, &name), 0, "DeleteAcls v{delete_v}: gone");
}
