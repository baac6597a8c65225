//! The `vesper` binary: every capability is in the library; this only runs the command line.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
