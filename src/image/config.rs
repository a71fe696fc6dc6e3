//! An image's config applied to a container with Docker/Kubernetes semantics: the command
//! (`command`/--entrypoint replace Entrypoint, `args`/trailing args replace Cmd), the environment
//! (merged, the user's values win), the working directory, the user (a name resolved through the
//! image's own /etc/passwd and /etc/group) and the stop signal. Pure functions over the config
//! and the unpacked layer directories.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;

use super::{ImageError, Result};
use crate::container::env as process_env;

/// The argv: (`entrypoint` or the image's Entrypoint) followed by (`cmd`, or the image's Cmd
/// unless an entrypoint was given).
pub fn argv(image: &ImageConfiguration, entrypoint: Option<&[String]>, cmd: Option<&[String]>) -> Vec<String> {
    let cfg = image.config().clone().unwrap_or_default();
    let ep: Vec<String> = match entrypoint {
        Some(e) => e.to_vec(),
        None => cfg.entrypoint().clone().unwrap_or_default(),
    };
    let rest: Vec<String> = match (cmd, entrypoint) {
        (Some(c), _) => c.to_vec(),
        (None, Some(_)) => vec![],
        (None, None) => cfg.cmd().clone().unwrap_or_default(),
    };
    ep.into_iter().chain(rest).collect()
}

/// The image's environment with `user`'s variables set over it.
pub fn env(image: &ImageConfiguration, user: &[(String, String)]) -> Vec<(String, String)> {
    let mut vars = image.config().as_ref().and_then(|c| c.env().clone()).unwrap_or_default();
    process_env::merge(&mut vars, process_env::entries(user));
    vars.iter().map(|e| (process_env::key(e).to_string(), e.split_once('=').map_or("", |(_, v)| v).to_string())).collect()
}

pub fn working_dir(image: &ImageConfiguration) -> Option<String> {
    image.config().as_ref().and_then(|c| c.working_dir().clone()).filter(|w| !w.is_empty())
}

pub fn user(image: &ImageConfiguration) -> Option<String> {
    image.config().as_ref().and_then(|c| c.user().clone()).filter(|u| !u.is_empty())
}

/// The image's StopSignal as a number (SIGTERM when it has none).
pub fn stop_signal(image: &ImageConfiguration) -> Result<i32> {
    let Some(s) = image.config().as_ref().and_then(|c| c.stop_signal().clone()).filter(|s| !s.is_empty()) else { return Ok(libc::SIGTERM) };
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.to_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<nix::sys::signal::Signal>().map(|s| s as i32).map_err(|_| ImageError::Invalid(format!("image StopSignal {s:?} is not a signal")))
}

/// A file of the image as the container will see it: the topmost layer that has it, honouring
/// whiteouts and opaque directories. Only real directories and regular files are followed (no
/// symlinks), so nothing outside the layers is ever read.
fn find_in_layers(layers_top_first: &[PathBuf], rel: &[&str]) -> Option<PathBuf> {
    'layers: for layer in layers_top_first {
        let mut p = layer.clone();
        for (i, c) in rel.iter().enumerate() {
            p.push(c);
            let Ok(m) = fs::symlink_metadata(&p) else {
                // Missing here; an opaque parent hides the lower layers' copies.
                if is_opaque(p.parent().unwrap_or(layer)) {
                    return None;
                }
                continue 'layers;
            };
            if m.file_type().is_char_device() && m.rdev() == 0 {
                return None; // whiteout
            }
            let last = i + 1 == rel.len();
            if (last && !m.file_type().is_file()) || (!last && !m.file_type().is_dir()) {
                return None;
            }
        }
        return Some(p);
    }
    None
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else { return false };
    let mut buf = [0u8; 4];
    // SAFETY: c is NUL-terminated, buf is a live buffer of the given length.
    let n = unsafe { libc::lgetxattr(c.as_ptr(), c"trusted.overlay.opaque".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    n == 1 && buf[0] == b'y'
}

/// (uid, gid, additional gids) of `spec` (`user`, `uid`, `user:group`, `uid:gid`, ...) in the
/// image whose layers are given top first.
pub fn resolve_user(spec: &str, layers_top_first: &[PathBuf]) -> Result<(u32, u32, Vec<u32>)> {
    let read = |f: &str| find_in_layers(layers_top_first, &["etc", f]).and_then(|p| fs::read_to_string(p).ok()).unwrap_or_default();
    let passwd = read("passwd");
    let group = read("group");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // passwd: name:x:uid:gid:...
    let pw = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 4);
    let entry = pw.clone().find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => entry.as_ref().and_then(|f| f[2].parse().ok()).ok_or_else(|| ImageError::Invalid(format!("user {u:?} is not in the image's /etc/passwd")))?,
    };
    let gr: Vec<Vec<&str>> = group.lines().map(|l| l.split(':').collect::<Vec<_>>()).filter(|f| f.len() >= 3).collect();
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => gr.iter().find(|f| f[0] == g).and_then(|f| f[2].parse().ok()).ok_or_else(|| ImageError::Invalid(format!("group {g:?} is not in the image's /etc/group")))?,
        },
        None => entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    // Supplementary groups: those listing the user by name (only without an explicit group).
    let mut extra = Vec::new();
    if g.is_none()
        && let Some(name) = entry.as_ref().map(|f| f[0])
    {
        for f in &gr {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) && let Ok(id) = f[2].parse::<u32>() && id != gid && !extra.contains(&id) {
                extra.push(id);
            }
        }
    }
    Ok((uid, gid, extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> ImageConfiguration {
        ImageConfiguration::from_reader(json.as_bytes()).unwrap()
    }

    #[test]
    fn docker_command_semantics() {
        let c = cfg(r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Entrypoint":["/ep"],"Cmd":["a","b"],"Env":["A=1","PATH=/bin"]}}"#);
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(argv(&c, None, None), s(&["/ep", "a", "b"]));
        assert_eq!(argv(&c, None, Some(&s(&["x"]))), s(&["/ep", "x"]));
        assert_eq!(argv(&c, Some(&s(&["sh"])), None), s(&["sh"]));
        assert_eq!(argv(&c, Some(&s(&["sh"])), Some(&s(&["-c", "x"]))), s(&["sh", "-c", "x"]));
        let e = env(&c, &[("A".into(), "2".into()), ("B".into(), "3".into())]);
        assert_eq!(e, vec![("PATH".into(), "/bin".into()), ("A".into(), "2".into()), ("B".into(), "3".into())]);
        assert_eq!(stop_signal(&c).unwrap(), libc::SIGTERM);
    }

    #[test]
    fn users_resolve_through_the_top_layer() {
        let d = std::env::temp_dir().join(format!("podbox-user-{}", std::process::id()));
        let (lo, hi) = (d.join("lo"), d.join("hi"));
        fs::create_dir_all(lo.join("etc")).unwrap();
        fs::create_dir_all(hi.join("etc")).unwrap();
        fs::write(lo.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        fs::write(hi.join("etc/passwd"), "root:x:0:0::/:/bin/sh\napp:x:1000:1001::/:/bin/sh\n").unwrap();
        fs::write(lo.join("etc/group"), "root:x:0:\napp:x:1001:\nextra:x:2000:app\n").unwrap();
        let layers = vec![hi.clone(), lo.clone()];
        assert_eq!(resolve_user("app", &layers).unwrap(), (1000, 1001, vec![2000]));
        assert_eq!(resolve_user("1000", &layers).unwrap(), (1000, 1001, vec![2000]));
        assert_eq!(resolve_user("app:extra", &layers).unwrap(), (1000, 2000, vec![]));
        assert_eq!(resolve_user("5:6", &layers).unwrap(), (5, 6, vec![]));
        assert!(resolve_user("ghost", &layers).is_err());
        assert!(resolve_user("app", std::slice::from_ref(&lo)).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
