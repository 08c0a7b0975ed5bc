//! The driver's counters and stage timings, for status and metrics.

/// Counters for status and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriverStats {
    pub bad_frames: u64,
    pub fsyncs: u64,
    pub held_proposals: u64,
    /// State snapshots installed (Raft's InstallSnapshot) and served, chunk by chunk.
    pub snapshots_installed: u64,
    pub snapshot_chunks_served: u64,
    /// Equivocations found (two validly signed, conflicting messages from one validator);
    /// see [`super::evidence`].
    pub evidence: u64,
    /// Peer requests (batches, snapshot chunks) ignored because the peer asked too often.
    pub limited_requests: u64,
    /// Header certificates formed ([`super::attestation`]), and peers' header votes dropped
    /// (bad signature, another key, outside the window).
    pub header_certs: u64,
    pub bad_header_votes: u64,
    /// BFT state syncs installed; chunks and offers refused in them (failed verification).
    pub state_syncs: u64,
    pub bad_state_chunks: u64,
    pub bad_state_offers: u64,
    /// Validator-set epochs this validator's core switched to ([`super::epochs`]), and
    /// consensus frames of an epoch it had left (or too many of a later one) dropped.
    pub epoch_switches: u64,
    pub stale_epoch_frames: u64,
    /// Leader transfers this validator started on an operator's request.
    pub leader_transfers: u64,
    /// Batches held back from the core because a sender's earlier batch had not been
    /// offered or executed yet ([`super::ordering`]).
    pub parked_batches: u64,
    /// Durations of durable writes (safety records and blocks) not yet taken by
    /// [`Driver::take_fsync_seconds`]; bounded.
    pub(super) fsync_seconds: Vec<f64>,
    /// Stage durations not yet taken by [`Driver::take_stage_samples`].
    pub(super) stages: StageSamples,
}

/// Durations (seconds) of the pipeline stages the driver sees, for the
/// `cairn_stage_*_seconds` histograms (see `crate::api::StageHistograms`); each list
/// keeps at most 4,096 samples between takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageSamples {
    pub batching: Vec<f64>,
    pub consensus: Vec<f64>,
    pub execution: Vec<f64>,
    pub store: Vec<f64>,
}

pub(super) fn sample(list: &mut Vec<f64>, secs: f64) {
    if list.len() < MAX_FSYNC_SAMPLES {
        list.push(secs);
    }
}

/// Durations kept for [`Driver::take_fsync_seconds`] at most (older ones are dropped).
const MAX_FSYNC_SAMPLES: usize = 4096;

impl DriverStats {
    pub(super) fn fsync(&mut self, started: std::time::Instant) {
        self.fsync_seconds(started.elapsed().as_secs_f64());
    }

    pub(super) fn fsync_seconds(&mut self, secs: f64) {
        self.fsyncs += 1;
        if self.fsync_seconds.len() < MAX_FSYNC_SAMPLES {
            self.fsync_seconds.push(secs);
        }
    }
}
