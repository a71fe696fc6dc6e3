//! `exec`: the process to run in a container assembled from a process file or the command
//! line (with `--cap` and `--cgroup`), then spawned by the container layer.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use crate::container::{self, Stdio, cgroups, terminal};

use super::store::write_pid_file;
use super::{OciError, Result, Runtime, Status, io};

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecArgs {
    pub id: String,
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--cap`: capabilities added to the process's bounding, effective and permitted sets.
    pub caps: Vec<String>,
    /// `--ignore-paused`: exec into a paused container too (the process is frozen with it
    /// until `resume`).
    pub ignore_paused: bool,
    /// `--cgroup [CONTROLLER[,CONTROLLER]:]PATH`: join this existing sub-cgroup of the
    /// container's cgroup (in the hierarchies of the controllers named, or in all).
    pub cgroups: Vec<String>,
}

impl Runtime {
    /// `exec`: another process in a created or running container; its exit code, or 0 when
    /// detached (its PID then goes to the pid file).
    pub fn exec(&self, a: &ExecArgs) -> Result<i32> {
        let rec = self.load(&a.id)?;
        let status = self.status(&rec);
        if status == Status::Paused && !a.ignore_paused {
            return Err(OciError::WrongState { id: a.id.clone(), status: status.as_str().into(), msg: "cannot exec in it (use --ignore-paused to exec anyway; the process then waits frozen for resume)".into() });
        }
        if !matches!(status, Status::Created | Status::Running | Status::Paused) {
            return Err(OciError::WrongState { id: a.id.clone(), status: status.as_str().into(), msg: "cannot exec in it".into() });
        }
        let procs: Vec<PathBuf> = exec_cgroups(&rec.cgroup, &a.cgroups)?.iter().map(|d| d.join("cgroup.procs")).collect();
        let spec = self.spec_of(&a.id)?;
        let process = match &a.process_file {
            Some(f) => {
                let text = fs::read_to_string(f).map_err(io(format!("reading {}", f.display())))?;
                let de = &mut serde_json::Deserializer::from_str(&text);
                serde_path_to_error::deserialize::<_, Process>(de).map_err(|e| OciError::Invalid(format!("{}: invalid process at {}: {}", f.display(), e.path(), e.inner())))?
            }
            None => {
                if a.args.is_empty() {
                    return Err(OciError::Invalid("exec needs a command (after the container id) or --process FILE".into()));
                }
                let mut p = spec.process().clone().unwrap_or_default();
                p.set_args(Some(a.args.clone()));
                let mut env = p.env().clone().unwrap_or_default();
                container::env::merge(&mut env, a.env.iter().cloned());
                p.set_env(Some(env));
                if let Some(c) = &a.cwd {
                    p.set_cwd(c.clone());
                }
                p.set_terminal(Some(a.tty));
                p
            }
        };
        let process = add_caps(process, &a.caps)?;
        let slave = match (process.terminal().unwrap_or(false), &a.console_socket) {
            (true, Some(sock)) => Some(terminal::open_for(sock, terminal::console_size(&process))?),
            (true, None) => return Err(OciError::Invalid("a terminal was asked for: --console-socket is required to hand it over".into())),
            _ => None,
        };
        let stdio = match &slave {
            Some(s) => Stdio::Terminal(s.as_raw_fd()),
            None => Stdio::Inherit,
        };
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
        let init = rec.pid.expect("created/running has a pid");
        match container::exec::spawn(init, &process, seccomp, &procs, &stdio, a.detach, a.preserve_fds)? {
            container::exec::Spawned::Detached(p) => {
                if let Some(pf) = &a.pid_file {
                    write_pid_file(pf, p.pid)?;
                }
                Ok(0)
            }
            container::exec::Spawned::Exited(code) => Ok(code),
        }
    }
}

/// `exec --cap`: each capability (`CAP_NET_ADMIN` or `NET_ADMIN`) added to the bounding,
/// effective and permitted sets, as runc does; not to inheritable or ambient, which would hand
/// it on to programs the process executes as another user. A process without a capabilities
/// section keeps all of the runtime's already.
fn add_caps(mut process: Process, names: &[String]) -> Result<Process> {
    if names.is_empty() {
        return Ok(process);
    }
    let Some(mut c) = process.capabilities().clone() else { return Ok(process) };
    for name in names {
        let full = name.to_ascii_uppercase();
        let full = if full.starts_with("CAP_") { full } else { format!("CAP_{full}") };
        let cap: oci_spec::runtime::Capability =
            serde_json::from_value(serde_json::Value::String(full.clone())).map_err(|_| OciError::Invalid(format!("--cap {name}: unknown capability {full}")))?;
        let with = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut v = set.clone().unwrap_or_default();
            v.insert(cap);
            Some(v)
        };
        c.set_bounding(with(c.bounding()));
        c.set_effective(with(c.effective()));
        c.set_permitted(with(c.permitted()));
    }
    process.set_capabilities(Some(c));
    Ok(process)
}

/// The cgroup directories an exec'd process joins: the container's, or with `--cgroup` the
/// existing sub-cgroups named. `[CONTROLLER[,CONTROLLER]:]PATH`, PATH relative to the
/// container's cgroup; with controllers only their hierarchies' directories change.
fn exec_cgroups(container: &[PathBuf], specs: &[String]) -> Result<Vec<PathBuf>> {
    let mut dirs = container.to_vec();
    if specs.is_empty() {
        return Ok(dirs);
    }
    let ctrls: Vec<Vec<String>> = container.iter().map(|d| cgroups::controllers_of(d)).collect::<std::result::Result<_, _>>()?;
    for spec in specs {
        let (named, path) = match spec.split_once(':') {
            Some((c, p)) => (c.split(',').map(str::to_string).collect::<Vec<_>>(), p),
            None => (vec![], spec.as_str()),
        };
        let rel = Path::new(path.trim_start_matches('/'));
        if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(OciError::Invalid(format!("--cgroup {spec}: the path must name a sub-cgroup of the container's cgroup, without '..'")));
        }
        if container.is_empty() {
            return Err(OciError::Invalid(format!("--cgroup {spec}: the container has no cgroup")));
        }
        for n in &named {
            if !ctrls.iter().any(|c| c.contains(n)) {
                return Err(OciError::Invalid(format!("--cgroup {spec}: the container has no cgroup with controller {n:?} (cgroup v2 takes a plain PATH)")));
            }
        }
        for (i, base) in container.iter().enumerate() {
            if !named.is_empty() && !ctrls[i].iter().any(|c| named.contains(c)) {
                continue;
            }
            let d = base.join(rel);
            if !d.is_dir() {
                return Err(OciError::Invalid(format!("--cgroup {spec}: sub-cgroup {} does not exist", d.display())));
            }
            dirs[i] = d;
        }
    }
    Ok(dirs)
}
