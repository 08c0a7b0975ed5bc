//! The per-peer inbound rate limit: two token buckets (frames and payload bytes) that a peer's
//! reader consults before reading each frame's payload.
//!
//! A frame that finds too few tokens is not dropped: the reader sleeps until the buckets would
//! be back at zero and only then reads on. While it sleeps nothing is read from that peer's
//! stream, so Yamux's window and then TCP's fill up and the sender's writer blocks. An honest
//! but bursty peer is therefore slowed down, never loses a consensus message, and a flooding
//! peer costs this node at most the configured rate of frames and bytes.
//!
//! The buckets may go into debt by one frame: a frame larger than what is left is admitted and
//! the reader then waits until the debt is paid. So any frame up to `max_frame_bytes` passes
//! whatever the burst, and over any interval of length T a peer gets at most
//! `burst + rate × T` frames (bytes) read.

use std::time::{Duration, Instant};

/// How fast one peer may make this node read frames. A rate of 0 turns that dimension off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundLimit {
    /// Sustained frames per second from one peer.
    pub frames_per_sec: u32,
    /// Frames one peer may send at once before the sustained rate applies.
    pub frame_burst: u32,
    /// Sustained payload bytes per second from one peer.
    pub bytes_per_sec: u64,
    /// Payload bytes one peer may send at once before the sustained rate applies.
    pub byte_burst: u64,
}

impl InboundLimit {
    /// 20,000 frames/s (bursts of 40,000) and 256 MiB/s (bursts of 512 MiB) per peer.
    ///
    /// Honest validators under `cairnd bench` load send a few thousand frames/s and up to tens
    /// of MB/s to each peer (BENCHMARKS.md: 20–70 frames per block, blocks of megabytes), so
    /// the sustained rates are 5–10 times above the busiest honest peer, and a burst holds
    /// more than a whole outgoing queue ([`super::DEFAULT_QUEUE_LEN`] frames,
    /// [`super::DEFAULT_QUEUE_BYTES`]) flushed at once after a reconnect. They bound what one
    /// Byzantine validator can make this node read and decode, not honest traffic.
    pub const DEFAULT: InboundLimit = InboundLimit {
        frames_per_sec: 20_000,
        frame_burst: 40_000,
        bytes_per_sec: 256 << 20,
        byte_burst: 512 << 20,
    };

    /// No limit at all.
    pub const OFF: InboundLimit = InboundLimit {
        frames_per_sec: 0,
        frame_burst: 0,
        bytes_per_sec: 0,
        byte_burst: 0,
    };
}

impl Default for InboundLimit {
    fn default() -> Self {
        InboundLimit::DEFAULT
    }
}

/// One token bucket; `rate == 0` means unlimited.
#[derive(Debug)]
struct Bucket {
    /// Tokens per second.
    rate: f64,
    burst: f64,
    /// Tokens available now; negative while in debt.
    level: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            burst,
            level: burst,
            last: now,
        }
    }

    /// Takes `n` tokens and returns how long to wait before the level is back at zero.
    fn take(&mut self, n: f64, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.level = (self.level + elapsed * self.rate).min(self.burst);
        self.level -= n;
        if self.level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.level / self.rate)
        }
    }
}

/// The frames and bytes buckets of one peer. It lives as long as the transport, so a peer
/// gains nothing by resetting its stream.
#[derive(Debug)]
pub(crate) struct Throttle {
    frames: Bucket,
    bytes: Bucket,
}

impl Throttle {
    pub(crate) fn new(limit: InboundLimit, now: Instant) -> Throttle {
        Throttle {
            frames: Bucket::new(
                f64::from(limit.frames_per_sec),
                f64::from(limit.frame_burst),
                now,
            ),
            bytes: Bucket::new(limit.bytes_per_sec as f64, limit.byte_burst as f64, now),
        }
    }

    /// Accounts one frame of `len` payload bytes arriving at `now`; returns how long the
    /// reader must wait before reading it (zero when within the limit).
    pub(crate) fn take(&mut self, len: usize, now: Instant) -> Duration {
        let frames = self.frames.take(1.0, now);
        let bytes = self.bytes.take(len as f64, now);
        frames.max(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(fps: u32, fburst: u32, bps: u64, bburst: u64) -> InboundLimit {
        InboundLimit {
            frames_per_sec: fps,
            frame_burst: fburst,
            bytes_per_sec: bps,
            byte_burst: bburst,
        }
    }

    fn assert_close(got: Duration, want: Duration) {
        assert!(
            got.abs_diff(want) < Duration::from_micros(1),
            "waited {got:?}, expected {want:?}"
        );
    }

    #[test]
    fn burst_passes_then_frames_are_paced_at_the_rate() {
        let t0 = Instant::now();
        let mut t = Throttle::new(limit(100, 10, 0, 0), t0);
        for i in 0..10 {
            assert_eq!(
                t.take(1, t0),
                Duration::ZERO,
                "frame {i} is within the burst"
            );
        }
        // The 11th is one token short: 10 ms at 100/s.
        assert_close(t.take(1, t0), Duration::from_millis(10));
        // Debt accumulates while the caller does not wait.
        assert_close(t.take(1, t0), Duration::from_millis(20));
        // 20 ms later the debt is paid; the next frame again owes 10 ms.
        let t1 = t0 + Duration::from_millis(20);
        assert_close(t.take(1, t1), Duration::from_millis(10));
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let t0 = Instant::now();
        let mut t = Throttle::new(limit(100, 10, 0, 0), t0);
        for _ in 0..10 {
            t.take(0, t0);
        }
        let later = t0 + Duration::from_secs(3600);
        let passed = (0..100).take_while(|_| t.take(0, later).is_zero()).count();
        assert_eq!(
            passed, 10,
            "an hour idle earns one burst, not 360,000 frames"
        );
    }

    #[test]
    fn bytes_bound_large_frames_and_a_frame_above_the_burst_passes_with_debt() {
        let t0 = Instant::now();
        let mut t = Throttle::new(limit(0, 0, 1000, 1000), t0);
        assert_eq!(t.take(600, t0), Duration::ZERO);
        // 200 bytes short at 1,000 B/s.
        assert_close(t.take(600, t0), Duration::from_millis(200));
        // A frame far above the burst is not refused: it waits its bytes off.
        let t1 = t0 + Duration::from_millis(200);
        assert_close(t.take(5000, t1), Duration::from_secs(5));
    }

    #[test]
    fn the_stricter_dimension_decides() {
        let t0 = Instant::now();
        // Frames allow 1,000/s; bytes allow 10 KB/s: 1 KB frames are held to 10/s.
        let mut t = Throttle::new(limit(1000, 1, 10_000, 1000), t0);
        assert_eq!(t.take(1000, t0), Duration::ZERO);
        assert_close(t.take(1000, t0), Duration::from_millis(100));
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let t0 = Instant::now();
        let mut t = Throttle::new(InboundLimit::OFF, t0);
        for _ in 0..100_000 {
            assert_eq!(t.take(16 << 20, t0), Duration::ZERO);
        }
    }

    /// Over any run of frames, the total admitted by time T is at most burst + rate × T.
    #[test]
    fn admitted_never_exceeds_burst_plus_rate_times_elapsed() {
        let t0 = Instant::now();
        let (rate, burst) = (500.0, 50.0);
        let mut t = Throttle::new(limit(500, 50, 0, 0), t0);
        let mut now = t0;
        for k in 1..=5000u32 {
            let wait = t.take(0, now);
            now += wait; // the reader sleeps, then reads the frame
            let elapsed = now.duration_since(t0).as_secs_f64();
            assert!(
                f64::from(k) <= burst + rate * elapsed + 1e-6,
                "frame {k} admitted at {elapsed} s"
            );
            // Sometimes the sender pauses.
            if k % 700 == 0 {
                now += Duration::from_millis(37);
            }
        }
    }
}
