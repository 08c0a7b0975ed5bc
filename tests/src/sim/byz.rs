//! Byzantine behaviours a simulated replica can have (at most f of them in a run that must
//! stay safe; more in the negative controls).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// Shows different proposals for one view to different halves of the committee.
    Equivocate,
    /// Corrupts the signature of everything it sends.
    BadSignatures,
    /// Never sends its votes.
    Withhold,
    /// Replays old messages and sends messages for views far ahead (valid and forged).
    StaleAndFuture,
    /// Runs as two instances sharing one key and identity (Twins); each instance is honest
    /// on its own, together they can equivocate.
    Twin,
}

impl Behaviour {
    pub const ALL_SINGLE: [Behaviour; 5] = [
        Behaviour::Equivocate,
        Behaviour::BadSignatures,
        Behaviour::Withhold,
        Behaviour::StaleAndFuture,
        Behaviour::Twin,
    ];
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Behaviour::Equivocate => "equivocate",
            Behaviour::BadSignatures => "bad-signatures",
            Behaviour::Withhold => "withhold",
            Behaviour::StaleAndFuture => "stale-and-future",
            Behaviour::Twin => "twin",
        };
        f.write_str(s)
    }
}
