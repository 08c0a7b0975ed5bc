//! Test support shared by Cairn's integration tests, the simulator and the crash tests.

pub mod cluster;
pub mod sim;
pub mod workload;

use ledger::{Address, ChainBinding};

/// The chain and workload used by the store crash test's child and its parent, so the
/// parent can replay exactly what the child committed.
pub fn crash_workload(seed: u64) -> (ChainBinding, Vec<(Address, u64)>, workload::Transfers) {
    let chain = ChainBinding {
        chain_id: "crash-test".into(),
        genesis_hash: crypto::hash(&seed.to_le_bytes()),
    };
    let keys = workload::keys(seed, 8);
    let alloc = workload::allocation(&keys, 1_000_000);
    let gen_ = workload::Transfers::new(seed, keys, chain.clone());
    (chain, alloc, gen_)
}
