//! Text helpers of the CLI: RFC 3339 times, base64, and message output.

use serde_json::{json, Map, Value};

/// Parses an RFC 3339 time (`2024-05-01T12:00:00Z`, `2024-05-01T12:00:00.250+02:00`) into
/// milliseconds since the Unix epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > mdays[mo as usize - 1]
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut pos = 19;
    let mut ms = 0i64;
    if sep(pos, b".") {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        if pos == start {
            return None;
        }
        let frac = &s[start..pos.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match b.get(pos)? {
        b'Z' | b'z' if pos + 1 == b.len() => 0,
        c @ (b'+' | b'-') if pos + 6 == b.len() && sep(pos + 3, b":") => {
            let (oh, om) = (num(pos + 1, 2)?, num(pos + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = oh * 60 + om;
            if *c == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + sec.min(59) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Standard base64 with padding (RFC 4648).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Adds `field` (text when UTF-8, else base64 with `<field>_encoding: "base64"`).
fn put_bytes(m: &mut Map<String, Value>, field: &str, b: Option<&[u8]>) {
    match b {
        None => {
            m.insert(field.into(), Value::Null);
        }
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => {
                m.insert(field.into(), json!(s));
            }
            Err(_) => {
                m.insert(field.into(), json!(base64(b)));
                m.insert(format!("{field}_encoding"), json!("base64"));
            }
        },
    }
}

/// The JSON line of a message of `partition`: its headers (when it has any) as a list of
/// `{"name", "value"}` objects, in order.
pub fn message_json(
    partition: u32,
    offset: u64,
    timestamp_ms: i64,
    key: Option<&[u8]>,
    headers: &[sluice::client::Header],
    payload: &[u8],
    attempt: Option<u32>,
) -> String {
    let mut m = Map::new();
    m.insert("partition".into(), json!(partition));
    m.insert("offset".into(), json!(offset));
    m.insert("timestamp".into(), json!(timestamp_ms));
    put_bytes(&mut m, "key", key);
    if !headers.is_empty() {
        let list: Vec<Value> = headers
            .iter()
            .map(|h| {
                let mut o = Map::new();
                put_bytes(&mut o, "name", Some(&h.name));
                put_bytes(&mut o, "value", Some(&h.value));
                Value::Object(o)
            })
            .collect();
        m.insert("headers".into(), Value::Array(list));
    }
    put_bytes(&mut m, "payload", Some(payload));
    if let Some(a) = attempt {
        m.insert("attempt".into(), json!(a));
    }
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00Z"),
            Some(1_709_208_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T14:00:00.123+02:00"),
            Some(1_709_208_000_123)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29t11:00:00-01:00"),
            Some(1_709_208_000_000)
        );
        for bad in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01",
            "12",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0200",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn messages_are_lossless() {
        let v: Value =
            serde_json::from_str(&message_json(0, 3, 9, None, &[], b"hi", None)).unwrap();
        assert_eq!(v["payload"], "hi");
        assert_eq!(v["key"], Value::Null);
        assert!(v.get("payload_encoding").is_none());
        let v: Value =
            serde_json::from_str(&message_json(2, 3, 9, Some(b"k"), &[], &[0xff, 0], Some(2)))
                .unwrap();
        assert_eq!(v["payload"], "/wA=");
        assert_eq!(v["payload_encoding"], "base64");
        assert_eq!(v["attempt"], 2);
        assert!(v.get("headers").is_none(), "no headers, no field");
        let h = [
            sluice::client::Header::new("reason", "rejected"),
            sluice::client::Header::new("bin", vec![0xffu8]),
        ];
        let v: Value = serde_json::from_str(&message_json(0, 1, 2, None, &h, b"x", None)).unwrap();
        assert_eq!(v["headers"][0]["name"], "reason");
        assert_eq!(v["headers"][0]["value"], "rejected");
        assert_eq!(v["headers"][1]["value"], "/w==");
        assert_eq!(v["headers"][1]["value_encoding"], "base64");
    }
}
