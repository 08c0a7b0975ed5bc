fn main() -> std::process::ExitCode {
    node::cli::cairn::main()
}
