//! Exec over `v4.channel.k8s.io`: the client opens an `error` stream and, as asked, `stdin`,
//! `stdout`, `stderr` (not with a tty) and `resize` (with a tty); the command runs through
//! `podbox exec` (the container layer's exec path: the container's namespaces, cgroup, user,
//! capabilities and seccomp) with pipes or a pty from the container's devpts; its exit is
//! reported on the error stream as a metav1.Status (NonZeroExitCode with an ExitCode cause).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::session::{Session, Stream, Writer};
use super::{Env, pty};

/// How long the client has to open the streams it announced.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);
/// After the command ended, how long its output may still drain (a daemon it left behind may
/// hold the pipes or the terminal open forever).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// An Exec as the RPC accepted it.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub pod_id: String,
    pub container: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl ExecRequest {
    fn expected_streams(&self) -> Vec<&'static str> {
        expected_streams(self.stdin, self.stdout, self.stderr, self.tty)
    }
}

/// The streams client-go opens for these options (exec and attach alike): stderr is part of
/// stdout on a terminal, and a terminal has a resize stream.
pub fn expected_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Vec<&'static str> {
    let mut v = vec!["error"];
    for (want, kind) in [(stdin, "stdin"), (stdout, "stdout"), (stderr && !tty, "stderr"), (tty, "resize")] {
        if want {
            v.push(kind);
        }
    }
    v
}

pub async fn serve(mut session: Session, r: ExecRequest, env: Env) {
    let mut streams = collect_streams(&mut session, &r.expected_streams()).await;
    let Some(error) = streams.remove("error") else {
        return session.close().await;
    };
    let w = session.writer.clone();
    // The client leaving (its connection closed) ends the command, as it does for the kubelet.
    let mut later = std::mem::replace(&mut session.streams, mpsc::channel(1).1);
    let gone = Box::pin(async move { while later.recv().await.is_some() {} });
    let result = if r.tty { run_tty(&r, &env, streams, &w, gone).await } else { run_pipes(&r, &env, streams, &w, gone).await };
    let _ = w.data(error.id, status_json(&r.cmd, result).as_bytes()).await;
    let _ = w.fin(error.id).await;
    session.close().await;
}

/// Wait for the streams of `kinds` (or whatever arrived when the client stops opening them).
pub async fn collect_streams(session: &mut Session, kinds: &[&str]) -> HashMap<String, Stream> {
    let mut got = HashMap::new();
    let deadline = tokio::time::Instant::now() + STREAMS_TIMEOUT;
    while kinds.iter().any(|k| !got.contains_key(*k)) {
        match tokio::time::timeout_at(deadline, session.streams.recv()).await {
            Ok(Some(s)) => {
                got.insert(s.kind().to_string(), s);
            }
            Ok(None) | Err(_) => break,
        }
    }
    got
}

/// The metav1.Status the v4 protocol reports a command's end with.
pub fn status_json(cmd: &[String], result: Result<i32, String>) -> String {
    let status = match result {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(code) => serde_json::json!({
            "metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": format!("command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"),
            "details": {"causes": [{"reason": "ExitCode", "message": (code & 0xff).to_string()}]},
        }),
        Err(msg) => serde_json::json!({"metadata": {}, "status": "Failure", "reason": "InternalError", "message": msg}),
    };
    status.to_string()
}

fn podbox_exec(r: &ExecRequest, env: &Env) -> Result<tokio::process::Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding podbox's executable: {e}"))?;
    let mut c = tokio::process::Command::new(exe);
    c.args(&env.globals).arg("exec").args([&r.pod_id, &r.container]).arg("--").args(&r.cmd).kill_on_drop(true);
    Ok(c)
}

/// The exit code of `podbox exec` (which is its command's), 128+N for a signal.
fn code_of(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9))
}

type Gone = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Wait for `podbox exec` to end; if the client goes first, end it: SIGTERM, which it forwards
/// to the command in the container, then SIGKILL.
async fn wait_or_end(child: &mut tokio::process::Child, gone: Gone) -> Result<i32, String> {
    tokio::select! {
        s = child.wait() => return s.map(code_of).map_err(|e| format!("waiting for podbox exec: {e}")),
        _ = gone => {}
    }
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) of our own child, not reaped yet.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(2), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    Err("the client closed the connection".into())
}

async fn run_pipes(r: &ExecRequest, env: &Env, mut streams: HashMap<String, Stream>, w: &Writer, gone: Gone) -> Result<i32, String> {
    let piped = |s: Option<&Stream>| if s.is_some() { Stdio::piped() } else { Stdio::null() };
    let (stdin, stdout, stderr) = (streams.remove("stdin"), streams.remove("stdout"), streams.remove("stderr"));
    let mut cmd = podbox_exec(r, env)?;
    cmd.stdin(piped(stdin.as_ref())).stdout(piped(stdout.as_ref())).stderr(piped(stderr.as_ref()));
    let mut child = cmd.spawn().map_err(|e| format!("starting podbox exec: {e}"))?;
    let feeder = match (stdin, child.stdin.take()) {
        (Some(s), Some(pipe)) => Some(tokio::spawn(feed(s.data, pipe))),
        _ => None,
    };
    let mut pumps = Vec::new();
    if let (Some(s), Some(p)) = (stdout, child.stdout.take()) {
        pumps.push(tokio::spawn(pump(p, s.id, w.clone())));
    }
    if let (Some(s), Some(p)) = (stderr, child.stderr.take()) {
        pumps.push(tokio::spawn(pump(p, s.id, w.clone())));
    }
    let result = wait_or_end(&mut child, gone).await;
    if result.is_ok() {
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, futures_util::future::join_all(pumps.iter_mut())).await;
    }
    // Pumps still running hold pipes a leftover daemon keeps open: they go with the exec.
    pumps.iter().chain(feeder.as_ref()).for_each(|t| t.abort());
    result
}

/// The client's stdin into the command; closing it at the client's end closes the command's.
async fn feed(mut data: mpsc::Receiver<Vec<u8>>, mut to: impl AsyncWrite + Unpin) {
    while let Some(d) = data.recv().await {
        if to.write_all(&d).await.is_err() {
            break;
        }
    }
}

/// A command's output onto stream `id`, ended with FIN.
async fn pump(mut from: impl AsyncRead + Unpin, id: u32, w: Writer) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.data(id, &buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = w.fin(id).await;
}

async fn run_tty(r: &ExecRequest, env: &Env, mut streams: HashMap<String, Stream>, w: &Writer, gone: Gone) -> Result<i32, String> {
    let ctx = env.ctx.clone();
    let (pod_id, name) = (r.pod_id.clone(), r.container.clone());
    let pid = tokio::task::spawn_blocking(move || -> Result<i32, String> {
        let pod = super::super::find_pod(&ctx, &pod_id).map_err(|e| e.to_string())?;
        let st = ctx.container_status(&pod, &name).map_err(|e| e.to_string())?.ok_or_else(|| format!("container {name} is gone"))?;
        st.record.pid.map(|p| p.pid).ok_or_else(|| format!("container {name} is not running"))
    })
    .await
    .map_err(|e| e.to_string())??;
    let (master, slave) = pty::open_in(pid).map_err(|e| e.to_string())?;
    let mut cmd = podbox_exec(r, env)?;
    let dup = |f: &OwnedFd| f.try_clone().map_err(|e| format!("duplicating the pty: {e}"));
    cmd.stdin(dup(&slave)?).stdout(dup(&slave)?).stderr(slave);
    // SAFETY: the hook only calls async-signal-safe functions (setsid, ioctl).
    unsafe { cmd.pre_exec(pty::make_controlling_terminal) };
    let mut child = cmd.spawn().map_err(|e| format!("starting podbox exec: {e}"))?;
    drop(cmd); // our copies of the slave: the terminal ends when the command's do
    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).map_err(|e| e.to_string())?;
    // SAFETY: an OwnedFd's descriptor stays open and the same until the AsyncFd drops it.
    let master = std::sync::Arc::new(unsafe { AsyncFd::register(master) }.map_err(|e| e.to_string())?);
    let mut helpers = Vec::new();
    if let Some(s) = streams.remove("resize") {
        let fd = master.get_ref().as_raw_fd();
        helpers.push(tokio::spawn(for_each_size(s.data, move |w, h| pty::resize(fd, w, h))));
    }
    if let Some(s) = streams.remove("stdin") {
        helpers.push(tokio::spawn(feed_pty(s.data, master.clone())));
    }
    let output = streams.remove("stdout").map(|s| tokio::spawn(pump_pty(master.clone(), s.id, w.clone())));
    let result = wait_or_end(&mut child, gone).await;
    if let Some(mut o) = output {
        if result.is_ok() {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, &mut o).await;
        }
        // Our last hold on the master: closing it hangs up what still uses the terminal.
        o.abort();
    }
    helpers.iter().for_each(|h| h.abort());
    result
}

/// Terminal sizes, a stream of JSON objects `{"Width":W,"Height":H}`, applied as they come.
pub async fn for_each_size(mut data: mpsc::Receiver<Vec<u8>>, mut apply: impl FnMut(u16, u16)) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let mut buf = Vec::new();
    while let Some(d) = data.recv().await {
        buf.extend_from_slice(&d);
        let mut sizes = serde_json::Deserializer::from_slice(&buf).into_iter::<Size>();
        let mut used = 0;
        while let Some(Ok(s)) = sizes.next() {
            apply(s.width, s.height);
            used = sizes.byte_offset();
        }
        buf.drain(..used);
    }
}

async fn feed_pty(mut data: mpsc::Receiver<Vec<u8>>, master: std::sync::Arc<AsyncFd<OwnedFd>>) {
    while let Some(d) = data.recv().await {
        let mut rest = d.as_slice();
        while !rest.is_empty() {
            let Ok(mut guard) = master.writable().await else { return };
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), rest).map_err(std::io::Error::from)) {
                Ok(Ok(n)) => rest = &rest[n..],
                Ok(Err(_)) => return,
                Err(_would_block) => continue,
            }
        }
    }
}

/// The terminal's output onto stream `id`; it ends (EIO) when the last slave is closed.
async fn pump_pty(master: std::sync::Arc<AsyncFd<OwnedFd>>, id: u32, w: Writer) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let Ok(mut guard) = master.readable().await else { break };
        match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(std::io::Error::from)) {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                if w.data(id, &buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(_would_block) => continue,
        }
    }
    let _ = w.fin(id).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_become_v4_statuses_client_go_decodes() {
        let ok: serde_json::Value = serde_json::from_str(&status_json(&[], Ok(0))).unwrap();
        assert_eq!(ok["status"], "Success");
        let bad: serde_json::Value = serde_json::from_str(&status_json(&["false".into()], Ok(3))).unwrap();
        assert_eq!((bad["status"].as_str(), bad["reason"].as_str()), (Some("Failure"), Some("NonZeroExitCode")));
        assert_eq!(bad["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));
        let err: serde_json::Value = serde_json::from_str(&status_json(&[], Err("no such container".into()))).unwrap();
        assert_eq!((err["status"].as_str(), err["message"].as_str()), (Some("Failure"), Some("no such container")));
    }

    #[test]
    fn a_tty_exec_expects_resize_and_no_stderr() {
        let r = ExecRequest { pod_id: "p".into(), container: "c".into(), cmd: vec!["sh".into()], tty: true, stdin: true, stdout: true, stderr: true };
        assert_eq!(r.expected_streams(), ["error", "stdin", "stdout", "resize"]);
        let r = ExecRequest { tty: false, stdin: false, ..r };
        assert_eq!(r.expected_streams(), ["error", "stdout", "stderr"]);
    }
}
