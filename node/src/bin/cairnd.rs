/// mimalloc returns freed memory to the OS: a validator that built a large genesis tree does
/// not keep the peak resident (see `Cargo.toml`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    node::cli::cairnd::main()
}
