//! `podbox image pull | load | import | ls | inspect | rm | prune`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::image::registry::{self, Progress, PullOptions};
use crate::image::store::Store;
use crate::image::{import, load};
use crate::pod::Ctx;

#[derive(Subcommand, Debug)]
// A subcommand's flags are defined only when it is invoked (cli::Cmd says why).
#[command(defer = true)]
pub enum ImageCmd {
    /// Pull an image from a registry (Docker Registry HTTP API v2).
    Pull {
        reference: String,
        /// USER:PASSWORD for the registry.
        #[arg(long)]
        creds: Option<String>,
        /// A docker-style auth.json (default: $REGISTRY_AUTH_FILE, then
        /// $XDG_RUNTIME_DIR/containers/auth.json, then ~/.docker/config.json).
        #[arg(long, env = "REGISTRY_AUTH_FILE")]
        authfile: Option<PathBuf>,
        /// Mirrors and insecure registries, in the containers-registries.conf(5) format.
        #[arg(long, env = "PODBOX_REGISTRIES_CONF")]
        registries_conf: Option<PathBuf>,
        /// One JSON object per event on stdout.
        #[arg(long)]
        json: bool,
        /// No progress output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Load images from an OCI image layout (directory or tar) or a `docker save` archive.
    Load {
        #[arg(short = 'i', long = "input")]
        input: PathBuf,
        /// Name for an image the archive does not name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Make a plain directory a one-layer image.
    Import { dir: PathBuf, name: String },
    /// List images.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// An image's names, digests, layers and config as JSON.
    Inspect { image: String },
    /// Remove image names (then `prune` frees their layers).
    Rm {
        /// Also an image that containers use.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        names: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove layers and blobs that no image and no container needs.
    Prune {
        #[arg(long)]
        json: bool,
    },
}

fn size(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

pub fn run(ctx: &Ctx, cmd: &ImageCmd) -> anyhow::Result<i32> {
    let store = ctx.image_store()?;
    match cmd {
        ImageCmd::Pull { reference, creds, authfile, registries_conf, json, quiet } => pull(&store, reference, creds.as_deref(), authfile, registries_conf, *json, *quiet),
        ImageCmd::Load { input, name, json } => {
            let loaded = load::load(&store, input, name.as_deref())?;
            for (n, d) in &loaded {
                if *json {
                    println!("{}", serde_json::json!({"name": n, "digest": d}));
                } else {
                    println!("Loaded image {n} ({d})");
                }
            }
            Ok(0)
        }
        ImageCmd::Import { dir, name } => {
            let (n, d) = import::import(&store, dir, name)?;
            println!("{n} {d}");
            Ok(0)
        }
        ImageCmd::Ls { json } => list(&store, *json),
        ImageCmd::Inspect { image } => {
            println!("{}", serde_json::to_string_pretty(&store.image(image)?)?);
            Ok(0)
        }
        ImageCmd::Rm { force, names, json } => {
            let mut removed = Vec::new();
            for i in names {
                removed.extend(store.remove(i, *force, &|d| ctx.image_users(d))?);
            }
            if *json {
                println!("{}", serde_json::json!({"untagged": removed}));
            } else {
                for n in removed {
                    println!("untagged {n}");
                }
            }
            Ok(0)
        }
        ImageCmd::Prune { json } => {
            let r = store.prune(&ctx.images_in_use())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for l in &r.layers {
                    println!("removed layer {l}");
                }
                println!("removed {} layer(s), {} blob(s), {} temporary file(s): {} freed", r.layers.len(), r.blobs.len(), r.temporary, size(r.bytes));
            }
            Ok(0)
        }
    }
}

/// `image pull`: USER:PASSWORD credentials, progress as lines, JSON or nothing; the digest last.
fn pull(store: &Store, reference: &str, creds: Option<&str>, authfile: &Option<PathBuf>, registries_conf: &Option<PathBuf>, json: bool, quiet: bool) -> anyhow::Result<i32> {
    let creds = match creds {
        Some(c) => Some(c.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())).ok_or_else(|| anyhow::anyhow!("--creds: expected USER:PASSWORD"))?),
        None => None,
    };
    let progress = if quiet { Progress::Quiet } else if json { Progress::Json } else { Progress::Lines };
    let opts = PullOptions { creds, authfile: authfile.clone(), registries_conf: registries_conf.clone(), progress };
    let info = registry::pull(store, reference, &opts)?;
    if !json && !quiet {
        println!("{}", info.digest);
    }
    Ok(0)
}

/// `image ls`: one row per name, or JSON.
fn list(store: &Store, json: bool) -> anyhow::Result<i32> {
    let list = store.list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list.iter().map(|i| serde_json::json!({"names": i.names, "digest": i.digest, "id": i.id(), "size": i.size, "layers": i.layers.len(), "created": i.created})).collect::<Vec<_>>())?);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .flat_map(|i| i.names.iter().map(move |n| vec![n.clone(), i.id().to_string(), i.layers.len().to_string(), size(i.size), i.created.clone()]))
        .collect();
    super::table(&["NAME", "ID", "LAYERS", "SIZE", "CREATED"], &rows);
    Ok(0)
}
