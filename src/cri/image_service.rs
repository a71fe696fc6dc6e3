//! CRI's ImageService: list, status, pull and removal of images of podbox's image store, and
//! the store's filesystem usage.

use std::collections::HashMap;
use std::path::Path;

use tonic::{Request, Response, Status};

use super::api;
use super::server::{CALL_TIMEOUT, Cri, PULL_TIMEOUT};
use super::worker::Request as Work;

fn image_of(info: &crate::image::ImageInfo) -> api::Image {
    let user = crate::image::config::user(&info.config).unwrap_or_default();
    let (uid, username) = match user.split(':').next().unwrap_or("") {
        "" => (None, String::new()),
        u => match u.parse::<i64>() {
            Ok(n) => (Some(api::Int64Value { value: n }), String::new()),
            Err(_) => (None, u.to_string()),
        },
    };
    let repo = |n: &str| n.split('@').next().unwrap_or(n).to_string();
    api::Image {
        id: info.config_digest.clone(),
        repo_tags: info.names.iter().filter(|n| !n.contains('@')).cloned().collect(),
        repo_digests: info.names.iter().map(|n| format!("{}@{}", repo(n).rsplit_once(':').filter(|(_, t)| !t.contains('/')).map(|(r, _)| r.to_string()).unwrap_or_else(|| repo(n)), info.digest)).collect(),
        size: info.size,
        uid,
        username,
        spec: Some(api::ImageSpec { image: info.config_digest.clone(), ..Default::default() }),
        pinned: false,
    }
}

#[tonic::async_trait]
impl api::image_service_server::ImageService for Cri {
    async fn list_images(&self, r: Request<api::ListImagesRequest>) -> Result<Response<api::ListImagesResponse>, Status> {
        let filter = r.into_inner().filter.and_then(|f| f.image).map(|i| i.image).filter(|i| !i.is_empty());
        self.read(move |ctx| {
            if !ctx.images.is_dir() {
                return Ok(Response::new(api::ListImagesResponse { images: vec![] }));
            }
            let store = ctx.image_store()?;
            let images = match filter {
                Some(f) => match store.lookup(&f)? {
                    Some(_) => vec![image_of(&store.image(&f)?)],
                    None => vec![],
                },
                None => store.list()?.iter().map(image_of).collect(),
            };
            Ok(Response::new(api::ListImagesResponse { images }))
        })
        .await
    }

    async fn image_status(&self, r: Request<api::ImageStatusRequest>) -> Result<Response<api::ImageStatusResponse>, Status> {
        let r = r.into_inner();
        let reference = r.image.map(|i| i.image).unwrap_or_default();
        self.read(move |ctx| {
            // An image that is not there is no error: the answer has no image.
            let image = if reference.is_empty() || !ctx.images.is_dir() {
                None
            } else {
                let store = ctx.image_store()?;
                match store.lookup(&reference) {
                    Ok(Some(_)) => Some(image_of(&store.image(&reference)?)),
                    _ => None,
                }
            };
            Ok(Response::new(api::ImageStatusResponse { image, info: HashMap::new() }))
        })
        .await
    }

    async fn pull_image(&self, r: Request<api::PullImageRequest>) -> Result<Response<api::PullImageResponse>, Status> {
        let r = r.into_inner();
        let image = r.image.map(|i| i.image).filter(|i| !i.is_empty()).ok_or_else(|| Status::invalid_argument("PullImageRequest.image is required"))?;
        let creds = r.auth.and_then(|a| {
            if !a.username.is_empty() {
                Some((a.username, a.password))
            } else {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD.decode(a.auth.as_bytes()).ok()?;
                let s = String::from_utf8(raw).ok()?;
                s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))
            }
        });
        let image_ref = self.work(Work::PullImage { image, creds }, PULL_TIMEOUT).await?;
        Ok(Response::new(api::PullImageResponse { image_ref }))
    }

    async fn remove_image(&self, r: Request<api::RemoveImageRequest>) -> Result<Response<api::RemoveImageResponse>, Status> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.work(Work::RemoveImage { image }, CALL_TIMEOUT).await?;
        Ok(Response::new(api::RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<api::ImageFsInfoRequest>) -> Result<Response<api::ImageFsInfoResponse>, Status> {
        self.read(|ctx| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
            let used = crate::image::store::du(&ctx.images);
            let inodes = count_inodes(&ctx.images);
            let fs = api::FilesystemUsage {
                timestamp: now,
                fs_id: Some(api::FilesystemIdentifier { mountpoint: ctx.images.display().to_string() }),
                used_bytes: Some(api::UInt64Value { value: used }),
                inodes_used: Some(api::UInt64Value { value: inodes }),
            };
            Ok(Response::new(api::ImageFsInfoResponse { image_filesystems: vec![fs], container_filesystems: vec![] }))
        })
        .await
    }
}

fn count_inodes(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return 0 };
    rd.flatten().map(|e| 1 + if e.file_type().is_ok_and(|t| t.is_dir()) { count_inodes(&e.path()) } else { 0 }).sum()
}
