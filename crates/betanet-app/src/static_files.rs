//! Static files under a URL prefix: `ETag`, `Last-Modified`, `If-None-Match` /
//! `If-Modified-Since` → 304, single `Range` → 206 (416 when unsatisfiable), streamed bodies,
//! and refusal of path traversal (`..`, hidden files, backslashes, NUL, symlinks that leave
//! the root).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use betanet_wire::bar::status;

use crate::app::App;
use crate::body::Body;
use crate::error::AppError;
use crate::request::Request;
use crate::response::Response;

/// Partial content.
pub const PARTIAL_CONTENT: u16 = 206;
/// Not modified.
pub const NOT_MODIFIED: u16 = 304;
/// Range not satisfiable.
pub const RANGE_NOT_SATISFIABLE: u16 = 416;

/// Mounts `dir` under `prefix` as `GET {prefix}/{*path}`.
pub fn mount(app: &mut App, prefix: &str, dir: &Path) -> Result<(), AppError> {
    let root = std::fs::canonicalize(dir).map_err(|e| AppError::Config {
        key: "static".to_owned(),
        problem: format!("directory `{}` is not usable: {e}", dir.display()),
        fix: "give an existing directory as PREFIX=DIR".to_owned(),
    })?;
    let root = Arc::new(root);
    let pattern = format!("{}/{{*path}}", prefix.trim_end_matches('/'));
    app.get(&pattern, move |req: Request| {
        let root = root.clone();
        async move {
            let rel = req.param("path").unwrap_or("").to_owned();
            serve_file(&root, &rel, &req).await
        }
    })?;
    Ok(())
}

/// Maps a decoded relative path to a file under `root`, or the status to answer.
async fn resolve(root: &Path, rel: &str) -> Result<(PathBuf, std::fs::Metadata), u16> {
    let mut p = root.to_path_buf();
    for seg in rel.split('/') {
        if seg.is_empty() {
            continue;
        }
        if seg == "." || seg == ".." || seg.contains(['\\', '\0']) || seg.contains(':') {
            return Err(status::BAD_REQUEST);
        }
        if seg.starts_with('.') {
            return Err(status::NOT_FOUND);
        }
        p.push(seg);
    }
    let real = tokio::fs::canonicalize(&p)
        .await
        .map_err(|_| status::NOT_FOUND)?;
    if !real.starts_with(root) {
        // A symlink pointing outside the root.
        return Err(status::NOT_FOUND);
    }
    let mut real = real;
    let mut meta = tokio::fs::metadata(&real)
        .await
        .map_err(|_| status::NOT_FOUND)?;
    if meta.is_dir() {
        real.push("index.html");
        meta = tokio::fs::metadata(&real)
            .await
            .map_err(|_| status::NOT_FOUND)?;
    }
    if !meta.is_file() {
        return Err(status::NOT_FOUND);
    }
    Ok((real, meta))
}

/// The content type for a file name.
#[must_use]
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// Strong validator from size and modification time.
fn etag(len: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("\"{len:x}-{nanos:x}\"")
}

fn etag_matches(header: &str, tag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    header.trim() == "*" || header.split(',').any(|t| bare(t) == bare(tag))
}

/// Parses a single `bytes=` range against `len`: `Ok(None)` = serve the whole file (no or
/// multi-range header), `Ok(Some((start, end_inclusive)))`, `Err(())` = unsatisfiable.
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || len == 0 {
            return Err(());
        }
        return Ok(Some((len.saturating_sub(n), len - 1)));
    }
    let start: u64 = a.parse().map_err(|_| ())?;
    if start >= len {
        return Err(());
    }
    let end = if b.is_empty() {
        len - 1
    } else {
        let e: u64 = b.parse().map_err(|_| ())?;
        if e < start {
            return Err(());
        }
        e.min(len - 1)
    };
    Ok(Some((start, end)))
}

/// Serves `rel` (already percent-decoded) from `root` for `req`.
pub async fn serve_file(root: &Path, rel: &str, req: &Request) -> Response {
    let (path, meta) = match resolve(root, rel).await {
        Ok(v) => v,
        Err(s) if s == status::BAD_REQUEST => return Response::error(s, "invalid path"),
        Err(s) => return Response::error(s, "not found"),
    };
    let len = meta.len();
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let tag = etag(len, modified);
    let last_modified = httpdate::fmt_http_date(modified);
    let base = |status: u16, body: Body| {
        Response::new(status, body)
            .with_header("etag", tag.clone())
            .with_header("last-modified", last_modified.clone())
            .with_header("accept-ranges", "bytes")
            .with_header("cache-control", "public, max-age=0, must-revalidate")
    };
    let not_modified = match req.header("if-none-match") {
        Some(inm) => etag_matches(inm, &tag),
        None => req
            .header("if-modified-since")
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| {
                let m = modified.duration_since(UNIX_EPOCH).map(|d| d.as_secs());
                let s = since.duration_since(UNIX_EPOCH).map(|d| d.as_secs());
                matches!((m, s), (Ok(m), Ok(s)) if m <= s)
            }),
    };
    if not_modified {
        return base(NOT_MODIFIED, Body::Empty);
    }
    let range_allowed = req
        .header("if-range")
        .is_none_or(|ir| etag_matches(ir, &tag));
    let range = match req.header("range") {
        Some(r) if range_allowed => parse_range(r, len),
        _ => Ok(None),
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return Response::error(status::NOT_FOUND, "not found"),
    };
    let ct = content_type(&path);
    match range {
        Err(()) => base(RANGE_NOT_SATISFIABLE, Body::Empty)
            .with_header("content-range", format!("bytes */{len}")),
        Ok(Some((start, end))) => {
            let n = end - start + 1;
            match Body::file_range(file, start, n).await {
                Ok(body) => base(PARTIAL_CONTENT, body)
                    .with_header("content-type", ct)
                    .with_header("content-range", format!("bytes {start}-{end}/{len}")),
                Err(_) => Response::error(status::INTERNAL_ERROR, "read failed"),
            }
        }
        Ok(None) => base(
            status::OK,
            Body::File {
                file,
                remaining: len,
            },
        )
        .with_header("content-type", ct),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-3", 10), Ok(Some((0, 3))));
        assert_eq!(parse_range("bytes=5-", 10), Ok(Some((5, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=-30", 10), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=8-100", 10), Ok(Some((8, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("bytes=4-2", 10), Err(()));
        assert_eq!(parse_range("bytes=-0", 10), Err(()));
        assert_eq!(parse_range("bytes=x-1", 10), Err(()));
        assert_eq!(parse_range("bytes=0-1,3-4", 10), Ok(None));
        assert_eq!(parse_range("items=0-1", 10), Ok(None));
    }

    #[test]
    fn etags() {
        let t = etag(10, UNIX_EPOCH);
        assert_eq!(t, "\"a-0\"");
        assert!(etag_matches("\"x\", \"a-0\"", &t));
        assert!(etag_matches("W/\"a-0\"", &t));
        assert!(etag_matches("*", &t));
        assert!(!etag_matches("\"a-1\"", &t));
        assert_eq!(
            content_type(Path::new("x/Y.CSS")),
            "text/css; charset=utf-8"
        );
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn range_is_within_the_file(h in "bytes=[0-9]{0,5}-[0-9]{0,5}", len in 1u64..100_000) {
            if let Ok(Some((a, b))) = parse_range(&h, len) {
                prop_assert!(a <= b && b < len);
            }
        }
    }
}
