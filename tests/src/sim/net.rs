//! The simulated network and fault schedule: latency, drops, duplicates, reordering (by
//! jitter), symmetric and asymmetric partitions that heal, and Twins' per-view partitions.

use consensus::View;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A cut in the network for a time window.
#[derive(Clone, Debug)]
pub struct Partition {
    pub start_ms: u64,
    pub end_ms: u64,
    pub kind: Cut,
}

#[derive(Clone, Debug)]
pub enum Cut {
    /// Instances in `side` and the rest cannot talk either way.
    Symmetric { side: Vec<usize> },
    /// Messages from `from` to instances outside it are lost; the other way works.
    Asymmetric { from: Vec<usize> },
}

/// Twins: for each scheduled view, the instances split into groups; a message of view v
/// reaches only instances in its sender's group. Views past the schedule are unpartitioned.
///
/// The per-view cuts hold until `until_ms`; then the network is whole (a period of
/// synchrony). Without that end a view in which no group holds a quorum could never be
/// left, by any protocol.
#[derive(Clone, Debug, Default)]
pub struct TwinsSchedule {
    /// `groups[v-1][instance]` = group of that instance in view v.
    pub groups: Vec<Vec<u8>>,
    pub until_ms: u64,
}

#[derive(Clone, Debug)]
pub struct Network {
    pub min_latency_ms: u64,
    pub max_latency_ms: u64,
    pub drop: f64,
    pub duplicate: f64,
    /// Drops and duplicates happen only before this time (they are faults that heal too).
    pub lossy_until_ms: u64,
    pub partitions: Vec<Partition>,
    pub twins: TwinsSchedule,
}

impl Network {
    pub fn reliable() -> Network {
        Network {
            min_latency_ms: 1,
            max_latency_ms: 10,
            drop: 0.0,
            duplicate: 0.0,
            lossy_until_ms: u64::MAX,
            partitions: vec![],
            twins: TwinsSchedule::default(),
        }
    }

    /// Whether a message from instance `a` to `b` sent at `now` of view `view` is cut.
    pub fn cut(&self, a: usize, b: usize, now: u64, view: Option<View>) -> bool {
        if let Some(v) = view
            && now < self.twins.until_ms
            && v.0 >= 1
            && let Some(g) = self.twins.groups.get(v.0 as usize - 1)
            && g[a] != g[b]
        {
            return true;
        }
        self.partitions.iter().any(|p| {
            now >= p.start_ms
                && now < p.end_ms
                && match &p.kind {
                    Cut::Symmetric { side } => side.contains(&a) != side.contains(&b),
                    Cut::Asymmetric { from } => from.contains(&a) && !from.contains(&b),
                }
        })
    }

    /// Delivery delays for one message: empty if dropped, two if duplicated.
    pub fn delays(&self, now: u64, rng: &mut ChaCha8Rng) -> Vec<u64> {
        let lossy = now < self.lossy_until_ms;
        if lossy && rng.r#gen::<f64>() < self.drop {
            return vec![];
        }
        let mut d = vec![rng.gen_range(self.min_latency_ms..=self.max_latency_ms)];
        if lossy && rng.r#gen::<f64>() < self.duplicate {
            d.push(rng.gen_range(self.min_latency_ms..=self.max_latency_ms * 3));
        }
        d
    }

    /// When every partition has healed.
    pub fn healed_at(&self) -> u64 {
        self.partitions.iter().map(|p| p.end_ms).max().unwrap_or(0)
    }
}

/// A replica crash and restart.
#[derive(Clone, Debug)]
pub struct Crash {
    pub instance: usize,
    pub at_ms: u64,
    pub restart_ms: u64,
}
