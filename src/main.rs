//! The `taskbench` command; everything lives in the library (`taskbench::cli`).

fn main() -> std::process::ExitCode {
    taskbench::cli::main()
}
