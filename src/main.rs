//! The podbox binary: parse the command line, run it, print errors, choose the exit code
//! (0 ok, 1 runtime error, 2 usage error; `run` in the foreground and `exec` exit with the
//! container's own status).
use clap::Parser;

fn main() {
    let cli = podbox::cli::Cli::parse();
    let code = match podbox::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podbox: {e:#}");
            e.downcast_ref::<podbox::pod::PodError>().map(|p| p.exit_code()).unwrap_or(1)
        }
    };
    std::process::exit(code);
}
