//! Resolution of an image's `[images.<name>.tests.<test>]` tables into
//! command and structure tests (README's "Image tests"); the service keys
//! are `service_tables.rs`'s.

use std::collections::BTreeMap;

use super::*;

impl Resolver<'_> {
    /// An expected exit code (0 when none is given); one no process can
    /// end with is an error at its place.
    pub(super) fn exit_code(&mut self, code: Option<&S<i64>>) -> i32 {
        match code {
            Some(code) if (0..=255).contains(code.get_ref()) => *code.get_ref() as i32,
            Some(code) => {
                self.error(
                    Diagnostic::new(
                        format!("exit code {} can never happen", code.get_ref()),
                        span_of(code),
                    )
                    .label("exit codes are 0 to 255"),
                );
                0
            }
            None => 0,
        }
    }

    pub(super) fn test(
        &mut self,
        name: &S<String>,
        t: &RawTest,
        binary_path: Option<&ImagePath>,
    ) -> Option<TestPlan> {
        let name_span = span_of(name);
        if invalid_image_name(name.get_ref()).is_some() {
            self.error(
                Diagnostic::new(
                    format!("invalid test name `{}`", name.get_ref()),
                    name_span.clone(),
                )
                .help("test names use lowercase letters, digits, `.`, `_` and `-`"),
            );
        }
        let is_structure = t.keys.iter().any(|k| STRUCTURE_KEYS.contains(k));
        let is_command = t.keys.iter().any(|k| !STRUCTURE_KEYS.contains(k));
        if t.keys.is_empty() {
            self.error(
                Diagnostic::new(format!("test `{}` checks nothing", name.get_ref()), name_span)
                    .help("give a command test `exit-code`, `stdout` or `args`, a service test `service`, or a structure test `files`, `absent` or `config`"),
            );
            return None;
        }
        let mut command = is_command.then(|| self.command_test(name, t));
        let service = self.service_keys(name, t, command.as_mut());
        let structure = is_structure.then(|| self.structure_test(t, binary_path));
        Some(TestPlan {
            name: name.get_ref().clone(),
            command,
            structure,
            service,
        })
    }

    /// The keys of a command test: how the program runs and what it must do.
    fn command_test(&mut self, name: &S<String>, t: &RawTest) -> CommandTest {
        if let Some(args) = &t.args {
            self.no_nul(
                &format!("`args` of test `{}`", name.get_ref()),
                args.get_ref(),
            );
        }
        let mut env = BTreeMap::new();
        for (k, v) in t.env.iter().flatten() {
            if self.env_var(k, v) {
                env.insert(k.get_ref().clone(), v.get_ref().clone());
            }
        }
        let timeout_ms = match &t.timeout {
            Some(s) if *s.get_ref() > 0.0 && *s.get_ref() <= 3600.0 => {
                (*s.get_ref() * 1000.0).ceil() as u64
            }
            Some(s) => {
                self.error(
                    Diagnostic::new("invalid timeout", span_of(s))
                        .label("seconds, more than 0 and at most 3600"),
                );
                DEFAULT_TEST_TIMEOUT_MS
            }
            None => DEFAULT_TEST_TIMEOUT_MS,
        };
        let user = t.user.as_ref().and_then(|u| self.user(u));
        let workdir = t
            .workdir
            .as_ref()
            .and_then(|w| self.image_path(w, "workdir"));
        let exit_code = self.exit_code(t.exit_code.as_ref());
        CommandTest {
            args: t.args.as_ref().map(strings),
            env,
            stdin: t.stdin.as_ref().map(|s| s.get_ref().clone()),
            timeout_ms,
            user,
            workdir,
            exit_code,
            stdout: self.output(t.stdout.as_ref()),
            stderr: self.output(t.stderr.as_ref()),
            seccomp: t.seccomp.as_ref().is_none_or(|s| *s.get_ref()),
        }
    }

    /// The keys of a structure test: files that must be there, paths that
    /// must not, and the image's configuration.
    fn structure_test(&mut self, t: &RawTest, binary_path: Option<&ImagePath>) -> StructureTest {
        let mut files = Vec::new();
        for f in t.files.iter().flatten() {
            let Some(path) = self.image_path(&f.path, "path") else {
                continue;
            };
            let mode = f.mode.as_ref().map(|m| self.mode(Some(m), 0));
            let kind = match f.kind.as_ref() {
                None => None,
                Some(k) => match k.get_ref().as_str() {
                    "file" => Some(FileKind::File),
                    "dir" => Some(FileKind::Dir),
                    "symlink" => Some(FileKind::Symlink),
                    other => {
                        self.error(
                            Diagnostic::new(format!("unknown file type `{other}`"), span_of(k))
                                .help("types: `file`, `dir`, `symlink`"),
                        );
                        None
                    }
                },
            };
            files.push(FileCheck { path, mode, kind });
        }
        let mut absent = Vec::new();
        for a in t.absent.iter().flat_map(|a| a.get_ref()) {
            if let Some(p) = self.image_path(a, "absent") {
                if Some(&p) == binary_path {
                    self.error(
                        Diagnostic::new(format!("`{p}` is the image's binary"), span_of(a))
                            .label("always present"),
                    );
                }
                absent.push(p);
            }
        }
        let config = match &t.config {
            None => ConfigCheck::default(),
            Some(c) => self.config_check(c),
        };
        StructureTest {
            files,
            absent,
            config,
        }
    }

    /// What a structure test expects of the image's configuration.
    fn config_check(&mut self, c: &RawConfigCheck) -> ConfigCheck {
        let mut env = BTreeMap::new();
        for (k, v) in c.env.iter().flatten() {
            env.insert(k.get_ref().clone(), v.get_ref().clone());
        }
        ConfigCheck {
            entrypoint: c.entrypoint.as_ref().map(strings),
            cmd: c.cmd.as_ref().map(strings),
            user: c.user.as_ref().and_then(|u| self.user(u)),
            workdir: c
                .workdir
                .as_ref()
                .and_then(|w| self.image_path(w, "workdir")),
            env,
            ports: c.ports.as_ref().map(|ports| {
                ports
                    .get_ref()
                    .iter()
                    .filter_map(|p| self.port(p))
                    .collect()
            }),
            volumes: c.volumes.as_ref().map(|volumes| {
                volumes
                    .get_ref()
                    .iter()
                    .filter_map(|v| self.image_path(v, "volumes"))
                    .map(|v| v.as_str().to_owned())
                    .collect()
            }),
        }
    }

    pub(super) fn output(&mut self, raw: Option<&RawOutput>) -> OutputExpect {
        let Some(raw) = raw else {
            return OutputExpect::default();
        };
        if let Some(re) = &raw.regex
            && let Err(e) = regex_lite::Regex::new(re.get_ref())
        {
            self.error(
                Diagnostic::new(format!("invalid regex: {e}"), span_of(re))
                    .label("does not compile"),
            );
        }
        let contains_bytes = raw
            .contains_hex
            .iter()
            .flat_map(|list| list.get_ref())
            .filter_map(|hex| self.hex(hex))
            .collect();
        OutputExpect {
            equals: raw.equals.as_ref().map(|s| s.get_ref().clone()),
            contains: raw.contains.as_ref().map(strings).unwrap_or_default(),
            contains_bytes,
            regex: raw.regex.as_ref().map(|r| r.get_ref().clone()),
        }
    }

    /// The bytes a hex string (`send-hex`, `contains-hex`) stands for; an
    /// error at its place when it is not one.
    pub(super) fn hex(&mut self, hex: &S<String>) -> Option<Vec<u8>> {
        match values::parse_hex(hex.get_ref()) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                self.error(
                    Diagnostic::new(format!("invalid hex bytes: {e}"), span_of(hex))
                        .label("not hex bytes")
                        .help("two hex digits per byte, spaces allowed: \"00 1d 12 34\""),
                );
                None
            }
        }
    }
}
