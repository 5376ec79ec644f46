//! Entry points of the fuzz targets (`fuzz/`, run with `cargo fuzz`), kept in the library so
//! that `tests/fuzz_corpus.rs` replays the stored corpus through exactly the same code in
//! `cargo test`, without nightly.
//!
//! Each function takes arbitrary bytes and must never panic except on a broken invariant:
//! whatever decodes must encode back to what was decoded, and whatever recovery keeps must read
//! back in full and keep working.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use sluice_storage::format::{self, BatchRecords};
use sluice_storage::fs::sim::SimFs;
use sluice_storage::fs::{FileSystem, OpenMode};
use sluice_storage::{Log, LogConfig, Offset, Record};

use crate::protocol::{self, ProtocolError, RawFrame, Reply, Request};

/// Largest frame the frame decoder accepts in these targets.
const FRAME_MAX: u32 = 1 << 20;

fn noop_waker() -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(
        |_| RawWaker::new(std::ptr::null(), &VTABLE),
        |_| {},
        |_| {},
        |_| {},
    );
    // SAFETY: every function of the table ignores the (null) data pointer.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}

/// Polls a future that never waits (it reads from a byte slice) to its end.
fn run_ready<T>(f: impl Future<Output = T>) -> T {
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("reading from a byte slice never waits"),
    }
}

/// Decodes `frame` as a request and as a reply; whatever decodes must round-trip.
fn decode_both(frame: &RawFrame) {
    if let Ok(req) = Request::decode(frame) {
        // Requests have one encoding: the bytes come back identical.
        let again = req.encode(frame.request_id).to_vec();
        let raw = protocol::parse_frame(&again, u32::MAX).expect("an encoded request parses");
        assert_eq!(&raw, frame, "request {req:?} encodes differently");
        assert_eq!(Request::decode(&raw).expect("re-decode"), req);
    }
    if let Ok(reply) = Reply::decode(frame.clone()) {
        // Unknown error codes decode as Internal, so compare values, not bytes.
        let again = reply.encode(frame.request_id).to_vec();
        let raw = protocol::parse_frame(&again, u32::MAX).expect("an encoded reply parses");
        let back = Reply::decode(raw).unwrap_or_else(|e| panic!("reply {reply:?}: {e}"));
        assert_eq!(back, reply);
        if let Reply::Deliver {
            partition,
            from,
            to,
            batch,
        } = &reply
        {
            let _ = protocol::decode_delivery(*partition, *from, *to, batch);
        }
    }
}

/// The frame decoder: reads frames off a byte stream as the server and client do
/// (`protocol::read_frame`, length prefix checked before allocating) until the stream ends or
/// fails, and decodes each frame as a request and as a reply.
pub fn frame_decode(data: &[u8]) {
    let mut rd = data;
    let mut frames = 0usize;
    loop {
        match run_ready(protocol::read_frame(&mut rd, FRAME_MAX)) {
            Ok(Some(frame)) => {
                frames += 1;
                assert!(frame.body.len() + 5 <= FRAME_MAX as usize);
                decode_both(&frame);
            }
            Ok(None) => break,
            Err(ProtocolError::TooLarge { len, max }) => {
                assert!(len > max);
                break;
            }
            Err(_) => break,
        }
    }
    // `parse_frame` agrees with the stream reader on a single whole frame.
    if let Ok(f) = protocol::parse_frame(data, FRAME_MAX) {
        assert!(frames >= 1, "parse_frame accepted what read_frame refused");
        decode_both(&f);
    }
}

/// Every request (and reply) decoder: the first byte picks the frame kind, the rest is the body.
pub fn request_decode(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    decode_both(&RawFrame {
        kind,
        request_id: 7,
        body: body.to_vec(),
    });
}

/// The batch parser: `format::validate_batch` and `BatchRecords`, as the server runs them on a
/// published batch and the client on a delivered one.
pub fn batch_parse(data: &[u8]) {
    if let Ok(h) = format::decode_batch_header(data, FRAME_MAX) {
        // Iterating a batch whose checksums were not checked must fail cleanly.
        if let Ok(recs) = BatchRecords::new(data, &h) {
            for r in recs.iter() {
                if r.is_err() {
                    break;
                }
            }
        }
    }
    let Ok(h) = format::validate_batch(data, FRAME_MAX) else {
        return;
    };
    let recs = BatchRecords::new(data, &h).expect("a validated batch's records read");
    let views: Vec<_> = recs
        .iter()
        .collect::<Result<_, _>>()
        .expect("a validated batch has only well-formed records");
    assert_eq!(views.len(), h.record_count as usize);
    for (k, v) in views.iter().enumerate() {
        assert_eq!(v.offset, h.base_offset.add(k as u64));
    }
    let records: Vec<Record> = views.iter().map(|v| v.to_record()).collect();
    // What the client decodes from a delivery of the whole batch.
    let msgs = protocol::decode_delivery(0, h.base_offset.0, h.next_offset().0, data)
        .expect("a valid batch is a valid delivery");
    assert_eq!(msgs.len(), records.len());
    // The records encode again into a valid batch holding the same records.
    let again = format::encode_batch(&records, 0);
    let h2 = format::validate_batch(&again, u32::MAX).expect("re-encoded batch is valid");
    assert_eq!(h2.record_count, h.record_count);
    assert_eq!(h2.max_timestamp_ms, h.max_timestamp_ms);
    let back: Vec<Record> = BatchRecords::new(&again, &h2)
        .expect("re-encoded batch reads")
        .iter()
        .map(|r| r.expect("re-encoded record").to_record())
        .collect();
    assert_eq!(back, records);
    // A fetch through the Kafka API hands out the same records.
    let mut kafka = Vec::new();
    format::stored_to_kafka(data, &mut kafka).expect("a valid batch converts for a fetch");
    let stored = format::kafka_to_stored(&kafka, u32::MAX).expect("a fetched batch produces");
    assert_eq!(stored.len(), 1);
}

/// The Kafka produce path: `format::kafka_to_stored` on the records of a produce request, and
/// each stored batch it accepts read back and converted for a fetch, which gives the producer's
/// bytes back (but for the base offset and leader epoch a broker sets).
pub fn kafka_batches(data: &[u8]) {
    let Ok(stored) = format::kafka_to_stored(data, FRAME_MAX) else {
        return;
    };
    let mut fetched = Vec::new();
    for b in &stored {
        let h = format::validate_batch(&b.bytes, FRAME_MAX).expect("a stored batch is valid");
        assert_eq!(h.record_count, b.record_count);
        let recs = BatchRecords::new(&b.bytes, &h).expect("a stored batch's records read");
        let mut n = 0;
        for r in recs.iter() {
            r.expect("a stored record");
            n += 1;
        }
        assert_eq!(n, b.record_count as usize);
        format::stored_to_kafka(&b.bytes, &mut fetched).expect("a stored batch converts");
    }
    assert_eq!(fetched.len(), data.len());
    let again = format::kafka_to_stored(&fetched, FRAME_MAX).expect("fetched batches produce");
    assert_eq!(again.len(), stored.len());
}

fn recovery_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 4096,
        recovery_point_interval_bytes: 1024,
        ..LogConfig::default()
    }
}

/// Reads every visible record of `log`, checking dense offsets. Stops early (second value
/// `false`) at a batch whose checksums are valid but whose records are malformed: recovery
/// checks checksums only (record structure is checked when a batch is published), so only a
/// forged file holds one, and reads refuse it with `InvalidBatch` rather than hand it out.
fn read_all(log: &Log) -> (Vec<(Offset, Record)>, bool) {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    let end = log.end_offset();
    while from < end {
        let got = match log.read_records(from, 1 << 16, 1 << 20) {
            Ok(got) => got,
            Err(sluice_storage::Error::InvalidBatch(_)) => return (out, false),
            Err(e) => panic!("reading {from} after recovery: {e}"),
        };
        assert!(!got.is_empty(), "no record at {from} below the end {end}");
        for (o, r) in got {
            assert_eq!(o, from, "offsets after recovery are not dense");
            from = from.add(1);
            out.push((o, r));
        }
    }
    (out, true)
}

/// Recovery over arbitrary segment bytes: `data` is written (durably) as the first segment of
/// a log on a simulated file system, with no recovery point and no clean-shutdown marker, and
/// the log is opened. Opening may refuse (a damaged file header), but when it succeeds every
/// record it kept must read back, a new append must land right after them, and a reopen must
/// keep all of it.
pub fn segment_recovery(data: &[u8]) {
    let sim = SimFs::new();
    let dir = Path::new("/log");
    sim.create_dir_all(dir).unwrap();
    let path = dir.join(format!("{:020}.log", 0));
    let f = sim.open(&path, OpenMode::CreateNew).unwrap();
    f.write_all_at(data, 0).unwrap();
    f.sync_data().unwrap();
    drop(f);
    sim.sync_dir(dir).unwrap();
    let fs = Arc::new(sim.clone());
    let Ok(log) = Log::open(fs.clone(), dir, recovery_config()) else {
        return;
    };
    let (kept, whole) = read_all(&log);
    let end = log.end_offset();
    let extra = Record::from_value("after recovery");
    let info = log
        .append(std::slice::from_ref(&extra))
        .expect("append after recovery");
    assert_eq!(
        info.base_offset, end,
        "the append does not follow the recovered records"
    );
    log.close().expect("close after recovery");
    drop(log);
    let log = Log::open(fs, dir, recovery_config()).expect("reopen after a clean close");
    assert_eq!(
        log.end_offset(),
        end.add(1),
        "the end moved across a clean reopen"
    );
    let (again, _) = read_all(&log);
    if whole {
        assert_eq!(
            again.len(),
            kept.len() + 1,
            "records changed across a clean reopen"
        );
        assert_eq!(again.last().unwrap().1.value, extra.value);
    }
    assert!(
        again.len() >= kept.len(),
        "records lost across a clean reopen"
    );
    for ((o1, r1), (o2, r2)) in kept.iter().zip(&again) {
        assert_eq!(o1, o2);
        assert_eq!(r1, r2, "record {o1} changed across a clean reopen");
    }
    log.close().expect("close");
}

/// Largest Kafka frame read in the Kafka target.
const KAFKA_FRAME_MAX: usize = 1 << 20;

/// The Kafka request decoder (`server::kafka::codec`): reads size-prefixed frames off a byte
/// stream as a Kafka connection does and decodes each, with and without topic ids. No input may
/// make the generated decoders panic (the codec would catch it; here it is a failure), and a
/// request that decodes must encode back to a request that decodes to the same value.
pub fn kafka_requests(data: &[u8]) {
    use crate::server::kafka::codec::{decode_request, DecodeError, Decoded};
    let mut rest = data;
    while rest.len() >= 4 {
        let size = i32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
        let Ok(size) = usize::try_from(size) else {
            return;
        };
        if size > KAFKA_FRAME_MAX || rest.len() < 4 + size {
            return;
        }
        let frame = bytes::Bytes::copy_from_slice(&rest[4..4 + size]);
        rest = &rest[4 + size..];
        for topic_ids in [false, true] {
            match decode_request(frame.clone(), topic_ids) {
                Err(DecodeError::Malformed { why, .. }) => {
                    assert!(!why.contains("panicked"), "the decoder panicked: {why}")
                }
                Err(DecodeError::Short(_)) => {}
                Ok(Decoded::Request(h, req)) => kafka_round_trip(&h, &req, topic_ids),
                Ok(Decoded::ApiVersionsUnsupported(_) | Decoded::Unserved(..)) => {}
            }
        }
    }
}

/// How many frames of `data` decode to a request this broker serves (the seed corpus's own
/// check that its frames reach the request decoders).
pub fn kafka_requests_decoded(data: &[u8]) -> usize {
    use crate::server::kafka::codec::{decode_request, Decoded};
    let mut rest = data;
    let mut n = 0;
    while rest.len() >= 4 {
        let size = i32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        if rest.len() < 4 + size {
            break;
        }
        let frame = bytes::Bytes::copy_from_slice(&rest[4..4 + size]);
        rest = &rest[4 + size..];
        if let Ok(Decoded::Request(..)) = decode_request(frame, false) {
            n += 1;
        }
    }
    n
}

/// Encodes a decoded request again (header and body) and checks it decodes to the same value.
fn kafka_round_trip(
    h: &crate::server::kafka::codec::Header,
    req: &crate::server::kafka::codec::Request,
    topic_ids: bool,
) {
    use crate::server::kafka::codec::{decode_request, Decoded, Request};
    use kafka_protocol::messages::{ApiKey, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    let v = h.api_version;
    let mut out = bytes::BytesMut::new();
    let api = ApiKey::try_from(h.api_key).expect("a served api");
    let header = RequestHeader::default()
        .with_request_api_key(h.api_key)
        .with_request_api_version(v)
        .with_correlation_id(h.correlation_id)
        .with_client_id(h.client_id.clone().map(StrBytes::from_string));
    // Versions 0-2 of Produce have no encoder in the crate.
    if matches!(req, Request::LegacyProduce(_)) {
        return;
    }
    header
        .encode(&mut out, api.request_header_version(v))
        .expect("a decoded header encodes");
    let encoded = match req {
        Request::ApiVersions(r) => r.encode(&mut out, v),
        Request::Metadata(r) => r.encode(&mut out, v),
        Request::Produce(r) => r.encode(&mut out, v),
        Request::Fetch(r) => r.encode(&mut out, v),
        Request::ListOffsets(r) => r.encode(&mut out, v),
        Request::FindCoordinator(r) => r.encode(&mut out, v),
        Request::InitProducerId(r) => r.encode(&mut out, v),
        Request::CreatePartitions(r) => r.encode(&mut out, v),
        Request::AlterPartitionReassignments(r) => r.encode(&mut out, v),
        Request::ListPartitionReassignments(r) => r.encode(&mut out, v),
        Request::DescribeLogDirs(r) => r.encode(&mut out, v),
        Request::CreateTopics(r) => r.encode(&mut out, v),
        Request::DeleteTopics(r) => r.encode(&mut out, v),
        Request::DescribeConfigs(r) => r.encode(&mut out, v),
        Request::AlterConfigs(r) => r.encode(&mut out, v),
        Request::IncrementalAlterConfigs(r) => r.encode(&mut out, v),
        Request::OffsetCommit(r) => r.encode(&mut out, v),
        Request::OffsetFetch(r) => r.encode(&mut out, v),
        Request::JoinGroup(r) => r.encode(&mut out, v),
        Request::Heartbeat(r) => r.encode(&mut out, v),
        Request::LeaveGroup(r) => r.encode(&mut out, v),
        Request::SyncGroup(r) => r.encode(&mut out, v),
        Request::DescribeGroups(r) => r.encode(&mut out, v),
        Request::ListGroups(r) => r.encode(&mut out, v),
        Request::DeleteGroups(r) => r.encode(&mut out, v),
        Request::ShareGroupHeartbeat(r) => r.encode(&mut out, v),
        Request::ShareGroupDescribe(r) => r.encode(&mut out, v),
        Request::ShareFetch(r) => r.encode(&mut out, v),
        Request::ShareAcknowledge(r) => r.encode(&mut out, v),
        Request::DescribeShareGroupOffsets(r) => r.encode(&mut out, v),
        Request::AlterShareGroupOffsets(r) => r.encode(&mut out, v),
        Request::DeleteShareGroupOffsets(r) => r.encode(&mut out, v),
        Request::SaslHandshake(r) => r.encode(&mut out, v),
        Request::SaslAuthenticate(r) => r.encode(&mut out, v),
        Request::DescribeAcls(r) => r.encode(&mut out, v),
        Request::CreateAcls(r) => r.encode(&mut out, v),
        Request::DeleteAcls(r) => r.encode(&mut out, v),
        Request::LegacyProduce(_) => return,
    };
    encoded.expect("a decoded request encodes");
    match decode_request(out.freeze(), topic_ids) {
        Ok(Decoded::Request(h2, again)) => {
            assert_eq!(&h2, h, "the header changed");
            assert_eq!(
                format!("{again:?}"),
                format!("{req:?}"),
                "the request changed"
            );
        }
        other => panic!("a re-encoded {api:?} v{v} request does not decode: {other:?}"),
    }
}

/// The admin API's own input decoders (JSON bodies, query strings, the cross-site rule's
/// headers): the first byte picks one, the rest is its input.
pub fn admin_input(data: &[u8]) {
    crate::server::http::admin_input(data);
}

/// The security inputs: the security file's decoder, and both sides of SCRAM on hostile
/// messages. The first byte picks one, the rest is its input.
pub fn security_input(data: &[u8]) {
    use sluice_client::scram::{self, Credential, Mechanism, ScramClient};
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let m = if pick & 0x80 == 0 {
        Mechanism::Sha256
    } else {
        Mechanism::Sha512
    };
    match pick & 0x7f {
        // A security file: decodes or is refused, never panics; what decodes re-encodes alike.
        0 => {
            if let Ok(state) = crate::security::file::decode(rest) {
                let again = crate::security::file::encode(&state);
                assert!(crate::security::file::decode(&again).is_ok());
            }
        }
        // A client-first message, then `rest` as the client-final one too.
        1 => {
            if let Ok(first) = scram::server_start(m, rest) {
                let cred = Credential::with_salt(m, "pw", vec![1; 16], scram::ITERATIONS_MIN);
                let (next, _) = first.reply(cred);
                let _ = next.finish(rest);
            }
        }
        // A server-first then server-final message to a client.
        _ => {
            let (mut c, _) = ScramClient::new(m, "user", "pw");
            if c.step(rest).is_ok() {
                let _ = c.finish(rest);
            }
        }
    }
}

/// What a cluster node reads from peers and from its replicated logs' files: peer frames and
/// their messages, the Raft state files, stored batches as Raft entries (the first byte picks
/// one); and what the broker itself puts in them, each decoder on the bytes after the first:
/// metadata commands, group change entries, a partition's snapshot state, calls between nodes
/// and their answers.
pub fn cluster_input(data: &[u8]) {
    sluice_replication::fuzz_input(data);
    let Some((_, rest)) = data.split_first() else {
        return;
    };
    use crate::cluster::{calls, groups, meta::MetaCommand};
    let _ = MetaCommand::decode(rest);
    let _ = groups::decode_change(rest);
    let _ = crate::cluster::forget::decode_forget(rest);
    let _ = groups::decode_state(rest);
    let _ = calls::decode_call(rest);
    let _ = calls::decode_answer(rest);
    let _ = crate::cluster::image::MetaImage::decode(rest);
}
