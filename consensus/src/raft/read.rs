//! Linearizable reads by ReadIndex (Raft thesis §6.4), without touching the log.
//!
//! A read asked of the leader ([`Input::Read`](crate::core::Input::Read)):
//! 1. waits until the leader has committed an entry of its own term (its no-op): only then
//!    is its commit index at least every index committed by any earlier leader;
//! 2. takes the commit index as the read's index and joins a *round*: the leader numbers its
//!    rounds (`read_round`), every Append carries the latest number and every AppendReply
//!    echoes it, so a reply of this term carrying round r proves that the follower still
//!    took this replica for the leader after round r began. Reads that arrive while a round
//!    is out wait for the next one (one heartbeat per follower per round, however many
//!    reads share it);
//! 3. once a majority (counting itself) has echoed the round, no other leader can have
//!    committed anything the read misses: [`Action::ReadReady`] with the index. The driver
//!    serves the read once its state has applied that index.
//!
//! A follower forwards the read ([`Message::ReadIndex`]) to the leader it follows and
//! answers with the index the leader confirms; it too serves the read only after applying
//! that index. Any change of role or term fails the reads it holds ([`Action::ReadFailed`]):
//! the client retries. No lease reads: a lease needs bounded clock drift and a clock the
//! core does not read.

use super::core::{Out, Raft, Role};
use super::messages::Message;
use crate::core::Action;
use crate::durable::Route;
use crate::types::ReplicaId;
use std::collections::VecDeque;

/// Reads one replica holds open at most (leader: queued and in a round; follower:
/// forwarded). A leader refuses beyond it; a follower fails its oldest forwarded read.
pub const MAX_OPEN_READS: usize = 4096;

/// Who asked for a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reader {
    /// This replica's driver.
    Local(u64),
    /// A follower, with its own id for the read.
    Remote(ReplicaId, u64),
}

/// A read in a round: ready once a majority echoed `round`.
#[derive(Clone, Debug)]
pub(super) struct RoundRead {
    pub(super) reader: Reader,
    pub(super) index: u64,
    pub(super) round: u64,
}

/// A replica's open reads.
#[derive(Debug, Default)]
pub(super) struct Reads {
    /// Leader: the latest round started (0: none yet). Never reset, so an echo from an
    /// earlier term can never match a later round number.
    pub(super) round: u64,
    /// Leader: reads waiting for a round (or for a commit of the leader's term).
    pub(super) queued: VecDeque<Reader>,
    /// Leader: reads in a round, in round order.
    pub(super) in_round: VecDeque<RoundRead>,
    /// Leader: the highest round each follower echoed in this term.
    pub(super) echoed: std::collections::BTreeMap<ReplicaId, u64>,
    /// Follower: reads forwarded to the leader — (id, term forwarded in), oldest first.
    pub(super) forwarded: VecDeque<(u64, u64)>,
}

impl Reads {
    fn open(&self) -> usize {
        self.queued.len() + self.in_round.len() + self.forwarded.len()
    }
}

impl Raft {
    /// A client's read, asked of this replica.
    pub(super) fn on_read(&mut self, id: u64, out: &mut Out) {
        match (self.role, self.leader) {
            (Role::Leader, _) => self.leader_read(Reader::Local(id), out),
            (Role::Follower, Some(leader)) => {
                if self.reads.forwarded.len() >= MAX_OPEN_READS
                    && let Some((old, _)) = self.reads.forwarded.pop_front()
                {
                    // Its answer was lost (or its client gave up long ago): fail it.
                    out.push(Action::ReadFailed { id: old });
                }
                self.reads.forwarded.push_back((id, self.term));
                let msg = Message::ReadIndex {
                    term: self.term,
                    id,
                };
                self.send(Route::To(leader), msg, 0, out);
            }
            _ => out.push(Action::ReadFailed { id }),
        }
    }

    /// A follower's forwarded read.
    pub(super) fn on_read_index(&mut self, from: ReplicaId, term: u64, id: u64, out: &mut Out) {
        if self.step_down_if_behind(term, out) || self.role != Role::Leader || term != self.term {
            let msg = Message::ReadIndexReply {
                term: self.term,
                id,
                index: None,
            };
            return self.send(Route::To(from), msg, 0, out);
        }
        self.leader_read(Reader::Remote(from, id), out);
    }

    /// The leader's answer to a read this replica forwarded.
    pub(super) fn on_read_index_reply(
        &mut self,
        term: u64,
        id: u64,
        index: Option<u64>,
        out: &mut Out,
    ) {
        let Some(k) = self.reads.forwarded.iter().position(|(i, _)| *i == id) else {
            self.stats.ignored += 1;
            return;
        };
        let (_, asked_in) = self.reads.forwarded.remove(k).expect("found");
        match index {
            // Confirmed by the leader of the term the read was forwarded in.
            Some(index) if term == asked_in => out.push(Action::ReadReady { id, index }),
            _ => out.push(Action::ReadFailed { id }),
        }
    }

    fn leader_read(&mut self, reader: Reader, out: &mut Out) {
        if self.reads.open() >= MAX_OPEN_READS {
            return self.answer(reader, None, out);
        }
        self.reads.queued.push_back(reader);
        self.advance_reads(out);
    }

    /// Leader: answers the reads whose round a majority echoed, then starts a round for
    /// the queued ones if it can (and sends its heartbeats).
    pub(super) fn advance_reads(&mut self, out: &mut Out) {
        self.answer_confirmed_reads(out);
        if self.start_read_round() {
            self.answer_confirmed_reads(out);
            self.broadcast_append(true, out);
        }
    }

    /// Leader: answers every read in a round a majority (counting itself) has echoed.
    pub(super) fn answer_confirmed_reads(&mut self, out: &mut Out) {
        if self.role != Role::Leader {
            return;
        }
        if self.unsafe_stale_reads {
            // NEGATIVE CONTROL: answer at once with the commit index, as a leader that
            // does not know it was deposed would.
            while let Some(reader) = self.reads.queued.pop_front() {
                self.answer(reader, Some(self.commit), out);
            }
            return;
        }
        let mut rounds: Vec<u64> = self.reads.echoed.values().copied().collect();
        rounds.push(self.reads.round);
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = rounds.get(self.quorum() - 1).copied().unwrap_or(0);
        while self
            .reads
            .in_round
            .front()
            .is_some_and(|r| r.round <= confirmed)
        {
            let r = self.reads.in_round.pop_front().expect("non-empty");
            self.answer(r.reader, Some(r.index), out);
        }
    }

    /// Leader: puts the queued reads in a new round at the commit index, if none is out
    /// and an entry of this term is committed. The caller sends the heartbeats (the
    /// round's number rides on every Append from now on). Whether it started one.
    pub(super) fn start_read_round(&mut self) -> bool {
        let own_term_committed = self.log.term_at(self.commit) == Some(self.term);
        if self.role != Role::Leader
            || !own_term_committed
            || !self.reads.in_round.is_empty()
            || self.reads.queued.is_empty()
        {
            return false;
        }
        self.reads.round += 1;
        let (round, index) = (self.reads.round, self.commit);
        for reader in self.reads.queued.drain(..) {
            self.reads.in_round.push_back(RoundRead {
                reader,
                index,
                round,
            });
        }
        true
    }

    /// Leader: a follower echoed `round` in a reply of this term.
    pub(super) fn on_read_echo(&mut self, from: ReplicaId, round: u64, out: &mut Out) {
        let e = self.reads.echoed.entry(from).or_insert(0);
        if round > *e && round <= self.reads.round {
            *e = round;
            self.advance_reads(out);
        }
    }

    fn answer(&mut self, reader: Reader, index: Option<u64>, out: &mut Out) {
        match (reader, index) {
            (Reader::Local(id), Some(index)) => out.push(Action::ReadReady { id, index }),
            (Reader::Local(id), None) => out.push(Action::ReadFailed { id }),
            (Reader::Remote(to, id), index) => {
                let msg = Message::ReadIndexReply {
                    term: self.term,
                    id,
                    index,
                };
                self.send(Route::To(to), msg, 0, out);
            }
        }
    }

    /// A change of role or term: every open read fails (its client asks again).
    pub(super) fn fail_reads(&mut self, out: &mut Out) {
        let queued: Vec<Reader> = self.reads.queued.drain(..).collect();
        let in_round: Vec<Reader> = self.reads.in_round.drain(..).map(|r| r.reader).collect();
        for reader in queued.into_iter().chain(in_round) {
            self.answer(reader, None, out);
        }
        for (id, _) in self.reads.forwarded.drain(..) {
            out.push(Action::ReadFailed { id });
        }
        self.reads.echoed.clear();
    }

    /// Reads open here (leader: queued and in a round; follower: forwarded).
    pub fn open_reads(&self) -> usize {
        self.reads.open()
    }

    /// NEGATIVE CONTROL ONLY — BREAKS LINEARIZABILITY. With `on`, a leader answers reads
    /// at once with its commit index, without confirming with a majority that it still
    /// leads: a deposed leader then serves stale reads. The simulator uses it to show that
    /// its read checker catches exactly that; nothing else may call it.
    pub fn set_unsafe_stale_reads(&mut self, on: bool) {
        self.unsafe_stale_reads = on;
    }
}
