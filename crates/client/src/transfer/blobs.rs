//! Moving one blob: from a registry (resuming with `Range`, falling back to a foreign layer's
//! `urls` without credentials) or a layout, into a layout (verified before it gets its name,
//! resumed within the run, restarted when a kept partial file was corrupt) or a registry
//! (skipped when present, mounted within a registry, else one streamed upload that recovers
//! from the session's offset or with a new session).

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use stowage_oci::Digest;

use super::{End, Progress, err};
use crate::image_ref::ImageRef;
use crate::layout::Descriptor;
use crate::{Client, ClientError};

/// Stream of a source blob from `offset`.
type Chunks = futures_util::stream::BoxStream<'static, Result<bytes::Bytes, String>>;

async fn open_blob(src: &End, d: &Descriptor, offset: u64) -> Result<(Chunks, u64), String> {
    match src {
        End::Registry { client, image } => {
            let range = (offset > 0 && offset < d.size).then(|| (offset, d.size - 1));
            let resp = match client.blob_get(&image.repository, &d.digest, range).await {
                Ok(r) => r,
                // A foreign layer the registry does not hold: fetch it from its `urls`, without
                // the registry's credentials.
                Err(e) if e.status() == Some(404) && d.raw["urls"].is_array() => {
                    foreign(client, d, range).await.map_err(|why| {
                        err(
                            &format!("{image}: blob {}", d.digest),
                            format!("{e}; from its urls: {why}"),
                        )
                    })?
                }
                Err(e) => return Err(err(&format!("{image}: blob {}", d.digest), e)),
            };
            // A registry that ignores Range sends everything from zero.
            let from = if resp.status() == 206 { offset } else { 0 };
            let s = resp.bytes_stream().map_err(|e| e.to_string()).boxed();
            Ok((s, from))
        }
        End::Layout { layout, .. } => {
            use std::io::{Read, Seek, SeekFrom};
            let path = layout.blob_path(&d.digest);
            let mut f =
                std::fs::File::open(&path).map_err(|e| err(&path.display().to_string(), e))?;
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| err(&path.display().to_string(), e))?;
            let s = futures_util::stream::unfold(f, |mut f| async move {
                let r = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    let n = f.read(&mut buf)?;
                    buf.truncate(n);
                    Ok::<_, std::io::Error>((buf, f))
                })
                .await;
                match r {
                    Ok(Ok((buf, _))) if buf.is_empty() => None,
                    Ok(Ok((buf, f))) => Some((Ok(bytes::Bytes::from(buf)), f)),
                    Ok(Err(e)) => {
                        Some((Err(e.to_string()), std::fs::File::open("/dev/null").ok()?))
                    }
                    Err(e) => Some((Err(e.to_string()), std::fs::File::open("/dev/null").ok()?)),
                }
            })
            .boxed();
            Ok((s, offset))
        }
    }
}

/// GET a foreign layer from the first of its `urls` that answers.
async fn foreign(
    client: &Client,
    d: &Descriptor,
    range: Option<(u64, u64)>,
) -> Result<reqwest::Response, String> {
    let mut last = "no usable URL".to_string();
    for url in d.raw["urls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str())
    {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            continue;
        }
        let mut req = client.plain_http().get(url);
        if let Some((a, b)) = range {
            req = req.header(reqwest::header::RANGE, format!("bytes={a}-{b}"));
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(r),
            Ok(r) => last = format!("{url}: {}", r.status()),
            Err(e) => last = format!("{url}: {e}"),
        }
    }
    Err(last)
}

pub(super) async fn copy_blob(
    src: &End,
    dst: &End,
    d: &Descriptor,
    progress: Arc<dyn Progress>,
) -> Result<(), String> {
    match dst {
        End::Layout { layout, .. } => {
            if layout.has_blob(&d.digest, d.size) {
                progress.done(&d.digest, "exists");
                return Ok(());
            }
            let ctx = format!("{}: blob {}", src.name(), d.digest);
            let mut attempt = 0u32;
            let mut restarted = false;
            loop {
                attempt += 1;
                let mut w = layout.blob_writer(&d.digest).map_err(|e| e.to_string())?;
                if w.offset() >= d.size {
                    w.reset().map_err(|e| e.to_string())?;
                }
                let resumed = w.offset() > 0;
                let (mut stream, from) = open_blob(src, d, w.offset()).await?;
                if from != w.offset() {
                    w.reset().map_err(|e| e.to_string())?;
                }
                progress.start(&d.digest, d.size, from);
                let mut cut = None;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(c) => {
                            w.write(&c).map_err(|e| e.to_string())?;
                            progress.advance(&d.digest, c.len() as u64);
                        }
                        Err(e) => {
                            cut = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = cut {
                    // The bytes so far stay in the partial file: ask for the rest.
                    drop(w);
                    if attempt < 4 {
                        progress.note(&format!("{ctx}: transfer cut ({e}); resuming"));
                        tokio::time::sleep(std::time::Duration::from_millis(
                            250 * u64::from(attempt),
                        ))
                        .await;
                        continue;
                    }
                    return Err(err(&ctx, e));
                }
                match w.commit() {
                    Ok(()) => break,
                    // The bytes kept from an earlier attempt were bad (the partial file is gone
                    // now): fetch the whole blob once more.
                    Err(crate::layout::LayoutError::Digest { .. }) if resumed && !restarted => {
                        restarted = true;
                        progress.note(&format!(
                            "{ctx}: the partial download kept from an earlier attempt was corrupt; starting it again"
                        ));
                    }
                    Err(e) => return Err(err(&src.name(), e)),
                }
            }
            progress.done(&d.digest, "copied");
            Ok(())
        }
        End::Registry { client, image } => {
            let repo = &image.repository;
            // Foreign (non-distributable) layers stay where their `urls` point, as docker and
            // skopeo leave them.
            if (d.media_type.contains("foreign") || d.media_type.contains("nondistributable"))
                && d.raw["urls"].is_array()
            {
                progress.done(&d.digest, "left at its urls (foreign layer)");
                return Ok(());
            }
            if client
                .blob_head(repo, &d.digest)
                .await
                .map_err(|e| err(&image.to_string(), e))?
                .is_some()
            {
                progress.done(&d.digest, "exists");
                return Ok(());
            }
            if let End::Registry { image: from, .. } = src
                && from.registry == image.registry
                && from.repository != image.repository
                && client
                    .blob_mount(repo, &d.digest, &from.repository)
                    .await
                    .unwrap_or(false)
            {
                progress.done(&d.digest, "mounted");
                return Ok(());
            }
            upload(src, client, image, d, progress.clone()).await?;
            progress.done(&d.digest, "copied");
            Ok(())
        }
    }
}

/// Upload one blob as a single streamed PUT. If that fails midway, ask the registry how much
/// of the session it holds and send only the rest; if it holds nothing usable (or the session is
/// gone), start a new session. A refusal by the registry (a 4xx such as a wrong digest or a
/// missing right) is final.
async fn upload(
    src: &End,
    client: &Client,
    image: &ImageRef,
    d: &Descriptor,
    progress: Arc<dyn Progress>,
) -> Result<(), String> {
    let ctx = format!("{image}: blob {}", d.digest);
    let body_from = |stream: Chunks, digest: Digest, progress: Arc<dyn Progress>| {
        reqwest::Body::wrap_stream(stream.map(move |c| {
            if let Ok(b) = &c {
                progress.advance(&digest, b.len() as u64);
            }
            c.map_err(std::io::Error::other)
        }))
    };
    let final_refusal = |e: &ClientError| {
        e.status()
            .is_some_and(|s| (400..500).contains(&s) && !matches!(s, 404 | 408 | 416 | 429))
    };
    let mut last = String::new();
    for attempt in 1..=3u32 {
        let up = client
            .upload_start(&image.repository)
            .await
            .map_err(|e| err(&ctx, e))?;
        let (stream, _) = open_blob(src, d, 0).await?;
        progress.start(&d.digest, d.size, 0);
        let first = client
            .upload_finish(
                up.clone(),
                &d.digest,
                Some((
                    body_from(stream, d.digest.clone(), progress.clone()),
                    d.size,
                )),
            )
            .await;
        let e = match first {
            Ok(()) => return Ok(()),
            Err(e) if final_refusal(&e) => return Err(err(&ctx, e)),
            Err(e) => e,
        };
        last = e.to_string();
        // The registry may still be finishing the cut request: give it a moment.
        tokio::time::sleep(std::time::Duration::from_millis(300 * u64::from(attempt))).await;
        // An empty session reports `0-0`, which also means one byte: only resume past that.
        if let Ok(offset) = client.upload_status(&up).await
            && offset > 1
            && offset <= d.size
        {
            progress.note(&format!(
                "{ctx}: resuming the upload at byte {offset} after: {e}"
            ));
            let (stream, from) = open_blob(src, d, offset).await?;
            if from == offset {
                let mut up = up;
                let rest = async {
                    if offset < d.size {
                        client
                            .upload_patch(
                                &mut up,
                                body_from(stream, d.digest.clone(), progress.clone()),
                                Some((offset, d.size - 1)),
                            )
                            .await?;
                    }
                    client.upload_finish(up, &d.digest, None).await
                }
                .await;
                match rest {
                    Ok(()) => return Ok(()),
                    Err(e) if final_refusal(&e) && e.status() != Some(400) => {
                        return Err(err(&ctx, e));
                    }
                    Err(e) => last = e.to_string(),
                }
            }
        }
        if attempt < 3 {
            progress.note(&format!("{ctx}: upload failed ({last}); starting it again"));
        }
    }
    Err(err(&ctx, last))
}
