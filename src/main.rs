// TEMPORARY entry point of the `net` branch, for testing the network layer alone; replaced on merge.
use clap::Parser;

#[derive(clap::Parser)]
struct Cli {
    #[arg(long, env = "PODBOX_ROOT", default_value = "/run/podbox")]
    root: std::path::PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    Pause,
    #[command(subcommand)]
    Network(podbox::cli::network::NetworkCmd),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Pause => {
            eprintln!("podbox: pause: {}", podbox::pod::pause::exec());
            1
        }
        Cmd::Network(c) => podbox::cli::network::run(&cli.root, c).unwrap_or_else(|e| {
            eprintln!("podbox: {e:#}");
            1
        }),
    };
    std::process::exit(code);
}
