//! Running many scenarios on all cores and summarising them (used by the `sim` command and
//! the default test run).

use super::{Report, Scenario, SimProtocol, run};

/// Totals over many runs.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub runs: u64,
    pub blocks: u64,
    pub view_changes: u64,
    /// State snapshots installed (Raft), and runs with at least one.
    pub snapshots: u64,
    pub runs_with_snapshots: u64,
    /// Raft membership changes told to the replicas, and runs with at least one.
    pub membership_changes: u64,
    pub runs_with_membership_changes: u64,
    /// Client reads answered ready (each checked for staleness), and refused.
    pub reads_served: u64,
    pub reads_failed: u64,
    /// BFT validator-set epochs reached, and epochs that added or removed a validator.
    pub epochs: u64,
    pub joins: u64,
    pub leaves: u64,
    /// (label, violations) of each failed run.
    pub failures: Vec<(String, Vec<String>)>,
}

impl Summary {
    /// Panics, listing every failed run and its violations, unless no run failed.
    pub fn assert_clean(&self, what: &str) {
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} runs violated an invariant:\n{}",
            self.failures.len(),
            self.runs,
            self.failures
                .iter()
                .map(|(l, v)| format!("  {l}: {}", v.join("; ")))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    pub fn add(&mut self, label: String, r: &Report) {
        self.runs += 1;
        self.blocks += r.height;
        self.view_changes += r.view_changes;
        self.snapshots += r.snapshots;
        self.runs_with_snapshots += u64::from(r.snapshots > 0);
        self.membership_changes += r.membership_changes;
        self.runs_with_membership_changes += u64::from(r.membership_changes > 0);
        self.reads_served += r.reads_served;
        self.reads_failed += r.reads_failed;
        self.epochs += r.epochs;
        self.joins += r.joins;
        self.leaves += r.leaves;
        if !r.violations.is_empty() {
            self.failures.push((label, r.violations.clone()));
        }
    }

    pub fn merge(&mut self, other: Summary) {
        self.runs += other.runs;
        self.blocks += other.blocks;
        self.view_changes += other.view_changes;
        self.snapshots += other.snapshots;
        self.runs_with_snapshots += other.runs_with_snapshots;
        self.membership_changes += other.membership_changes;
        self.runs_with_membership_changes += other.runs_with_membership_changes;
        self.reads_served += other.reads_served;
        self.reads_failed += other.reads_failed;
        self.epochs += other.epochs;
        self.joins += other.joins;
        self.leaves += other.leaves;
        self.failures.extend(other.failures);
    }
}

/// Runs `make(i)` for every `i` in `items` across the machine's cores; `label(i)` names a
/// run in failure reports; `tick` is called after each run (progress bars).
pub fn run_many<P: SimProtocol>(
    items: &[u64],
    make: impl Fn(u64) -> Scenario + Sync,
    label: impl Fn(u64) -> String + Sync,
    tick: impl Fn() + Sync,
) -> Summary {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    // Cases are taken one at a time from a shared counter, so no core idles while another
    // still holds a long list.
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.min(items.len()).max(1))
            .map(|_| {
                let (make, label, tick, next) = (&make, &label, &tick, &next);
                s.spawn(move || {
                    let mut sum = Summary::default();
                    while let Some(&i) =
                        items.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let r = run::<P>(make(i));
                        sum.add(label(i), &r);
                        tick();
                    }
                    sum
                })
            })
            .collect();
        let mut total = Summary::default();
        for h in handles {
            total.merge(h.join().expect("simulation thread panicked"));
        }
        total.failures.sort();
        total
    })
}
