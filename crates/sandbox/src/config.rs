//! The run configuration handed from the library to the helper process, and its
//! byte encoding on the pipe between them.
//!
//! The encoding is private to this crate: both ends are always the same build,
//! so it carries no version and favours being simple to check.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use crate::Limits;

/// Everything the helper needs to set up and run one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    pub rootfs: PathBuf,
    pub argv: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub uid: u32,
    pub gid: u32,
    pub workdir: PathBuf,
    pub hostname: String,
    pub limits: Limits,
    pub emulator: Option<PathBuf>,
    pub seccomp: bool,
    pub host_network: bool,
    /// Directories of the image that get an empty writable tmpfs each.
    pub volumes: Vec<PathBuf>,
}

/// A malformed configuration message.
#[derive(Debug, thiserror::Error)]
#[error("decoding the sandbox configuration: {0}")]
pub(crate) struct DecodeError(&'static str);

#[derive(Default)]
struct Encoder(Vec<u8>);

impl Encoder {
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn duration(&mut self, d: Duration) {
        self.u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
}

struct Decoder<'a>(&'a [u8]);

impl Decoder<'_> {
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let (head, rest) = self
            .0
            .split_at_checked(8)
            .ok_or(DecodeError("truncated number"))?;
        self.0 = rest;
        Ok(u64::from_le_bytes(head.try_into().expect("eight bytes")))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.u64()?).map_err(|_| DecodeError("id out of range"))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = usize::try_from(self.u64()?).map_err(|_| DecodeError("length too large"))?;
        let (head, rest) = self
            .0
            .split_at_checked(len)
            .ok_or(DecodeError("truncated string"))?;
        self.0 = rest;
        Ok(head.to_vec())
    }
    fn os(&mut self) -> Result<OsString, DecodeError> {
        Ok(OsString::from_vec(self.bytes()?))
    }
    fn duration(&mut self) -> Result<Duration, DecodeError> {
        Ok(Duration::from_millis(self.u64()?))
    }
}

impl Config {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.bytes(self.rootfs.as_os_str().as_bytes());
        e.u64(self.argv.len() as u64);
        for arg in &self.argv {
            e.bytes(arg.as_bytes());
        }
        e.u64(self.env.len() as u64);
        for (k, v) in &self.env {
            e.bytes(k.as_bytes());
            e.bytes(v.as_bytes());
        }
        e.u64(self.uid.into());
        e.u64(self.gid.into());
        e.bytes(self.workdir.as_os_str().as_bytes());
        e.bytes(self.hostname.as_bytes());
        let l = &self.limits;
        e.duration(l.wall_time);
        e.duration(l.kill_grace);
        for v in [
            l.memory_bytes,
            l.max_processes,
            l.max_open_files,
            l.max_output_bytes,
            l.max_file_bytes,
            l.tmp_bytes,
            l.tmp_inodes,
            l.cpu_millis,
            u64::from(self.seccomp),
            u64::from(self.host_network),
        ] {
            e.u64(v);
        }
        match &self.emulator {
            Some(p) => {
                e.u64(1);
                e.bytes(p.as_os_str().as_bytes());
            }
            None => e.u64(0),
        }
        e.u64(self.volumes.len() as u64);
        for v in &self.volumes {
            e.bytes(v.as_os_str().as_bytes());
        }
        e.0
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Config, DecodeError> {
        let mut d = Decoder(bytes);
        let rootfs = PathBuf::from(d.os()?);
        let argc = d.u64()?;
        let argv = (0..argc).map(|_| d.os()).collect::<Result<_, _>>()?;
        let envc = d.u64()?;
        let env = (0..envc)
            .map(|_| Ok((d.os()?, d.os()?)))
            .collect::<Result<_, DecodeError>>()?;
        let uid = d.u32()?;
        let gid = d.u32()?;
        let workdir = PathBuf::from(d.os()?);
        let hostname =
            String::from_utf8(d.bytes()?).map_err(|_| DecodeError("host name is not utf-8"))?;
        let limits = Limits {
            wall_time: d.duration()?,
            kill_grace: d.duration()?,
            memory_bytes: d.u64()?,
            max_processes: d.u64()?,
            max_open_files: d.u64()?,
            max_output_bytes: d.u64()?,
            max_file_bytes: d.u64()?,
            tmp_bytes: d.u64()?,
            tmp_inodes: d.u64()?,
            cpu_millis: d.u64()?,
        };
        let seccomp = d.u64()? != 0;
        let host_network = d.u64()? != 0;
        let emulator = match d.u64()? {
            0 => None,
            1 => Some(PathBuf::from(d.os()?)),
            _ => return Err(DecodeError("bad emulator tag")),
        };
        let volumec = d.u64()?;
        let volumes = (0..volumec)
            .map(|_| d.os().map(PathBuf::from))
            .collect::<Result<_, _>>()?;
        if !d.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(Config {
            rootfs,
            argv,
            env,
            uid,
            gid,
            workdir,
            hostname,
            limits,
            emulator,
            seccomp,
            host_network,
            volumes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        Config {
            rootfs: "/tmp/root fs".into(),
            argv: vec!["/hello".into(), "wörld".into(), "".into()],
            env: vec![("K".into(), "V=W".into()), ("EMPTY".into(), "".into())],
            uid: 65532,
            gid: 65533,
            workdir: "/".into(),
            hostname: "sandbox".into(),
            limits: Limits {
                wall_time: Duration::from_millis(1500),
                memory_bytes: 1 << 30,
                ..Limits::default()
            },
            emulator: Some("/usr/bin/qemu-aarch64-static".into()),
            seccomp: false,
            host_network: true,
            volumes: vec!["/data".into(), "/var/cache/app".into()],
        }
    }

    #[test]
    fn round_trips() {
        let config = sample();
        assert_eq!(Config::decode(&config.encode()).unwrap(), config);
        let none = Config {
            emulator: None,
            ..sample()
        };
        assert_eq!(Config::decode(&none.encode()).unwrap(), none);
    }

    #[test]
    fn rejects_truncated_and_trailing_input() {
        let bytes = sample().encode();
        for cut in [0, 7, 20, bytes.len() - 1] {
            assert!(Config::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Config::decode(&long).is_err());
    }
}
