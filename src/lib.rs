//! podbox: a small Linux container runtime with Kubernetes-style pod sandboxes.
//!
//! Layers, top to bottom (data flows one way):
//! - `cli`: command-line parsing and printing; thin.
//! - `pod`: pod sandboxes — names, manifests, namespace pins, the pause process, and turning a
//!   container of a pod into an OCI runtime spec.
//! - `container`: executes OCI runtime specs; knows nothing of pods.
//! - `image`: the image store — blobs, unpacked layers, names; pull, load, import; an image's
//!   config applied to a container. Knows nothing of pods.
//! - `network`: bridge, veth, IPAM, routes, NAT over netlink and nftables.
//! - `state`: the runtime root on disk — atomic JSON records and locks.
//! - `cri`: Kubernetes' CRI (gRPC) served from the pod and image layers; beside `cli`, on top.
//! - `trace`: opt-in step timing (PODBOX_TRACE=1) for profiling.
pub mod cli;
pub mod container;
pub mod cri;
pub mod image;
pub mod network;
pub mod oci;
pub mod pod;
pub mod state;
pub mod trace;
