//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): the client's and the server's side of
//! the exchange, and the stored credential. The native protocol's `AUTH` and the Kafka
//! listener's SASL both run this one implementation.
//!
//! ```text
//! client-first  n,,n=<user>,r=<client nonce>
//! server-first  r=<client nonce><server nonce>,s=<base64 salt>,i=<iterations>
//! client-final  c=biws,r=<nonce>,p=<base64 ClientKey XOR HMAC(StoredKey, AuthMessage)>
//! server-final  v=<base64 HMAC(ServerKey, AuthMessage)>   or   e=<error>
//! ```
//!
//! The password is used as its UTF-8 bytes (no SASLprep), as Kafka does. No channel binding
//! (`n,,`); an authorization identity other than the user is refused.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Fewest PBKDF2 iterations accepted from a server or stored (RFC 7677's minimum is 4096).
pub const ITERATIONS_MIN: u32 = 4096;
/// Iterations of new credentials.
pub const ITERATIONS_DEFAULT: u32 = 8192;
/// Most iterations a client runs for a server (a hostile server could ask for billions).
pub const ITERATIONS_MAX: u32 = 1_000_000;
/// Longest SCRAM message accepted.
pub const MESSAGE_BYTES_MAX: usize = 4096;

/// A SCRAM hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mechanism {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl Mechanism {
    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Mechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// A message did not parse.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The proof did not match (wrong password, or an unknown user).
    #[error("authentication failed: invalid credentials")]
    InvalidCredentials,
    /// The server's signature did not match: it does not know the password.
    #[error(
        "the server's SCRAM signature does not match: it does not hold this user's credential"
    )]
    BadServerSignature,
    /// The server answered with an error.
    #[error("the server refused: {0}")]
    Server(String),
    /// Something the exchange does not support (channel binding, another identity).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// What a server stores for one user and mechanism: never the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// Random salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl Credential {
    /// A credential for `password` with a new random salt.
    pub fn new(mechanism: Mechanism, password: &str, iterations: u32) -> Credential {
        let mut salt = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Credential::with_salt(mechanism, password, salt, iterations)
    }

    /// A credential for `password` with this salt.
    pub fn with_salt(mechanism: Mechanism, pw: &str, salt: Vec<u8>, iterations: u32) -> Credential {
        let salted = mechanism.salted_password(pw.as_bytes(), &salt, iterations);
        let client_key = mechanism.hmac(&salted, b"Client Key");
        Credential {
            mechanism,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// Whether `password` is this credential's (constant time in the keys).
    pub fn verify(&self, password: &str) -> bool {
        let other =
            Credential::with_salt(self.mechanism, password, self.salt.clone(), self.iterations);
        bool::from(other.stored_key.ct_eq(&self.stored_key))
    }
}

fn nonce() -> String {
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// `=` and `,` in a user name are `=3D` and `=2C` on the wire.
fn encode_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn decode_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of attribute `key` (`k=value`) in a comma-separated message.
fn attr(msg: &str, key: char) -> Option<&str> {
    msg.split(',')
        .find_map(|p| p.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn text(msg: &[u8]) -> Result<&str, ScramError> {
    if msg.len() > MESSAGE_BYTES_MAX {
        return Err(ScramError::Malformed("message too long"));
    }
    std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The client's side: [`ScramClient::new`] gives the first message, [`ScramClient::step`] the
/// final one from the server's first, [`ScramClient::finish`] checks the server's final.
pub struct ScramClient {
    mechanism: Mechanism,
    password: String,
    first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    /// Starts an exchange as `user`; returns the client-first message.
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> (ScramClient, Vec<u8>) {
        let nonce = nonce();
        let first_bare = format!("n={},r={nonce}", encode_name(user));
        let msg = format!("n,,{first_bare}").into_bytes();
        let c = ScramClient {
            mechanism,
            password: password.to_string(),
            first_bare,
            nonce,
            server_signature: None,
        };
        (c, msg)
    }

    /// Answers the server-first message with the client-final one.
    pub fn step(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let sf = text(server_first)?;
        if let Some(e) = attr(sf, 'e') {
            return Err(ScramError::Server(e.to_string()));
        }
        let r = attr(sf, 'r').ok_or(ScramError::Malformed("no nonce"))?;
        if !r.starts_with(&self.nonce) || r.len() == self.nonce.len() {
            return Err(ScramError::Malformed(
                "the server's nonce does not extend ours",
            ));
        }
        let salt = attr(sf, 's')
            .and_then(|s| B64.decode(s).ok())
            .ok_or(ScramError::Malformed("bad salt"))?;
        let i: u32 = attr(sf, 'i')
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed("bad iteration count"))?;
        if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&i) {
            return Err(ScramError::Unsupported("iteration count out of range"));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, i);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={r}");
        let auth = format!("{},{sf},{without_proof}", self.first_bare);
        let proof = xor(&client_key, &m.hmac(&stored_key, auth.as_bytes()));
        let server_key = m.hmac(&salted, b"Server Key");
        self.server_signature = Some(m.hmac(&server_key, auth.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proved it holds the credential.
    pub fn finish(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let sf = text(server_final)?;
        if let Some(e) = attr(sf, 'e') {
            return Err(ScramError::Server(e.to_string()));
        }
        let v = attr(sf, 'v')
            .and_then(|v| B64.decode(v).ok())
            .ok_or(ScramError::Malformed("no server signature"))?;
        match &self.server_signature {
            Some(expected) if bool::from(expected.ct_eq(&v)) => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

/// The server's side after the client-first message: who the client says it is.
pub struct ScramServerFirst {
    mechanism: Mechanism,
    user: String,
    first_bare: String,
    client_nonce: String,
}

/// Parses the client-first message.
pub fn server_start(mechanism: Mechanism, msg: &[u8]) -> Result<ScramServerFirst, ScramError> {
    let m = text(msg)?;
    let (gs2, first_bare) = match m.strip_prefix("n,") {
        Some(rest) => rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no gs2 header"))?,
        None if m.starts_with("y,") || m.starts_with("p=") => {
            return Err(ScramError::Unsupported("channel binding"))
        }
        None => return Err(ScramError::Malformed("no gs2 header")),
    };
    let user = decode_name(attr(first_bare, 'n').ok_or(ScramError::Malformed("no user"))?)?;
    if let Some(authzid) = gs2.strip_prefix("a=") {
        if decode_name(authzid)? != user {
            return Err(ScramError::Unsupported(
                "an authorization identity other than the user",
            ));
        }
    } else if !gs2.is_empty() {
        return Err(ScramError::Malformed("bad gs2 header"));
    }
    let client_nonce = attr(first_bare, 'r')
        .filter(|r| !r.is_empty())
        .ok_or(ScramError::Malformed("no nonce"))?
        .to_string();
    if user.is_empty() {
        return Err(ScramError::Malformed("empty user"));
    }
    Ok(ScramServerFirst {
        mechanism,
        user,
        first_bare: first_bare.to_string(),
        client_nonce,
    })
}

impl ScramServerFirst {
    /// The user the client names.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The server-first message, for this user's credential. For an unknown user pass a
    /// stand-in ([`Credential::decoy`]): the exchange then fails at the proof, exactly as for a
    /// wrong password, so answers do not tell which users exist.
    pub fn reply(self, credential: Credential) -> (ScramServerFinal, Vec<u8>) {
        let nonce = format!("{}{}", self.client_nonce, nonce());
        let first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let auth_prefix = format!("{},{first}", self.first_bare);
        let msg = first.into_bytes();
        let next = ScramServerFinal {
            mechanism: self.mechanism,
            user: self.user,
            credential,
            nonce,
            auth_prefix,
        };
        (next, msg)
    }
}

impl Credential {
    /// A credential no password matches, the same for each (user, secret): stands in for an
    /// unknown user.
    pub fn decoy(mechanism: Mechanism, user: &str, secret: &[u8]) -> Credential {
        let salt = mechanism.hmac(secret, user.as_bytes())[..16].to_vec();
        let mut stored_key = vec![0u8; mechanism.hash(b"").len()];
        rand::thread_rng().fill_bytes(&mut stored_key);
        Credential {
            mechanism,
            salt,
            iterations: ITERATIONS_DEFAULT,
            server_key: stored_key.clone(),
            stored_key,
        }
    }
}

/// The server's side after its first message: checks the client's proof.
pub struct ScramServerFinal {
    mechanism: Mechanism,
    user: String,
    credential: Credential,
    nonce: String,
    auth_prefix: String,
}

impl ScramServerFinal {
    /// The user the client names.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Checks the client-final message; on success returns the server-final message.
    pub fn finish(self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        let m = text(msg)?;
        let (without_proof, proof) = m
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let c = attr(without_proof, 'c').ok_or(ScramError::Malformed("no channel binding"))?;
        // base64 of the gs2 header "n,," (or "n,a=user,").
        let gs2 = B64
            .decode(c)
            .map_err(|_| ScramError::Malformed("bad channel binding"))?;
        if !gs2.starts_with(b"n,") {
            return Err(ScramError::Unsupported("channel binding"));
        }
        // The nonce must end with the one this server sent, as Kafka's broker checks it:
        // librdkafka before 2.2 sends its own nonce again in front of it (the proof covers
        // the message as sent, so nothing is weakened).
        if !attr(without_proof, 'r').is_some_and(|r| r.ends_with(self.nonce.as_str())) {
            return Err(ScramError::Malformed("the nonce does not match"));
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("bad proof"))?;
        let m = self.mechanism;
        let auth = format!("{},{without_proof}", self.auth_prefix);
        let signature = m.hmac(&self.credential.stored_key, auth.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let client_key = xor(&proof, &signature);
        if !bool::from(m.hash(&client_key).ct_eq(&self.credential.stored_key)) {
            return Err(ScramError::InvalidCredentials);
        }
        let v = m.hmac(&self.credential.server_key, auth.as_bytes());
        Ok(format!("v={}", B64.encode(v)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(m: Mechanism, stored: &str, tried: &str, user: &str) -> Result<(), ScramError> {
        let cred = Credential::new(m, stored, ITERATIONS_MIN);
        let (mut client, first) = ScramClient::new(m, user, tried);
        let s = server_start(m, &first)?;
        assert_eq!(s.user(), user);
        let (s, server_first) = s.reply(cred);
        let client_final = client.step(&server_first)?;
        let server_final = s.finish(&client_final)?;
        client.finish(&server_final)
    }

    #[test]
    fn both_mechanisms_agree_and_refuse_a_wrong_password() {
        for m in [Mechanism::Sha256, Mechanism::Sha512] {
            exchange(m, "s3cret", "s3cret", "alice").unwrap();
            exchange(m, "pa=ss,word", "pa=ss,word", "we,ird=name").unwrap();
            assert_eq!(
                exchange(m, "s3cret", "guess", "alice"),
                Err(ScramError::InvalidCredentials)
            );
        }
    }

    /// RFC 7677's example of SCRAM-SHA-256 (user "user", password "pencil").
    #[test]
    fn rfc7677_vector() {
        let m = Mechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let cred = Credential::with_salt(m, "pencil", salt, 4096);
        let first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let s = server_start(m, first).unwrap();
        let (mut s, _) = s.reply(cred);
        // The RFC's server nonce instead of a random one.
        s.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        s.auth_prefix = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into();
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let server_final = s.finish(client_final).unwrap();
        assert_eq!(
            server_final,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
    }

    #[test]
    fn decoys_fail_like_wrong_passwords_and_hostile_messages_are_refused() {
        let m = Mechanism::Sha256;
        let (mut client, first) = ScramClient::new(m, "nobody", "x");
        let s = server_start(m, &first).unwrap();
        let (s, sf) = s.reply(Credential::decoy(m, "nobody", b"secret"));
        let cf = client.step(&sf).unwrap();
        assert_eq!(s.finish(&cf), Err(ScramError::InvalidCredentials));
        for bad in [
            &b""[..],
            b"x",
            b"n,,",
            b"y,,n=a,r=b",
            b"n,,n=,r=x",
            b"n,,n=a=zz,r=x",
        ] {
            assert!(server_start(m, bad).is_err(), "{bad:?}");
        }
        assert!(server_start(m, &vec![b'a'; MESSAGE_BYTES_MAX + 1]).is_err());
        let (mut c, _) = ScramClient::new(m, "a", "b");
        assert!(c.step(b"r=other,s=AAAA,i=4096").is_err());
        assert!(c.finish(b"v=AAAA").is_err());
    }

    #[test]
    fn verify_checks_the_password() {
        let c = Credential::new(Mechanism::Sha512, "right", ITERATIONS_MIN);
        assert!(c.verify("right"));
        assert!(!c.verify("wrong"));
    }
}
