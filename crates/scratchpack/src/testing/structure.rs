//! Structure tests: which paths an image holds, with which type and mode (as
//! its layers' tar headers say, not as the unpacked host files are), which it
//! must not hold, and what its config (image-spec `config.md`) tells a
//! runtime.

use std::collections::BTreeSet;

use super::command::{config_env, config_volumes, parse_user};
use crate::manifest::{FileKind, StructureTest};
use crate::oci::spec::Config as ImageConfig;
use crate::unpack::Tree;

/// Every way the image falls short of `test`; empty when it passes.
pub fn check(tree: &Tree, config: &ImageConfig, test: &StructureTest) -> Vec<String> {
    let mut problems = Vec::new();
    for f in &test.files {
        // Parents resolve through symlinks, as the kernel would; the path
        // itself is checked as it is, so `type = "symlink"` can be asked for.
        let Some((_, node)) = tree.lookup(f.path.as_str(), false) else {
            problems.push(format!("{} is missing", f.path.as_str()));
            continue;
        };
        if let Some(kind) = f.kind
            && kind != node.kind
        {
            problems.push(format!(
                "{} is a {}, expected a {}",
                f.path.as_str(),
                kind_name(node.kind),
                kind_name(kind)
            ));
        }
        if let Some(mode) = f.mode
            && mode != node.mode
        {
            problems.push(format!(
                "{} has mode {:04o}, expected {mode:04o}",
                f.path.as_str(),
                node.mode
            ));
        }
    }
    for path in &test.absent {
        // Absent means no entry at all, and nothing reachable through links:
        // `/bin/sh` is present when `/bin` links to a `usr/bin` holding `sh`.
        let entry = tree.lookup(path.as_str(), false).map(|(p, n)| (p, n.kind));
        let reached = tree.lookup(path.as_str(), true).map(|(p, n)| (p, n.kind));
        if let Some((found, kind)) = entry.or(reached) {
            let via = if found == path.as_str() {
                String::new()
            } else {
                format!(" as {found}")
            };
            problems.push(format!(
                "{} should be absent, but the image has it{via} (a {})",
                path.as_str(),
                kind_name(kind)
            ));
        }
    }
    check_config(config, test, &mut problems);
    problems
}

fn check_config(config: &ImageConfig, test: &StructureTest, problems: &mut Vec<String>) {
    let exec = &config.config;
    let want = &test.config;
    let mut differ = |what: &str, expected: String, actual: String| {
        if expected != actual {
            problems.push(format!(
                "config {what}: expected {expected}, found {actual}"
            ));
        }
    };
    if let Some(entrypoint) = &want.entrypoint {
        differ(
            "entrypoint",
            format!("{entrypoint:?}"),
            format!("{:?}", exec.entrypoint.clone().unwrap_or_default()),
        );
    }
    if let Some(cmd) = &want.cmd {
        differ(
            "cmd",
            format!("{cmd:?}"),
            format!("{:?}", exec.cmd.clone().unwrap_or_default()),
        );
    }
    if let Some(user) = &want.user {
        let raw = exec.user.clone().unwrap_or_default();
        let actual = parse_user(&raw).map_or(raw, |u| u.to_string());
        differ("user", user.to_string(), actual);
    }
    if let Some(workdir) = &want.workdir {
        let actual = exec
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned());
        differ("working directory", workdir.as_str().to_owned(), actual);
    }
    let env = config_env(config);
    for (k, v) in &want.env {
        match env.get(k) {
            Some(actual) => differ(&format!("env {k}"), format!("{v:?}"), format!("{actual:?}")),
            None => differ(&format!("env {k}"), format!("{v:?}"), "nothing".to_owned()),
        }
    }
    if let Some(ports) = &want.ports {
        let actual: BTreeSet<String> = exec
            .exposed_ports
            .iter()
            .flatten()
            .map(|(p, _)| p.clone())
            .collect();
        differ("exposed ports", format!("{ports:?}"), format!("{actual:?}"));
    }
    if let Some(volumes) = &want.volumes {
        let actual: BTreeSet<String> = config_volumes(config).into_iter().collect();
        differ("volumes", format!("{volumes:?}"), format!("{actual:?}"));
    }
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "file",
        FileKind::Dir => "directory",
        FileKind::Symlink => "symlink",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ConfigCheck, FileCheck, ImagePath, User};
    use crate::oci::spec::ExecConfig;
    use crate::unpack::Node;

    fn tree() -> Tree {
        let mut t = Tree::default();
        for (path, kind, mode) in [
            ("/", FileKind::Dir, 0o755),
            ("/hello", FileKind::File, 0o755),
            ("/tmp", FileKind::Dir, 0o1777),
        ] {
            t.nodes.insert(
                path.to_owned(),
                Node {
                    kind,
                    mode,
                    link: None,
                },
            );
        }
        t
    }

    fn config() -> ImageConfig {
        ImageConfig {
            config: ExecConfig {
                user: Some("65532:65532".into()),
                env: Some(vec!["A=1".into()]),
                entrypoint: Some(vec!["/hello".into()]),
                exposed_ports: Some([("8080/tcp".to_owned(), serde_json::json!({}))].into()),
                ..ExecConfig::default()
            },
            ..ImageConfig::default()
        }
    }

    fn path(p: &str) -> ImagePath {
        ImagePath::parse(p).unwrap()
    }

    #[test]
    fn absent_paths_are_looked_up_through_symlinks() {
        let mut t = tree();
        for (p, kind, link) in [
            ("/usr", FileKind::Dir, None),
            ("/usr/bin", FileKind::Dir, None),
            ("/usr/bin/busybox", FileKind::File, None),
            ("/usr/bin/sh", FileKind::Symlink, Some("busybox")),
            ("/bin", FileKind::Symlink, Some("usr/bin")),
            ("/loop", FileKind::Symlink, Some("/loop")),
        ] {
            t.nodes.insert(
                p.to_owned(),
                Node {
                    kind,
                    mode: 0o755,
                    link: link.map(str::to_owned),
                },
            );
        }
        let test = StructureTest {
            absent: vec![path("/bin/sh"), path("/bin/bash"), path("/loop/x")],
            ..StructureTest::default()
        };
        let problems = check(&t, &config(), &test);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("/bin/sh") && problems[0].contains("as /usr/bin/sh"));
        let (resolved, node) = t.lookup("/bin/sh", true).unwrap();
        assert_eq!(
            (resolved.as_str(), node.kind),
            ("/usr/bin/busybox", FileKind::File)
        );
        assert!(t.lookup("/loop/x", true).is_none(), "link loops end");
        let symlink = StructureTest {
            files: vec![FileCheck {
                path: path("/bin/sh"),
                mode: None,
                kind: Some(FileKind::Symlink),
            }],
            ..StructureTest::default()
        };
        assert_eq!(check(&t, &config(), &symlink), Vec::<String>::new());
    }

    #[test]
    fn a_matching_image_passes() {
        let test = StructureTest {
            files: vec![
                FileCheck {
                    path: path("/hello"),
                    mode: Some(0o755),
                    kind: Some(FileKind::File),
                },
                FileCheck {
                    path: path("/tmp"),
                    mode: Some(0o1777),
                    kind: Some(FileKind::Dir),
                },
            ],
            absent: vec![path("/bin/sh")],
            config: ConfigCheck {
                entrypoint: Some(vec!["/hello".into()]),
                cmd: Some(vec![]),
                user: Some(User {
                    uid: 65532,
                    gid: 65532,
                }),
                workdir: Some(path("/")),
                env: [("A".to_owned(), "1".to_owned())].into(),
                ports: Some(["8080/tcp".to_owned()].into()),
                volumes: Some(BTreeSet::new()),
            },
        };
        assert_eq!(check(&tree(), &config(), &test), Vec::<String>::new());
    }

    #[test]
    fn every_mismatch_is_named() {
        let test = StructureTest {
            files: vec![
                FileCheck {
                    path: path("/hello"),
                    mode: Some(0o700),
                    kind: Some(FileKind::Dir),
                },
                FileCheck {
                    path: path("/etc/ssl/certs.pem"),
                    mode: None,
                    kind: None,
                },
            ],
            absent: vec![path("/tmp")],
            config: ConfigCheck {
                user: Some(User { uid: 0, gid: 0 }),
                env: [("B".to_owned(), "2".to_owned())].into(),
                ports: Some(BTreeSet::new()),
                volumes: Some(["/data".to_owned()].into()),
                ..ConfigCheck::default()
            },
        };
        let text = check(&tree(), &config(), &test).join("\n");
        for needle in [
            "/hello is a file, expected a directory",
            "/hello has mode 0755, expected 0700",
            "/etc/ssl/certs.pem is missing",
            "/tmp should be absent",
            "config user: expected 0:0, found 65532:65532",
            "config env B",
            "config exposed ports",
            "config volumes: expected {\"/data\"}, found {}",
        ] {
            assert!(text.contains(needle), "{needle} not in:\n{text}");
        }
    }
}
