//! A member's share session (KIP-932): the partitions it fetches from this broker and the epoch
//! its next ShareFetch or ShareAcknowledge must carry. Epoch 0 opens a session (replacing the
//! member's former one), -1 closes it, and every other request carries the epoch after the
//! last one's (wrapping from `i32::MAX` to 1).

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use uuid::Uuid;

/// The epoch that opens a session.
pub const OPEN_EPOCH: i32 = 0;
/// The epoch that closes a session.
pub const CLOSE_EPOCH: i32 = -1;

/// One member's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The epoch the next request must carry.
    next_epoch: i32,
    /// The partitions fetched from, by topic id.
    partitions: BTreeSet<(Uuid, i32)>,
}

/// What a request does to its member's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Opens a new session.
    Open,
    /// Goes on with the session.
    Continue,
    /// Closes the session after its acknowledgements.
    Close,
}

impl Session {
    /// A new session (after a request with epoch 0) over `partitions`.
    pub fn open(partitions: impl IntoIterator<Item = (Uuid, i32)>) -> Session {
        Session {
            next_epoch: 1,
            partitions: partitions.into_iter().collect(),
        }
    }

    /// The partitions fetched from.
    pub fn partitions(&self) -> impl Iterator<Item = (Uuid, i32)> + '_ {
        self.partitions.iter().copied()
    }

    /// Adds and forgets partitions (an incremental ShareFetch).
    pub fn update(
        &mut self,
        add: impl IntoIterator<Item = (Uuid, i32)>,
        forget: impl IntoIterator<Item = (Uuid, i32)>,
    ) {
        self.partitions.extend(add);
        for p in forget {
            self.partitions.remove(&p);
        }
    }
}

/// Checks a request's `epoch` against the member's `session` and advances it: what the request
/// does, or the error it gets (SHARE_SESSION_NOT_FOUND without a session,
/// INVALID_SHARE_SESSION_EPOCH for an epoch out of turn). `opens` says whether the request may
/// open a session (ShareFetch may, ShareAcknowledge may not).
pub fn step(session: &mut Option<Session>, epoch: i32, opens: bool) -> Result<Step, ResponseError> {
    match epoch {
        OPEN_EPOCH if opens => Ok(Step::Open),
        OPEN_EPOCH => Err(ResponseError::InvalidShareSessionEpoch),
        CLOSE_EPOCH => match session {
            Some(_) => Ok(Step::Close),
            None => Err(ResponseError::ShareSessionNotFound),
        },
        e => {
            let s = session
                .as_mut()
                .ok_or(ResponseError::ShareSessionNotFound)?;
            if e != s.next_epoch {
                return Err(ResponseError::InvalidShareSessionEpoch);
            }
            s.next_epoch = if e == i32::MAX { 1 } else { e + 1 };
            Ok(Step::Continue)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_open_continue_and_close_in_turn() {
        let t = Uuid::from_u128(7);
        let mut s = None;
        assert_eq!(
            step(&mut s, 1, true),
            Err(ResponseError::ShareSessionNotFound)
        );
        assert_eq!(
            step(&mut s, -1, true),
            Err(ResponseError::ShareSessionNotFound)
        );
        assert_eq!(step(&mut s, 0, true), Ok(Step::Open));
        s = Some(Session::open([(t, 0)]));
        assert_eq!(
            step(&mut s, 0, false),
            Err(ResponseError::InvalidShareSessionEpoch)
        );
        assert_eq!(
            step(&mut s, 2, true),
            Err(ResponseError::InvalidShareSessionEpoch)
        );
        assert_eq!(step(&mut s, 1, true), Ok(Step::Continue));
        // The same epoch again is out of turn.
        assert_eq!(
            step(&mut s, 1, true),
            Err(ResponseError::InvalidShareSessionEpoch)
        );
        assert_eq!(step(&mut s, 2, false), Ok(Step::Continue));
        assert_eq!(step(&mut s, -1, true), Ok(Step::Close));
    }

    #[test]
    fn the_epoch_wraps_to_one() {
        let mut s = Some(Session {
            next_epoch: i32::MAX,
            partitions: BTreeSet::new(),
        });
        assert_eq!(step(&mut s, i32::MAX, true), Ok(Step::Continue));
        assert_eq!(step(&mut s, 1, true), Ok(Step::Continue));
    }

    #[test]
    fn partitions_are_added_and_forgotten() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut s = Session::open([(a, 0), (a, 1)]);
        s.update([(b, 0)], [(a, 1)]);
        assert_eq!(s.partitions().collect::<Vec<_>>(), vec![(a, 0), (b, 0)]);
    }
}
