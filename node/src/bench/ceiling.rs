//! The ceiling for signed transfers on this machine, measured in the same run: how fast it
//! verifies ed25519 signatures (one at a time and in batches, under Cairn's one verification
//! rule) and hashes with sha256, and what that allows when every validator shares its cores.
//!
//! The model: every one of the n validators must check every transfer's signature once (in
//! batches) and hash its bytes a few times (transaction hash, block Merkle root, batch
//! digest: 3 passes counted), and all n run on the same `cores`. Nothing else is counted, so
//! the ceiling is an upper bound no protocol can reach: consensus messages, their
//! signatures, fsyncs, HTTP and execution all come on top.

use super::report::Ceiling;
use crypto::{Domain, SecretKey};
use std::time::Instant;

/// Signatures per batch in the batch measurement.
const BATCH: usize = 64;
/// sha256 passes over each transaction's bytes per validator.
const HASH_PASSES: f64 = 3.0;

/// Measures this machine and computes the ceiling for `validators` validators on `cores`
/// cores with transactions of `tx_bytes` bytes. Takes about a second.
pub fn measure(validators: usize, cores: usize, tx_bytes: usize) -> Ceiling {
    let key = SecretKey::from_seed([7; 32]);
    let msgs: Vec<Vec<u8>> = (0..BATCH * 8)
        .map(|i| format!("cairn bench ceiling message {i}").into_bytes())
        .collect();
    let sigs: Vec<_> = msgs
        .iter()
        .map(|m| key.sign(Domain::Transaction, m))
        .collect();
    let public = key.public();

    let verify_us = median(5, || {
        let t = Instant::now();
        for (m, s) in msgs.iter().zip(&sigs).take(BATCH * 2) {
            let ok = crypto::verify(Domain::Transaction, m, &public, s).is_ok();
            assert!(ok, "the ceiling's own signatures verify");
        }
        t.elapsed().as_secs_f64() * 1e6 / (BATCH * 2) as f64
    });
    let batch_verify_us = median(5, || {
        let t = Instant::now();
        for (m, s) in msgs.chunks(BATCH).zip(sigs.chunks(BATCH)) {
            let items: Vec<_> = m
                .iter()
                .zip(s)
                .map(|(m, s)| (Domain::Transaction, m.as_slice(), public, *s))
                .collect();
            let ok = crypto::verify_batch(&items).iter().all(|&b| b);
            assert!(ok, "the ceiling's own signatures verify");
        }
        t.elapsed().as_secs_f64() * 1e6 / msgs.len() as f64
    });
    let data = vec![0x5au8; 1 << 20];
    let sha256_mb_s = median(5, || {
        let t = Instant::now();
        for _ in 0..32 {
            std::hint::black_box(crypto::hash(&data));
        }
        32.0 / t.elapsed().as_secs_f64()
    });
    ceiling(
        validators,
        cores,
        tx_bytes,
        verify_us,
        batch_verify_us,
        sha256_mb_s,
    )
}

/// The ceiling from measured costs (see the module docs).
pub fn ceiling(
    validators: usize,
    cores: usize,
    tx_bytes: usize,
    verify_us: f64,
    batch_verify_us: f64,
    sha256_mb_s: f64,
) -> Ceiling {
    let hash_us = HASH_PASSES * tx_bytes as f64 / sha256_mb_s.max(1e-9);
    let per_tx_us = validators as f64 * (batch_verify_us + hash_us);
    let tps = cores as f64 * 1e6 / per_tx_us.max(1e-9);
    Ceiling {
        cores,
        validators,
        verify_us,
        batch_verify_us,
        sha256_mb_s,
        tps,
        formula: format!(
            "{cores} cores × 10⁶ / ({validators} validators × ({batch_verify_us:.1} µs batch \
             verify + {HASH_PASSES} × {tx_bytes} B sha256 = {hash_us:.2} µs)) per transfer"
        ),
    }
}

/// The median of `runs` measurements.
fn median(runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..runs).map(|_| f()).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_scales_with_cores_and_validators() {
        let c = ceiling(4, 2, 200, 40.0, 20.0, 1000.0);
        // 2e6 / (4 × (20 + 0.6)) = 24,271.8
        assert!((c.tps - 24_271.8).abs() < 1.0, "{}", c.tps);
        let more_cores = ceiling(4, 4, 200, 40.0, 20.0, 1000.0);
        assert!((more_cores.tps / c.tps - 2.0).abs() < 1e-9);
        let fewer = ceiling(3, 2, 200, 40.0, 20.0, 1000.0);
        assert!((fewer.tps / c.tps - 4.0 / 3.0).abs() < 1e-9);
        assert!(c.formula.contains("4 validators"), "{}", c.formula);
    }

    #[test]
    fn measured_costs_are_positive_and_batching_is_not_slower_per_signature() {
        let c = measure(4, 2, 200);
        assert!(c.verify_us > 0.0 && c.batch_verify_us > 0.0 && c.sha256_mb_s > 0.0);
        assert!(c.tps.is_finite() && c.tps > 0.0);
        // Batching amortises the scalar multiplications; allow noise, not a reversal.
        assert!(c.batch_verify_us < c.verify_us * 1.5, "{c:?}");
    }
}
