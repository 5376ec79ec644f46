//! FindCoordinator: one node coordinates every consumer group: node 0 of a single server, the
//! cluster metadata's leader in a cluster (`cluster::coordinator`); the group APIs themselves
//! are in `group/`. Transaction coordinators are refused: transactions are not served (see
//! `docs/kafka.md`), and a clear, non-retriable error keeps a transactional client from
//! retrying forever. Versions 0-3 ask for one key, 4+ for a batch.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::authz;
use super::codec::Header;
use super::connection::{Conn, Slot};
use super::dispatch::respond;
use super::{cluster, KafkaContext};
use crate::security::{Operation, Principal, Resource};

/// `key_type` of a consumer group.
const KEY_TYPE_GROUP: i8 = 0;
/// `key_type` of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The coordinator of one key: node 0, or the error and why.
fn coordinator(ctx: &KafkaContext, key: StrBytes, key_type: i8, p: &Principal) -> Coordinator {
    let mut c = Coordinator::default();
    let refused = match key_type {
        KEY_TYPE_GROUP if !authz::check(ctx, p, Operation::Describe, Resource::group(&key)) => {
            c.node_id = BrokerId(-1);
            c.port = -1;
            c.error_code = authz::group_denied();
            c.error_message = Some(StrBytes::from_string(format!(
                "{p} may not use group {}",
                key.as_str()
            )));
            c.key = key;
            return c;
        }
        KEY_TYPE_GROUP => None,
        KEY_TYPE_TRANSACTION => Some("transactions are not supported by sluice"),
        _ => Some("only consumer group coordinators are served (key type 0)"),
    };
    c.key = key;
    match refused {
        None => match cluster::coordinator(ctx) {
            Ok(n) => {
                c.node_id = BrokerId(n.id);
                c.host = StrBytes::from_string(n.host);
                c.port = n.port;
            }
            Err(code) => {
                c.node_id = BrokerId(-1);
                c.port = -1;
                c.error_code = code;
                c.error_message = Some(StrBytes::from_static_str(
                    "the cluster is electing the coordinator (its metadata's leader)",
                ));
            }
        },
        Some(why) => {
            c.node_id = BrokerId(-1);
            c.port = -1;
            c.error_code = ResponseError::InvalidRequest.code();
            c.error_message = Some(StrBytes::from_static_str(why));
        }
    }
    c
}

impl Conn {
    pub(super) fn find_coordinator(&self, tx: Slot, h: &Header, req: FindCoordinatorRequest) {
        let mut resp = FindCoordinatorResponse::default();
        if h.api_version >= 4 {
            resp.coordinators = req
                .coordinator_keys
                .into_iter()
                .map(|k| coordinator(&self.ctx, k, req.key_type, &self.auth.principal))
                .collect();
        } else {
            let c = coordinator(&self.ctx, req.key, req.key_type, &self.auth.principal);
            resp.error_code = c.error_code;
            if h.api_version >= 1 {
                resp.error_message = c.error_message;
            }
            resp.node_id = c.node_id;
            resp.host = c.host;
            resp.port = c.port;
        }
        respond(self.ctx.broker.metrics(), tx, h, &resp);
    }
}
