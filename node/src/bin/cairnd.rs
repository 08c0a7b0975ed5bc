fn main() -> std::process::ExitCode {
    node::cli::cairnd::main()
}
