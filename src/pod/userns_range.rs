//! Host id ranges of pods with a user namespace (`pod create --userns`, `hostUsers: false`):
//! each pod gets 65536 uids and gids of its own, recorded in its pod.json like an address of the
//! IPAM. The allocation is deterministic: the lowest block no recorded pod holds, so a range
//! is reused only after its pod is gone (a pod's record outlives all its processes and files).

use std::path::{Path, PathBuf};

use super::model::UserRange;
use super::{Ctx, PodError, Result};

/// Where pods' ranges start: far above the ranges /etc/subuid hands to users (100000 and up by
/// the hundreds of thousands), below the ids the kernel reserves at the top.
pub const BASE: u32 = 1 << 30;
/// Ids per pod: what Kubernetes gives a pod, enough for any image's users.
pub const SIZE: u32 = 65536;

/// The lowest free range among the pods recorded under `ctx`'s root. Call with the root lock held.
pub fn allocate(ctx: &Ctx) -> Result<UserRange> {
    let taken: std::collections::BTreeSet<u32> = ctx.pods()?.iter().filter_map(|p| p.user_range).map(|r| r.host_start).collect();
    lowest_free(&taken).ok_or_else(|| PodError::Invalid(format!("no free user namespace range: all {} ranges of {SIZE} ids from {BASE} are held by pods", (u32::MAX - BASE) / SIZE)))
}

fn lowest_free(taken: &std::collections::BTreeSet<u32>) -> Option<UserRange> {
    (0..(u32::MAX - BASE) / SIZE).map(|i| BASE + i * SIZE).find(|s| !taken.contains(s)).map(|host_start| UserRange { host_start, size: SIZE })
}

/// Where a pod keeps the idmapped views of its containers' image layers.
pub const IDMAPPED_DIR: &str = "idmapped";

/// The overlay layers of a container of `pod` (its image's `lowers`), made usable by the pod's
/// root: for a pod with a user namespace, each layer as an idmapped read-only view under the
/// pod's directory (shared by its containers, unmounted with the pod), and the container's
/// writable layer directories (in `cdir`) owned by the pod's root. Other pods: `lowers` as they are.
pub fn prepare_rootfs(pod: &super::model::PodRecord, pod_dir: &Path, cdir: &Path, lowers: &[PathBuf], on_tmpfs: bool) -> Result<Vec<PathBuf>> {
    let (Some(range), Some(pin)) = (pod.user_range, pod.namespaces.get("user")) else { return Ok(lowers.to_vec()) };
    let kernel = |what: String| move |e: std::io::Error| PodError::Kernel(format!("{what}: {e}"));
    let userns = std::fs::File::open(pin).map_err(kernel(format!("opening the pod's user namespace {}", pin.display())))?;
    let views = pod_dir.join(IDMAPPED_DIR);
    std::fs::create_dir_all(&views).map_err(kernel(format!("creating {}", views.display())))?;
    let mounted = super::sandbox::mounts_under(&views);
    let mut out = Vec::with_capacity(lowers.len());
    for layer in lowers {
        // One view per layer path, named by a digest of it.
        let at = views.join(format!("{:016x}", fnv1a(layer.as_os_str().as_encoded_bytes())));
        if !mounted.contains(&at) {
            std::fs::create_dir_all(&at).map_err(kernel(format!("creating {}", at.display())))?;
            crate::container::userns_mounts::mount_idmapped(layer, &at, &userns)?;
        }
        out.push(at);
    }
    let (uid, gid) = (Some(range.host_start), Some(range.host_start));
    let owned: &[&str] = if on_tmpfs { &["rw"] } else { &["upper", "work"] };
    for d in owned.iter().chain(&["merged"]) {
        let p = cdir.join(d);
        std::fs::create_dir_all(&p).map_err(kernel(format!("creating {}", p.display())))?;
        if *d != "merged" {
            std::os::unix::fs::chown(&p, uid, gid).map_err(kernel(format!("chown {} to the pod's root {}", p.display(), range.host_start)))?;
        }
    }
    Ok(out)
}

/// Unmount every idmapped layer view of the pod in `pod_dir` (before its files are removed: the
/// views are read-only, but nothing must reach into an image through them).
/// The views are the directory's entries (one per layer), unmounted by name: reading the mount
/// table instead costs O(mounts on the node) for every pod removed, O(pods²) for `pod rm --all`.
pub fn unmount_views(pod_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pod_dir.join(IDMAPPED_DIR)) else { return };
    for e in entries.flatten() {
        super::sandbox::unmount(&e.path());
    }
}

/// FNV-1a, 64 bits: a stable short name for a path.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_the_lowest_free_and_disjoint() {
        let mut taken = std::collections::BTreeSet::new();
        assert_eq!(lowest_free(&taken).unwrap().host_start, BASE);
        taken.insert(BASE);
        taken.insert(BASE + 2 * SIZE);
        assert_eq!(lowest_free(&taken).unwrap().host_start, BASE + SIZE);
        taken.insert(BASE + SIZE);
        assert_eq!(lowest_free(&taken).unwrap().host_start, BASE + 3 * SIZE);
    }
}
