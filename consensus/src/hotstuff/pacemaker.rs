//! View timeouts: base duration doubled per view that ended in a timeout certificate, with a
//! cap (hotstuff_rs #14: uncapped doubling grew to days), reset when a QC makes progress.

#[derive(Clone, Debug)]
pub struct Pacemaker {
    base_ms: u64,
    max_ms: u64,
    timeouts_in_a_row: u32,
}

impl Pacemaker {
    pub fn new(base_ms: u64, max_ms: u64) -> Self {
        assert!(
            base_ms > 0 && max_ms >= base_ms,
            "pacemaker needs 0 < base <= max"
        );
        Pacemaker {
            base_ms,
            max_ms,
            timeouts_in_a_row: 0,
        }
    }

    /// Records how the last view ended.
    pub fn view_ended(&mut self, by_timeout: bool) {
        self.timeouts_in_a_row = if by_timeout {
            self.timeouts_in_a_row.saturating_add(1)
        } else {
            0
        };
    }

    /// Duration of the current view's timer.
    pub fn duration_ms(&self) -> u64 {
        let shift = self.timeouts_in_a_row.min(32);
        self.base_ms.saturating_mul(1u64 << shift).min(self.max_ms)
    }
}
