//! The podbox binary: parse the command line, run it, print errors, choose the exit code
//! (0 ok, 1 runtime error, 2 usage error; `run` in the foreground and `exec` exit with the
//! container's own status).
use clap::Parser;

/// Invoked as `…runc` or `…-oci` (e.g. a symlink `podbox-runc`), podbox speaks the runc command
/// line that podman/conmon and containerd use; see README "OCI runtime mode".
fn oci_name(argv0: &str) -> bool {
    let name = std::path::Path::new(argv0).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.ends_with("runc") || name.ends_with("-oci")
}

/// Invoked as `podbox-cni` (a symlink a container engine's CNI plugin path holds), podbox is a
/// CNI plugin; see README "CNI".
fn cni_name(argv0: &str) -> bool {
    std::path::Path::new(argv0).file_name().is_some_and(|n| n == "podbox-cni")
}

/// The subcommand of command line `args` (without the program name): its first word that is not
/// an option, skipping the values of the global options in `valued`.
fn subcommand<'a>(args: &'a [String], valued: &[&str]) -> Option<&'a str> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if valued.contains(&a.as_str()) {
            it.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Whether the runc command line `args` (without the program name) starts or enters a
/// container: its subcommand, after the global options.
fn oci_enters_container(args: &[String]) -> bool {
    matches!(subcommand(args, &["--root", "--log", "--log-format"]), Some("create" | "run" | "exec"))
}

/// Whether podbox's own command line `args` (without the program name) names `run` or `exec`,
/// the commands that start or enter a container, as its subcommand: a look at the words only,
/// skipping the global options' values, so that the re-execution from the sealed copy happens
/// before clap builds and parses the whole command tree (~0.5 ms), not after it and then again
/// in the copy. Only a shortcut: a miss is sealed after parsing, and a false hit (`--help run`)
/// costs nothing but the re-execution.
fn enters_container_early(args: &[String]) -> bool {
    matches!(subcommand(args, &["--root", "--rootfs", "--images"]), Some("run" | "exec"))
}

/// Commands that start or enter a container run from a sealed copy of the executable (see
/// `container::sealed_exe`); the others (state, ps, kill, …) need not pay for the copy.
fn seal_or_exit() {
    if let Err(e) = podbox::container::sealed_exe::ensure() {
        eprintln!("podbox: {e}");
        std::process::exit(1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.first().is_some_and(|a| cni_name(a)) {
        std::process::exit(podbox::network::cni::plugin::main());
    }
    if args.first().is_some_and(|a| oci_name(a)) {
        if oci_enters_container(&args[1..]) {
            seal_or_exit();
        }
        std::process::exit(podbox::cli::oci::main(args));
    }
    let sealed = enters_container_early(args.get(1..).unwrap_or_default());
    if sealed {
        seal_or_exit();
    }
    let cli = podbox::cli::Cli::parse();
    {
        use podbox::cli::{Cmd, pod::PodCmd};
        if !sealed && match &cli.cmd {
            Cmd::Run(_) | Cmd::Exec(_) | Cmd::Pod(PodCmd::Apply { .. }) => true,
            // The CRI server's workers start containers (the server itself enters none, and
            // spawns its workers and `exec`s from the installed binary).
            Cmd::Cri(a) => a.worker && !a.worker_outside_containers,
            Cmd::Oci { args } => oci_enters_container(args),
            _ => false,
        } {
            seal_or_exit();
        }
    }
    let code = match podbox::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podbox: {e:#}");
            e.downcast_ref::<podbox::pod::PodError>().map(|p| p.exit_code()).unwrap_or(1)
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// The subcommand is found past global options and their values, for both command lines.
    #[test]
    fn the_subcommand_is_found_past_the_global_options() {
        assert!(enters_container_early(&words("--root /r --rootfs /fs run --pod p -- true")));
        assert!(!enters_container_early(&words("--root run pod create p")));
        assert!(!enters_container_early(&words("pod exec")));
        assert!(oci_enters_container(&words("--root /r --log l --systemd-cgroup exec c ls")));
        assert!(!oci_enters_container(&words("--log create state c")));
        assert!(!oci_enters_container(&words("--debug")));
    }
}
