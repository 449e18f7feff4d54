//! The distribution API calls a push makes (OCI distribution spec "Push":
//! the API version check, checking blobs, monolithic and chunked uploads,
//! resuming them, cross-repository mounts, manifests), each one request on
//! the [`Client`] of `transport`, which authenticates and retries them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use ureq::http::Method;

use super::error::Failure;
use super::options::ProgressEvent;
use super::outgoing::{BlobFile, ManifestBlob};
use super::transport::{Answer, Client, Sink, Want, encode, with_query};

const OCTET_STREAM: &str = "application/octet-stream";

/// What asking to upload a blob started.
pub(crate) enum Started {
    /// The registry linked the blob from the mount source: nothing to send.
    Mounted,
    Session(Upload),
}

/// An upload session the registry knows, and how many of the blob's bytes
/// it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upload {
    pub location: String,
    pub offset: u64,
}

impl<S: Sink> Client<'_, '_, S> {
    /// `GET /v2/`: checks the endpoint speaks the distribution API and learns how it
    /// wants to be authenticated, before any blob is touched.
    pub(super) fn ping(&mut self) -> Result<(), Failure> {
        let url = format!("{}/v2/", self.base);
        let answer = self.request(Method::GET, &url, &[], None, &mut Want::Words)?;
        match answer.status {
            200 => Ok(()),
            _ => Err(answer.failure()),
        }
    }

    pub(super) fn blob_exists(&mut self, digest: &str) -> Result<bool, Failure> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repo.name());
        let answer = self.request(Method::HEAD, &url, &[], None, &mut Want::Words)?;
        match answer.status {
            200 => Ok(true),
            301 | 302 | 303 | 307 | 308 => Ok(self.redirect_confirms(&answer)),
            404 => Ok(false),
            _ => Err(answer.failure()),
        }
    }

    /// Whether a blob `HEAD` the registry redirected ends, within a few
    /// hops, at an answer that the blob is there. Registries that keep
    /// blobs in object storage redirect to it, but a redirect alone proves
    /// nothing: counting it as present would skip the upload, and the push
    /// would fail later naming a manifest instead. Each hop is asked as any
    /// other URL is (credentials only to the registry's own origin); an
    /// answer that is not a success, or no answer, means the blob is sent,
    /// which costs a registry that had it nothing but the bytes.
    fn redirect_confirms(&mut self, answer: &Answer) -> bool {
        const MAX_HOPS: usize = 3;
        let mut next = self.location(answer).ok();
        for _ in 0..MAX_HOPS {
            let Some(url) = next.take() else {
                return false;
            };
            let Ok(answer) = self.request(Method::HEAD, &url, &[], None, &mut Want::Words) else {
                return false;
            };
            match answer.status {
                200..=299 => return true,
                301 | 302 | 303 | 307 | 308 => {
                    next = answer.header("location").map(|l| joined(&url, l));
                }
                _ => return false,
            }
        }
        false
    }

    pub(super) fn manifest_exists(&mut self, manifest: &ManifestBlob) -> Result<bool, Failure> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base,
            self.repo.name(),
            manifest.digest
        );
        let accept = [("accept", manifest.media_type.clone())];
        let answer = self.request(Method::HEAD, &url, &accept, None, &mut Want::Words)?;
        match answer.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(answer.failure()),
        }
    }

    /// `PUT /v2/<name>/manifests/<reference>` with the exact local bytes.
    pub(super) fn put_manifest(
        &mut self,
        reference: &str,
        manifest: &ManifestBlob,
    ) -> Result<(), Failure> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base,
            self.repo.name()
        );
        let headers = [("content-type", manifest.media_type.clone())];
        let answer = self.request(
            Method::PUT,
            &url,
            &headers,
            Some(&manifest.bytes),
            &mut Want::Words,
        )?;
        if answer.status != 201 {
            return Err(answer.failure());
        }
        check_digest(&answer, &manifest.digest, "manifest")
    }

    /// Asks to upload one blob: a mount when a source repository is set, else
    /// a new upload session.
    pub(super) fn start_upload(&mut self, blob: &BlobFile) -> Result<Started, Failure> {
        let uploads = format!("{}/v2/{}/blobs/uploads/", self.base, self.repo.name());
        let mount_from = self.settings.mount_from.clone();
        let url = match mount_from.as_deref().filter(|f| *f != self.repo.name()) {
            Some(from) => format!(
                "{uploads}?mount={}&from={}",
                encode(&blob.digest),
                encode(from)
            ),
            None => uploads,
        };
        let answer = self.request(Method::POST, &url, &[], Some(&[]), &mut Want::Words)?;
        match answer.status {
            // The registry already had the blob in the source repository.
            201 if mount_from.is_some() => {
                check_digest(&answer, &blob.digest, "blob")?;
                Ok(Started::Mounted)
            }
            // An upload session: also the answer to a mount the registry declined.
            202 => {
                let location = self.location(&answer)?;
                self.progress(ProgressEvent::BlobStarted {
                    digest: &blob.digest,
                    size: blob.size,
                });
                Ok(Started::Session(Upload {
                    location,
                    offset: 0,
                }))
            }
            _ => Err(answer.failure()),
        }
    }

    /// `GET` on an upload session (distribution spec "Resuming an upload"):
    /// where it goes on and how many bytes the registry holds, from its
    /// `Range: 0-<last>`. `None` when the registry no longer knows the
    /// session (it finished, or expired) or gives no usable offset, so the
    /// blob is asked about and, if need be, sent again from its start.
    pub(super) fn upload_status(&mut self, upload: &Upload) -> Result<Option<Upload>, Failure> {
        let answer = self.request(Method::GET, &upload.location, &[], None, &mut Want::Words)?;
        match answer.status {
            200 | 204 => {}
            _ => {
                let failure = answer.failure();
                return if failure.is_transient() {
                    Err(failure)
                } else {
                    Ok(None)
                };
            }
        }
        let Some(last) = answer
            .header("range")
            .and_then(|r| r.trim().strip_prefix("0-"))
            .and_then(|end| end.parse::<u64>().ok())
        else {
            return Ok(None);
        };
        // `0-0` is what distribution answers both for no bytes and for one:
        // starting again costs at most that byte.
        if last == 0 {
            return Ok(None);
        }
        let location = if answer.header("location").is_some() {
            self.location(&answer)?
        } else {
            upload.location.clone()
        };
        Ok(Some(Upload {
            location,
            offset: last + 1,
        }))
    }

    /// Sends the blob's bytes from the session's offset on: monolithic up to
    /// the chunk size (the rest in the closing PUT), chunked above it (a PATCH
    /// per chunk, then an empty closing PUT). `upload` follows every answer, so
    /// after a failure it says where the session stood.
    pub(super) fn finish_upload(
        &mut self,
        blob: &BlobFile,
        upload: &mut Upload,
    ) -> Result<(), Failure> {
        let fail_read = |e: std::io::Error| Failure::Protocol(format!("reading local blob: {e}"));
        let mut file = File::open(&blob.path).map_err(fail_read)?;
        if upload.offset > blob.size {
            return Err(Failure::Protocol(format!(
                "registry holds {} bytes of blob {}, which has {}",
                upload.offset, blob.digest, blob.size
            )));
        }
        file.seek(SeekFrom::Start(upload.offset))
            .map_err(fail_read)?;
        let chunk_size = self.settings.chunk_size.max(1) as u64;
        let final_body: Vec<u8> = if blob.size <= chunk_size {
            let mut body = Vec::with_capacity((blob.size - upload.offset) as usize);
            (&mut file)
                .take(blob.size - upload.offset)
                .read_to_end(&mut body)
                .map_err(fail_read)?;
            body
        } else {
            let mut buf = vec![0u8; chunk_size as usize];
            while upload.offset < blob.size {
                let offset = upload.offset;
                let n = (blob.size - offset).min(chunk_size) as usize;
                file.read_exact(&mut buf[..n]).map_err(fail_read)?;
                let headers = [
                    ("content-type", OCTET_STREAM.to_owned()),
                    // Inclusive byte range, as the spec's chunked upload asks.
                    (
                        "content-range",
                        format!("{offset}-{}", offset + n as u64 - 1),
                    ),
                ];
                let result = self.request(
                    Method::PATCH,
                    &upload.location,
                    &headers,
                    Some(&buf[..n]),
                    &mut Want::Words,
                );
                self.stats.bytes_uploaded += n as u64;
                let answer = result?;
                if answer.status != 202 {
                    return Err(answer.failure());
                }
                upload.location = self.location(&answer)?;
                upload.offset = offset + n as u64;
                self.progressed();
                self.progress(ProgressEvent::BlobProgress {
                    digest: &blob.digest,
                    sent: upload.offset,
                    size: blob.size,
                });
            }
            Vec::new()
        };
        let url = with_query(&upload.location, "digest", &blob.digest);
        let headers = [("content-type", OCTET_STREAM.to_owned())];
        let result = self.request(
            Method::PUT,
            &url,
            &headers,
            Some(&final_body),
            &mut Want::Words,
        );
        self.stats.bytes_uploaded += final_body.len() as u64;
        let answer = result?;
        if answer.status != 201 {
            return Err(answer.failure());
        }
        check_digest(&answer, &blob.digest, "blob")?;
        self.progress(ProgressEvent::BlobProgress {
            digest: &blob.digest,
            sent: blob.size,
            size: blob.size,
        });
        Ok(())
    }

    /// The upload session URL from `Location`, which may be relative to the registry.
    pub(super) fn location(&self, answer: &Answer) -> Result<String, Failure> {
        let loc = answer.header("location").ok_or_else(|| {
            Failure::Protocol("registry started an upload without a Location header".into())
        })?;
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc.to_owned()
            } else if loc.starts_with('/') {
                format!("{}{loc}", self.base)
            } else {
                format!("{}/{loc}", self.base)
            },
        )
    }
}

/// `location` as an absolute URL, relative to the URL that answered with it.
fn joined(answered: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let after_scheme = answered.find("://").map_or(0, |i| i + 3);
    let origin_end = answered[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(answered.len(), |i| after_scheme + i);
    let origin = &answered[..origin_end];
    match location.strip_prefix('/') {
        Some(path) => format!("{origin}/{path}"),
        None => format!("{origin}/{location}"),
    }
}

pub(super) fn check_digest(answer: &Answer, expected: &str, what: &str) -> Result<(), Failure> {
    match answer.header("docker-content-digest") {
        Some(got) if got != expected => Err(Failure::Protocol(format!(
            "registry stored the {what} as {got}, but its digest is {expected}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_joined_to_the_url_that_answered_with_it() {
        let from = "http://storage.example:9000/bucket/blob?sig=1";
        assert_eq!(
            joined(from, "https://cdn.example/x"),
            "https://cdn.example/x"
        );
        assert_eq!(
            joined(from, "/other/y"),
            "http://storage.example:9000/other/y"
        );
        assert_eq!(joined(from, "z"), "http://storage.example:9000/z");
    }
}
