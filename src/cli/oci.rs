//! The runc command line (OCI runtime mode): what podman/conmon and containerd call. Entered
//! when the binary's name ends in `runc` or `-oci` (e.g. a symlink `podbox-runc`), or as
//! `podbox oci …`; parses, calls the `oci` layer, prints, and reports errors also to `--log`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::oci::{self, CreateArgs, ExecArgs, Runtime};

#[derive(Parser, Debug)]
#[command(name = "podbox-runc", version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.2.0"), about = "podbox as an OCI runtime (the runc command-line contract)")]
pub struct OciCli {
    /// State directory of the containers.
    #[arg(long, global = true, default_value = "/run/podbox-runc")]
    pub root: PathBuf,
    /// Also write errors and warnings to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Accepted for compatibility; podbox has only the cgroupfs driver, so specs with a cgroup
    /// are refused under this flag.
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for compatibility.
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub cmd: OciCmd,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct CreateOpts {
    /// The bundle: a directory with config.json (default: the current directory).
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the master of the container's pty (process.terminal).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Enter the root with MS_MOVE + chroot instead of pivot_root (a root on ramfs).
    #[arg(long)]
    no_pivot: bool,
    /// Accepted; podbox creates no session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass descriptors 3 .. 3+N-1 on to the container's process (e.g. sockets).
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(Subcommand, Debug)]
// A subcommand's flags are defined only when it is invoked (cli::Cmd says why).
#[command(defer = true)]
pub enum OciCmd {
    /// Set a container up; its process waits for `start`.
    Create(CreateOpts),
    /// Start a created container's process.
    Start { id: String },
    /// Print a container's OCI state as JSON.
    State { id: String },
    /// Freeze every process of a running container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Signal a container's init (or all its processes).
    Kill {
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Remove a container (a running one needs --force).
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create and start; in the foreground, wait and exit with the container's status.
    Run {
        #[command(flatten)]
        c: CreateOpts,
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Run another process in a container.
    Exec {
        /// A JSON file with the OCI process to run.
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        #[arg(long, short = 'd')]
        detach: bool,
        #[arg(long, short = 't')]
        tty: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// KEY=VALUE, repeatable.
        #[arg(long, short = 'e')]
        env: Vec<String>,
        /// Pass descriptors 3 .. 3+N-1 on to the process.
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        /// Add a capability (e.g. CAP_NET_ADMIN) to the process; repeatable.
        #[arg(long = "cap", short = 'c')]
        caps: Vec<String>,
        /// Exec into a paused container too (the process stays frozen until resume).
        #[arg(long)]
        ignore_paused: bool,
        /// Join an existing sub-cgroup of the container's cgroup: [CONTROLLER[,…]:]PATH; repeatable.
        #[arg(long = "cgroup")]
        cgroups: Vec<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: Format,
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// List a container's processes.
    Ps {
        #[arg(long, short = 'f', value_enum, default_value = "table")]
        format: Format,
        id: String,
    },
    /// Print what this runtime supports (runtime-spec features document).
    Features,
    /// Write a default config.json.
    Spec {
        #[arg(long, short = 'b')]
        bundle: Option<PathBuf>,
        /// Refused: podbox has no user namespaces.
        #[arg(long)]
        rootless: bool,
    },
}

/// Parse the runc command line from `args` (args[0] is the program name) and run it; returns
/// the exit code. Errors are printed to stderr and, with --log, appended to the log.
pub fn main(args: Vec<String>) -> i32 {
    let cli = OciCli::parse_from(args);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            // runc's form: one record with the level and the message, on stderr and in --log.
            log_of(&cli).error(&message(&e));
            1
        }
    }
}

/// The error and its causes on one line, each cause once: podbox's errors already quote their
/// source's text, which `{:#}` would print a second time.
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if !msg.contains(&cause) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&cause);
        }
    }
    msg
}

fn log_of(cli: &OciCli) -> oci::log::Log {
    oci::log::Log { file: cli.log.clone(), json: matches!(cli.log_format, LogFormat::Json) }
}

fn create_args(c: &CreateOpts) -> CreateArgs {
    CreateArgs {
        id: c.id.clone(),
        bundle: c.bundle.clone(),
        pid_file: c.pid_file.clone(),
        console_socket: c.console_socket.clone(),
        preserve_fds: c.preserve_fds,
        no_pivot: c.no_pivot,
    }
}

pub fn run(cli: &OciCli) -> anyhow::Result<i32> {
    let rt = Runtime { root: cli.root.clone(), systemd_cgroup: cli.systemd_cgroup, log: log_of(cli) };
    match &cli.cmd {
        OciCmd::Create(c) => {
            rt.create(&create_args(c))?;
        }
        OciCmd::Start { id } => rt.start(id)?,
        OciCmd::Pause { id } => rt.set_paused(id, true)?,
        OciCmd::Resume { id } => rt.set_paused(id, false)?,
        OciCmd::State { id } => println!("{}", serde_json::to_string_pretty(&rt.state(id)?)?),
        OciCmd::Kill { all, id, signal } => rt.kill(id, oci::parse_signal(signal)?, *all)?,
        OciCmd::Delete { force, id } => rt.delete(id, *force)?,
        OciCmd::Run { c, detach } => return Ok(rt.run(&create_args(c), *detach)?),
        OciCmd::Exec { process, detach, tty, pid_file, console_socket, cwd, env, id, args, preserve_fds, caps, ignore_paused, cgroups } => {
            let a = ExecArgs {
                id: id.clone(),
                process_file: process.clone(),
                args: args.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                tty: *tty,
                detach: *detach,
                pid_file: pid_file.clone(),
                console_socket: console_socket.clone(),
                preserve_fds: *preserve_fds,
                caps: caps.clone(),
                ignore_paused: *ignore_paused,
                cgroups: cgroups.clone(),
            };
            return Ok(rt.exec(&a)?);
        }
        OciCmd::List { format, quiet } => print_list(&rt, *format, *quiet)?,
        OciCmd::Ps { format, id } => print_ps(&rt, *format, id)?,
        OciCmd::Features => println!("{}", serde_json::to_string_pretty(&oci::spec::features())?),
        OciCmd::Spec { bundle, rootless } => {
            if *rootless {
                anyhow::bail!("--rootless: podbox has no user namespaces, so it cannot write a rootless spec");
            }
            let dir = bundle.clone().unwrap_or_else(|| PathBuf::from("."));
            let path = dir.join("config.json");
            if path.exists() {
                anyhow::bail!("{} already exists", path.display());
            }
            let text = serde_json::to_string_pretty(&oci::spec::default_spec())?;
            std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(0)
}

/// `list`: every container, as a table, JSON (their OCI states) or ids alone.
fn print_list(rt: &Runtime, format: Format, quiet: bool) -> anyhow::Result<()> {
    let all = rt.list()?;
    match (format, quiet) {
        (_, true) => all.iter().for_each(|(r, _)| println!("{}", r.id)),
        (Format::Json, _) => {
            let v: Vec<_> = all.iter().map(|(r, s)| rt.state_json(r, *s)).collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        (Format::Table, _) => {
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|(r, s)| vec![r.id.clone(), rt.state_json(r, *s)["pid"].to_string(), s.as_str().into(), r.bundle.display().to_string(), r.created.clone()])
                .collect();
            super::table(&["ID", "PID", "STATUS", "BUNDLE", "CREATED"], &rows);
        }
    }
    Ok(())
}

/// `ps`: the container's processes, as a table with their command lines or JSON PIDs.
fn print_ps(rt: &Runtime, format: Format, id: &str) -> anyhow::Result<()> {
    let rec = rt.load(id)?;
    let pids = rt.processes(&rec);
    match format {
        Format::Json => println!("{}", serde_json::to_string(&pids)?),
        Format::Table => {
            let rows: Vec<Vec<String>> = pids
                .iter()
                .map(|p| {
                    let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    vec![p.to_string(), String::from_utf8_lossy(&cmd).replace('\0', " ").trim_end().to_string()]
                })
                .collect();
            super::table(&["PID", "CMD"], &rows);
        }
    }
    Ok(())
}
