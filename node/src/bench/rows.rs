//! Turning one run's measured outcome into a report row (throughput, latency, stage means).

use super::cluster::Counters;
use super::load::{self, Load, Workload};
use super::report::{Latency, Row};
use genesis::Protocol;

/// The mean milliseconds of each pipeline stage over the window, across validators.
fn stage_means(o: &load::Outcome) -> Vec<(String, f64)> {
    crate::api::StageHistograms::NAMES
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let (mut secs, mut count) = (0.0, 0u64);
            for (a, b) in o.after.iter().zip(&o.before) {
                secs += (a.stages[k].0 - b.stages[k].0).max(0.0);
                count += a.stages[k].1.saturating_sub(b.stages[k].1);
            }
            let ms = if count == 0 {
                0.0
            } else {
                1000.0 * secs / count as f64
            };
            (name.to_string(), ms)
        })
        .collect()
}

pub(super) fn row_of(
    protocol: Protocol,
    n: usize,
    workload: Workload,
    tx_bytes: usize,
    load: Load,
    o: &load::Outcome,
    ceiling_tps: f64,
) -> Row {
    let delta = |f: fn(&Counters) -> u64| -> Vec<u64> {
        o.after
            .iter()
            .zip(&o.before)
            .map(|(a, b)| f(a).saturating_sub(f(b)))
            .collect()
    };
    let blocks = delta(|c| c.height).into_iter().max().unwrap_or(0);
    let per_block = |total: u64| {
        if blocks == 0 {
            0.0
        } else {
            total as f64 / blocks as f64
        }
    };
    let frames: u64 = delta(|c| c.sent_frames).iter().sum();
    let bytes: u64 = delta(|c| c.sent_bytes).iter().sum();
    let fsyncs: u64 = delta(|c| c.fsyncs).iter().sum();
    let view_changes = delta(|c| c.view_changes).into_iter().max().unwrap_or(0);
    let committed_tps = o.committed as f64 / o.window_s;
    let pct = |q: f64| -> f64 {
        let v = &o.latencies_ms;
        if v.is_empty() {
            return 0.0;
        }
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    };
    Row {
        protocol: protocol.as_str().to_string(),
        validators: n,
        workload: workload.as_str().to_string(),
        tx_bytes,
        load: match load {
            Load::Open(_) => "open",
            Load::Closed(_) => "closed",
        }
        .to_string(),
        offered_rate: match load {
            Load::Open(r) => Some(r),
            Load::Closed(_) => None,
        },
        in_flight: match load {
            Load::Open(_) => None,
            Load::Closed(k) => Some(k),
        },
        window_s: o.window_s,
        submitted: o.submitted,
        committed: o.committed,
        failed: o.failed,
        committed_tps,
        latency_ms: Latency {
            p50: pct(0.50),
            p95: pct(0.95),
            p99: pct(0.99),
            max: o.latencies_ms.last().copied().unwrap_or(0.0),
        },
        view_changes,
        cpu_s_per_1k_tx: if o.committed == 0 {
            0.0
        } else {
            o.cpu_s * 1000.0 / o.committed as f64
        },
        blocks,
        msgs_per_block: per_block(frames),
        bytes_per_block: per_block(bytes),
        fsyncs_per_block: per_block(fsyncs) / n as f64,
        efficiency: (workload == Workload::Transfer && ceiling_tps > 0.0)
            .then(|| committed_tps / ceiling_tps),
        stages_ms: stage_means(o),
    }
}
