//! Child process for the store crash test: commits blocks of transfers to a RedbStore
//! forever, printing "committed H STATE_ROOT" after each commit returns. The parent kills
//! it with SIGKILL at a random moment and checks what survived.
//!
//! Usage: store_crash_writer DB_PATH SEED

use ledger::{BlockInput, Ledger};
use node::store::RedbStore;
use std::io::Write;
use tests::workload;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 3, "usage: store_crash_writer DB_PATH SEED");
    let seed: u64 = args[2].parse()?;
    let (chain, alloc, mut gen_) = tests::crash_workload(seed);
    let store = RedbStore::open(std::path::Path::new(&args[1]))?;
    let mut ledger = Ledger::open(store, chain, &alloc)?;
    let proposer = workload::keys(seed, 1)[0].public();
    let mut out = std::io::stdout().lock();
    loop {
        let h = ledger.height() + 1;
        let txs = (0..(h % 7 + 1)).map(|_| gen_.next_tx()).collect();
        let input = BlockInput {
            proposer,
            view: h,
            timestamp_ms: h,
            txs,
            certificate: h.to_le_bytes().to_vec(),
            batch_sizes: vec![],
        };
        let (block, _) = ledger.commit(input)?;
        writeln!(
            out,
            "committed {} {}",
            block.header.height, block.header.state_root
        )?;
        out.flush()?;
    }
}
