//! Running one CNI plugin the way the spec says a runtime does: the binary found in the plugin
//! path by its `type`, the `CNI_*` variables in its environment, its config on stdin, a result
//! or a JSON error object on stdout.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::CniError;

/// How long one plugin may run.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What is the same for every plugin of one operation on one attachment.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    /// The network namespace path; empty when it is gone (a DEL may then still free state).
    pub netns: &'a str,
    pub ifname: &'a str,
    /// `CNI_ARGS`: `K=V` pairs.
    pub args: &'a [(String, String)],
    pub bin_dirs: &'a [PathBuf],
}

/// The plugin binary named `ty` in the first of `dirs` that has it.
pub fn find_plugin(ty: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    dirs.iter().map(|d| d.join(ty)).find(|p| p.is_file()).ok_or_else(|| CniError::PluginNotFound {
        plugin: ty.to_string(),
        dirs: dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"),
    })
}

/// The config a plugin of the list gets on stdin (libcni's rules): its own object plus the
/// list's `name` and `cniVersion`, the previous plugin's result, and `runtimeConfig` holding
/// those runtime capabilities the plugin declares in `capabilities`.
pub fn plugin_stdin(plugin: &Value, name: &str, version: &str, prev: Option<&Value>, caps: &Value) -> Value {
    let mut conf = plugin.clone();
    let obj = conf.as_object_mut().expect("validated as an object");
    obj.insert("name".into(), json!(name));
    obj.insert("cniVersion".into(), json!(version));
    if let Some(p) = prev {
        obj.insert("prevResult".into(), p.clone());
    }
    let mut rc = serde_json::Map::new();
    if let (Some(declared), Some(have)) = (plugin.get("capabilities").and_then(Value::as_object), caps.as_object()) {
        for (k, on) in declared {
            if on.as_bool() == Some(true)
                && let Some(v) = have.get(k)
            {
                rc.insert(k.clone(), v.clone());
            }
        }
    }
    if !rc.is_empty() {
        obj.insert("runtimeConfig".into(), Value::Object(rc));
    }
    conf
}

/// Run plugin `ty` with `stdin`; its JSON output (None when it printed nothing, as DEL does).
pub fn invoke(call: &Call, ty: &str, stdin: &Value) -> Result<Option<Value>, CniError> {
    let bin = find_plugin(ty, call.bin_dirs)?;
    let fail = |msg: String| CniError::Exec { plugin: ty.to_string(), command: call.command.to_string(), msg };
    let cni_args: Vec<String> = call.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let path = std::env::join_paths(call.bin_dirs).map_err(|e| fail(format!("CNI_PATH: {e}")))?;
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_ARGS", cni_args.join(";"))
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {}: {e}", bin.display())))?;
    let input = serde_json::to_vec(stdin).expect("JSON serializes");
    // A plugin that exits without reading its config closes the pipe: its exit status tells.
    let _ = child.stdin.take().expect("piped").write_all(&input);
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    // A hung plugin must not hold the node (podbox runs it under the root lock): it is killed
    // after PLUGIN_TIMEOUT. Polled with try_wait, so the child is still unreaped (its PID cannot
    // be reused) when it is killed.
    let deadline = Instant::now() + PLUGIN_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("did not finish within {PLUGIN_TIMEOUT:?}; killed")));
            }
            Err(e) => return Err(fail(format!("waiting for {}: {e}", bin.display()))),
        }
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    let stdout = String::from_utf8_lossy(&out);
    if !status.success() {
        let stderr = String::from_utf8_lossy(&err);
        return Err(match serde_json::from_str::<Value>(stdout.trim()) {
            Ok(e) if e.get("code").is_some() || e.get("msg").is_some() => CniError::Plugin {
                plugin: ty.to_string(),
                command: call.command.to_string(),
                code: e["code"].as_u64().unwrap_or(0),
                msg: e["msg"].as_str().unwrap_or_default().to_string(),
                details: e["details"].as_str().unwrap_or_default().to_string(),
            },
            _ => fail(format!("{status}: {}{}", stdout.trim(), stderr.trim())),
        });
    }
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(stdout.trim()).map(Some).map_err(|e| fail(format!("its output is not JSON ({e}): {}", stdout.trim())))
}

/// Read a child's pipe to the end on a thread (both pipes at once, so neither can fill up).
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// The spec versions plugin `ty` supports (its VERSION answer).
pub fn versions(ty: &str, version: &str, bin_dirs: &[PathBuf]) -> Result<Vec<String>, CniError> {
    let call = Call { command: "VERSION", container_id: "", netns: "", ifname: "", args: &[], bin_dirs };
    let out = invoke(&call, ty, &json!({ "cniVersion": version }))?.unwrap_or_default();
    Ok(out["supportedVersions"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect())
}

/// Whether spec version `a` is at least `b` (dotted numbers).
pub fn version_at_least(a: &str, b: &str) -> bool {
    let parse = |s: &str| s.split('.').map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    parse(a) >= parse(b)
}

/// A path usable as `CNI_NETNS`: the pin if it still holds a network namespace (nsfs), else
/// empty — plugins then free what they can without entering it.
pub fn live_netns(path: &Path) -> String {
    match nix::sys::statfs::statfs(path) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => path.display().to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_gets_name_version_prev_and_declared_capabilities_only() {
        let plugin = json!({"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}});
        let caps = json!({"portMappings": [{"hostPort": 8080}], "bandwidth": {"ingressRate": 1}, "ips": ["10.0.0.9"]});
        let s = plugin_stdin(&plugin, "net", "1.0.0", Some(&json!({"ips": []})), &caps);
        assert_eq!(s["name"], "net");
        assert_eq!(s["cniVersion"], "1.0.0");
        assert_eq!(s["prevResult"], json!({"ips": []}));
        assert_eq!(s["runtimeConfig"], json!({"portMappings": [{"hostPort": 8080}]}));
        let none = plugin_stdin(&json!({"type": "bridge"}), "net", "1.0.0", None, &caps);
        assert!(none.get("runtimeConfig").is_none() && none.get("prevResult").is_none());
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_at_least("1.1.0", "1.0.0"));
        assert!(version_at_least("0.10.0", "0.4.0"));
        assert!(!version_at_least("0.3.1", "0.4.0"));
    }
}
