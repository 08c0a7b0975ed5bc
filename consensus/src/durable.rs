//! Persist-then-send, enforced by types.
//!
//! A protocol's safety module returns the messages it signs wrapped in [`Unreleased`], whose
//! contents cannot be read outside this module. The only way to get them out is to hand them
//! to a [`PersistGate`] together with the sequence number of the persist they depend on; the
//! gate releases them once the driver reports that sequence durable. So a vote cannot reach
//! the network before the state that justifies it is on disk, whatever the handler code does.

use crate::core::{Action, Durable};
use std::collections::VecDeque;

/// A signed message that must not leave before the persist it depends on is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreleased<T>(T);

impl<T> Unreleased<T> {
    /// Wraps `value`. Only protocol safety modules should call this, right after signing.
    pub fn new(value: T) -> Self {
        Unreleased(value)
    }

    /// Maps the held value without releasing it (e.g. to wrap it into a message enum).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Unreleased<U> {
        Unreleased(f(self.0))
    }
}

/// Where a released message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    To(crate::ReplicaId),
    All,
}

/// Holds messages until the persist they depend on is acknowledged.
#[derive(Debug)]
pub struct PersistGate<M> {
    next_seq: u64,
    durable: u64,
    held: VecDeque<(u64, Route, M)>,
}

impl<M> Default for PersistGate<M> {
    fn default() -> Self {
        PersistGate {
            next_seq: 1,
            durable: 0,
            held: VecDeque::new(),
        }
    }
}

impl<M> PersistGate<M> {
    /// Emits a persist action and returns its sequence number.
    pub fn persist(&mut self, what: Durable, out: &mut Vec<Action<M>>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        out.push(Action::Persist { seq, what });
        seq
    }

    /// Holds `msg` until `seq` is durable.
    pub fn send_after(&mut self, seq: u64, route: Route, msg: Unreleased<M>) {
        assert!(
            seq < self.next_seq,
            "send_after a persist that was never issued"
        );
        self.held.push_back((seq, route, msg.0));
    }

    /// Records that every persist up to `seq` is durable and returns the messages that may
    /// now leave, in the order they were held. Acknowledgements of sequence numbers never
    /// issued are ignored (a confused driver must not release anything early).
    pub fn persisted(&mut self, seq: u64) -> Vec<(Route, M)> {
        if seq >= self.next_seq || seq <= self.durable {
            return Vec::new();
        }
        self.durable = seq;
        let mut out = Vec::new();
        while self.held.front().is_some_and(|(s, _, _)| *s <= seq) {
            let (_, route, msg) = self.held.pop_front().expect("front exists");
            out.push((route, msg));
        }
        out
    }

    /// Releases held messages whose persist is already durable (a message held after a
    /// sequence number that was acknowledged earlier, such as a repeated vote).
    pub fn release_durable(&mut self) -> Vec<(Route, M)> {
        let mut out = Vec::new();
        while self
            .held
            .front()
            .is_some_and(|(s, _, _)| *s <= self.durable)
        {
            let (_, route, msg) = self.held.pop_front().expect("front exists");
            out.push((route, msg));
        }
        out
    }

    /// Highest sequence number known durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Number of messages waiting for a persist.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_only_after_ack_in_order() {
        let mut g: PersistGate<&str> = PersistGate::default();
        let mut out = Vec::new();
        let s1 = g.persist(Durable::Safety(vec![1]), &mut out);
        g.send_after(s1, Route::All, Unreleased::new("a"));
        let s2 = g.persist(Durable::Safety(vec![2]), &mut out);
        g.send_after(s2, Route::All, Unreleased::new("b"));
        assert_eq!(out.len(), 2);
        assert!(g.persisted(0).is_empty());
        assert!(g.persisted(99).is_empty(), "unknown seq must not release");
        assert_eq!(g.persisted(s1), vec![(Route::All, "a")]);
        assert!(g.persisted(s1).is_empty(), "no double release");
        assert_eq!(g.persisted(s2), vec![(Route::All, "b")]);
        assert_eq!(g.held(), 0);
    }

    #[test]
    fn batched_ack_releases_everything_below() {
        let mut g: PersistGate<u8> = PersistGate::default();
        let mut out = Vec::new();
        for i in 0..3 {
            let s = g.persist(Durable::Safety(vec![i]), &mut out);
            g.send_after(s, Route::To(crate::ReplicaId(1)), Unreleased::new(i));
        }
        assert_eq!(g.persisted(3).len(), 3);
    }
}
