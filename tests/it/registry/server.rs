//! A real CNCF distribution registry (`docker-registry serve`) on 127.0.0.1 with a
//! config each test writes, killed when dropped; plus the skopeo oracle.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Whether `tool` is on `PATH` (see `support::require_tool`: missing fails
/// under `CI=true`, skips elsewhere).
pub(crate) fn have_tool(tool: &str, package: &str) -> bool {
    crate::support::require_tool(tool, package).is_some()
}

/// Both oracles the registry tests need.
pub(crate) fn have_tools() -> bool {
    have_tool("docker-registry", "docker-registry") & have_tool("skopeo", "skopeo")
}

pub(crate) struct Registry {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub(crate) fn start() -> Registry {
        Self::start_with_auth(None)
    }

    /// A registry with htpasswd (bcrypt) Basic auth for `user`/`password`.
    pub(crate) fn start_with_auth(user_password: Option<(&str, &str)>) -> Registry {
        // The port is picked free and then handed over, so another process can
        // take it in between; a registry that dies at start is tried again.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = free_port();
            let auth = match user_password {
                Some((user, password)) => {
                    let hash = bcrypt::hash(password, 4).unwrap();
                    let htpasswd = dir.path().join("htpasswd");
                    std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
                    format!(
                        "auth:\n  htpasswd:\n    realm: scratchpack-test\n    path: {}\n",
                        htpasswd.display()
                    )
                }
                None => String::new(),
            };
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n\
                 {auth}",
                dir.path().join("storage").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting docker-registry");
            let mut registry = Registry { child, port, dir };
            if registry.wait_ready() {
                return registry;
            }
        }
        panic!("docker-registry did not start on 127.0.0.1");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok((200 | 401, _)) = http_get(self.port, "/v2/", None) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The registry's storage directory, to tamper with what it holds.
    pub(crate) fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many blobs the registry's storage holds, whatever repository they are in.
    pub(crate) fn stored_blobs(&self) -> usize {
        fn walk(dir: &Path, count: &mut usize) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, count);
                } else if path.file_name().is_some_and(|n| n == "data") {
                    *count += 1;
                }
            }
        }
        let mut count = 0;
        walk(
            &self.dir.path().join("storage/docker/registry/v2/blobs"),
            &mut count,
        );
        count
    }

    /// The tags of `repo`, straight from the registry API (empty if it has none).
    pub(crate) fn tags(&self, repo: &str, basic: Option<&str>) -> Vec<String> {
        let (status, body) = http_get(self.port, &format!("/v2/{repo}/tags/list"), basic).unwrap();
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(
            status,
            200,
            "listing tags: {}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["tags"]
            .as_array()
            .map(|a| a.iter().map(|t| t.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 GET on 127.0.0.1, so tests need no HTTP client of their own.
pub(crate) fn http_get(
    port: u16,
    path: &str,
    basic: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = basic
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw[(head_end + 4).min(raw.len())..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
    out
}

/// Runs skopeo against the plain-HTTP test registry; panics with its output on failure.
pub(crate) fn skopeo(args: &[&str]) -> Output {
    // skopeo would read the user's auth files; an empty one keeps tests hermetic.
    let auth = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(auth.path(), "{}").unwrap();
    let out = Command::new("skopeo")
        .args(args)
        .env("REGISTRY_AUTH_FILE", auth.path())
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `skopeo inspect --raw`: the exact manifest bytes the registry serves for `reference`.
pub(crate) fn inspect_raw(reference: &str, creds: Option<&str>) -> Vec<u8> {
    let image = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false", "--raw"];
    if let Some(c) = creds {
        args.extend(["--creds", c]);
    }
    args.push(&image);
    skopeo(&args).stdout
}

/// `skopeo copy --all` of `reference` into a fresh OCI layout, returned for checking.
pub(crate) fn copy_to_layout(reference: &str, creds: Option<&str>) -> (TempDir, PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("copy");
    let src = format!("docker://{reference}");
    let dst = format!("oci:{}:copied", dest.display());
    let mut args = vec![
        "copy",
        "--insecure-policy",
        "--all",
        "--src-tls-verify=false",
        "--quiet",
    ];
    if let Some(c) = creds {
        args.extend(["--src-creds", c]);
    }
    args.extend([src.as_str(), dst.as_str()]);
    skopeo(&args);
    (out, dest)
}
