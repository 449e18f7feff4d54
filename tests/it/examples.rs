//! The repository's own example images, built as a new user builds them and
//! checked with tools nobody here wrote: skopeo, umoci, tar, and the kernel.

use std::path::Path;
use std::process::Command;

use crate::support::{self, EXAMPLE_PLATFORMS, examples, require_tool, run};
use crate::validate;

#[test]
fn every_example_is_a_valid_layout_for_every_platform() {
    let ex = examples();
    assert_eq!(ex.images.len(), 4);
    for image in &ex.images {
        let layout = Path::new(image["layout"].as_str().unwrap());
        let v = validate::layout(layout);
        assert_eq!(v.top_digest, image["digest"].as_str().unwrap());
        let platforms: Vec<&str> = v.images.iter().map(|i| i.platform.as_str()).collect();
        assert_eq!(platforms, EXAMPLE_PLATFORMS);
    }
}

#[test]
fn skopeo_reads_the_index_and_each_platform() {
    let Some(skopeo) = require_tool("skopeo", "skopeo") else {
        return;
    };
    let ex = examples();
    for image in &ex.images {
        let layout = image["layout"].as_str().unwrap();
        let raw = run(Command::new(&skopeo)
            .args(["inspect", "--raw"])
            .arg(format!("oci:{layout}")));
        assert!(raw.status.success());
        let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
        let platforms: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let p = &m["platform"];
                let mut name = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                );
                if let Some(variant) = p["variant"].as_str() {
                    name = format!("{name}/{variant}");
                }
                name
            })
            .collect();
        assert_eq!(platforms, EXAMPLE_PLATFORMS);
        // skopeo picks each platform from the index by architecture (and,
        // for arm, variant) and reads that platform's own config.
        for platform in EXAMPLE_PLATFORMS {
            let mut parts = platform.split('/').skip(1);
            let arch = parts.next().unwrap();
            let variant = parts.next();
            let mut cmd = Command::new(&skopeo);
            cmd.args(["inspect", "--config", "--raw", "--override-arch", arch]);
            if let Some(variant) = variant {
                cmd.args(["--override-variant", variant]);
            }
            let out = run(cmd.arg(format!("oci:{layout}")));
            assert!(out.status.success(), "{platform}");
            let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(config["architecture"], arch, "{platform}");
            assert_eq!(config["os"], "linux");
            assert_eq!(config["variant"].as_str(), variant, "{platform}");
            let ours = image["platforms"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["platform"] == platform)
                .unwrap();
            assert_eq!(
                format!(
                    "sha256:{:x}",
                    <sha2::Sha256 as sha2::Digest>::digest(&out.stdout)
                ),
                ours["config"].as_str().unwrap(),
                "{platform}"
            );
        }
    }
}

/// Unpacks `layout:tag` with umoci and runs `/hello` in it under
/// `unshare -r chroot`, returning stdout.
fn umoci_run(umoci: &Path, unshare: &Path, image: &str, argv: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    let out = run(Command::new(umoci)
        .args(["unpack", "--rootless", "--image", image])
        .arg(&bundle));
    assert!(out.status.success(), "umoci unpack {image}");
    let out = run(Command::new(unshare)
        .args(["-r", "chroot"])
        .arg(bundle.join("rootfs"))
        .args(argv));
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn umoci_unpacks_and_the_binary_runs_under_chroot() {
    let (Some(umoci), Some(unshare), Some(skopeo)) = (
        require_tool("umoci", "umoci"),
        require_tool("unshare", "util-linux"),
        require_tool("skopeo", "skopeo"),
    ) else {
        return;
    };
    // umoci reads one platform: pick amd64 from the index with skopeo, as a
    // user of a multi-platform layout would.
    let ex = examples();
    let hello = ex.image("hello");
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("amd64");
    let out = run(Command::new(&skopeo)
        .args(["copy", "--preserve-digests", "--override-arch", "amd64"])
        .arg(format!("oci:{}", hello["layout"].as_str().unwrap()))
        .arg(format!("oci:{}:latest", single.display())));
    assert!(out.status.success());
    let stdout = umoci_run(
        &umoci,
        &unshare,
        &format!("{}:latest", single.display()),
        &["/hello", "from", "chroot"],
    );
    assert!(stdout.contains("Hello from a scratch image!"), "{stdout}");
    assert!(stdout.contains("args: from chroot"), "{stdout}");

    // A single-platform image's own layout goes to umoci as it is.
    let fx = support::Fixture::new(
        &[("app", support::HELLO_MAIN)],
        "[images.app]\npackage = \"app\"\n",
    );
    assert!(fx.cli(&["images"]).status.success());
    let layout = fx.path().join("target/images/app");
    let stdout = umoci_run(
        &umoci,
        &unshare,
        &format!("{}:latest", layout.display()),
        &["/app"],
    );
    assert_eq!(stdout, "hello from a fixture\n");
}

#[test]
fn layers_hold_exactly_the_declared_entries() {
    let ex = examples();
    let expected = [
        ("hello", vec![("hello", 0o755, '-'), ("tmp/", 0o1777, 'd')]),
        (
            "greeter",
            vec![
                ("etc/", 0o755, 'd'),
                ("etc/greeter/", 0o755, 'd'),
                ("etc/greeter/greeting.txt", 0o444, '-'),
                ("greeter", 0o755, '-'),
            ],
        ),
        ("notes", vec![("notes", 0o755, '-'), ("tmp/", 0o1777, 'd')]),
    ];
    for (name, entries) in expected {
        let v = validate::layout(Path::new(ex.image(name)["layout"].as_str().unwrap()));
        for image in &v.images {
            assert_eq!(image.layers.len(), 1);
            let listing = validate::tar_entries(&image.layers[0]);
            let got: Vec<(&str, u32, char)> = listing
                .iter()
                .map(|e| (e.path.as_str(), e.mode, e.kind))
                .collect();
            assert_eq!(got, entries, "{name} {}", image.platform);
            assert!(
                listing
                    .iter()
                    .all(|e| e.uid == 0 && e.gid == 0 && e.mtime == 0)
            );
        }
    }
}

#[test]
fn layers_list_the_same_with_gnu_tar() {
    let Some(tar) = require_tool("tar", "tar") else {
        return;
    };
    let ex = examples();
    let hello = ex.image("hello");
    let layer = hello["platforms"][0]["layer"].as_str().unwrap();
    let blob = Path::new(hello["layout"].as_str().unwrap())
        .join("blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let out = run(Command::new(tar)
        .args(["--numeric-owner", "-tvzf"])
        .arg(&blob)
        .env("TZ", "UTC"));
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    assert!(
        lines[0].starts_with("-rwxr-xr-x 0/0") && lines[0].ends_with(" hello"),
        "{listing}"
    );
    assert!(
        lines[1].starts_with("drwxrwxrwt 0/0") && lines[1].ends_with(" tmp/"),
        "{listing}"
    );
    assert!(
        lines.iter().all(|l| l.contains("1970-01-01 00:00")),
        "{listing}"
    );
}

/// Per platform: ELF class (1: 32-bit, 2: 64-bit), byte order (1: little
/// endian), `e_machine`, and the words file(1) uses for that machine.
const ELF_IDENTITY: [(&str, u8, u8, u16, &str); 6] = [
    ("linux/amd64", 2, 1, 62, "x86-64"),
    ("linux/arm64", 2, 1, 183, "ARM aarch64"),
    ("linux/arm/v7", 1, 1, 40, "ARM, EABI5"),
    ("linux/386", 1, 1, 3, "386"),
    ("linux/riscv64", 2, 1, 243, "RISC-V"),
    ("linux/ppc64le", 2, 1, 21, "64-bit PowerPC"),
];

fn elf_identity(platform: &str) -> (u8, u8, u16, &'static str) {
    let (_, class, data, machine, words) = ELF_IDENTITY
        .iter()
        .find(|p| p.0 == platform)
        .unwrap_or_else(|| panic!("unexpected platform {platform}"));
    (*class, *data, *machine, words)
}

#[test]
fn binaries_are_static_elf_for_their_platform() {
    let ex = examples();
    for image in &ex.images {
        let mut seen = Vec::new();
        for p in image["platforms"].as_array().unwrap() {
            let platform = p["platform"].as_str().unwrap();
            let (class, data, machine, _) = elf_identity(platform);
            let bin = std::fs::read(p["binary"].as_str().unwrap()).unwrap();
            assert_eq!(&bin[..4], b"\x7fELF", "{platform}");
            assert_eq!(bin[4], class, "{platform}: ELF class");
            assert_eq!(bin[5], data, "{platform}: byte order");
            assert_eq!(
                u16::from_le_bytes([bin[18], bin[19]]),
                machine,
                "{platform}: machine"
            );
            // No program header asks for a loader (PT_INTERP is 3).
            let phdrs = program_header_types(&bin, class);
            assert!(!phdrs.is_empty(), "{platform}");
            assert!(!phdrs.contains(&3), "{platform}: PT_INTERP");
            seen.push(platform);
        }
        assert_eq!(seen, EXAMPLE_PLATFORMS);
    }
    // And with an independent reader, when there is one.
    if let Some(file) = require_tool("file", "file") {
        let hello = ex.image("hello");
        for p in hello["platforms"].as_array().unwrap() {
            let platform = p["platform"].as_str().unwrap();
            let (class, _, _, words) = elf_identity(platform);
            let out = run(Command::new(&file).arg(p["binary"].as_str().unwrap()));
            let desc = String::from_utf8_lossy(&out.stdout);
            assert!(
                desc.contains("statically linked") || desc.contains("static-pie"),
                "{platform}: {desc}"
            );
            let bits = if class == 1 {
                "ELF 32-bit LSB"
            } else {
                "ELF 64-bit LSB"
            };
            assert!(desc.contains(bits), "{platform}: {desc}");
            assert!(desc.contains(words), "{platform}: {desc}");
        }
    }
}

/// The `p_type` of every program header of a little-endian ELF file of
/// `class`, read as the kernel reads them.
fn program_header_types(bin: &[u8], class: u8) -> Vec<u32> {
    let u16_at = |o: usize| u16::from_le_bytes([bin[o], bin[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(bin[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bin[o..o + 8].try_into().unwrap());
    let (phoff, phentsize, phnum) = if class == 1 {
        (u32_at(28) as usize, u16_at(42), u16_at(44))
    } else {
        (u64_at(32) as usize, u16_at(54), u16_at(56))
    };
    (0..phnum).map(|i| u32_at(phoff + i * phentsize)).collect()
}

/// Where the build happened must not show in what ships: the checkout, the
/// target directory, cargo's home, and the toolchain (whose `rust-src`
/// component, when installed, makes rustc point std's panic locations at it).
#[test]
fn binaries_hold_no_host_path() {
    let ex = examples();
    let sysroot = run(Command::new("rustc").args(["--print", "sysroot"]));
    let sysroot = String::from_utf8(sysroot.stdout).unwrap().trim().to_owned();
    let cargo_home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    let root = support::repo_root();
    let target = support::nested_target_dir();
    let host_paths = [
        root.to_str().unwrap(),
        target.to_str().unwrap(),
        cargo_home.as_str(),
        sysroot.as_str(),
    ];
    for image in &ex.images {
        for p in image["platforms"].as_array().unwrap() {
            let path = p["binary"].as_str().unwrap();
            let bin = std::fs::read(path).unwrap();
            for host in host_paths {
                assert!(
                    !bin.windows(host.len()).any(|w| w == host.as_bytes()),
                    "{path} contains the host path {host}"
                );
            }
        }
    }
}

#[test]
fn docker_archive_loads_with_skopeo_and_keeps_digests() {
    let Some(skopeo) = require_tool("skopeo", "skopeo") else {
        return;
    };
    let ex = examples();
    for image in &ex.images {
        let name = image["name"].as_str().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("copy");
        let out = run(Command::new(&skopeo)
            .args(["copy", "--preserve-digests"])
            .arg(format!(
                "docker-archive:{}",
                image["archive"].as_str().unwrap()
            ))
            .arg(format!("oci:{}:{name}", dest.display())));
        assert!(out.status.success());
        // docker's image ID is the config digest; the copy keeps it, and its
        // layers are ours (compressed or as their uncompressed diff_id).
        let host = image["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["platform"] == "linux/amd64")
            .unwrap();
        let copied = validate::layout(&dest);
        assert_eq!(copied.images.len(), 1);
        let config_digest = {
            let idx: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
            let m = &idx["manifests"][0]["digest"];
            let hex = m.as_str().unwrap().strip_prefix("sha256:").unwrap();
            let manifest: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dest.join("blobs/sha256").join(hex)).unwrap(),
            )
            .unwrap();
            manifest["config"]["digest"].as_str().unwrap().to_owned()
        };
        assert_eq!(config_digest, host["config"].as_str().unwrap(), "{name}");
        let ours = validate::layout(Path::new(image["layout"].as_str().unwrap()));
        let amd64 = ours
            .images
            .iter()
            .find(|i| i.platform == "linux/amd64")
            .unwrap();
        assert_eq!(copied.images[0].layers, amd64.layers, "{name}");
        // The archive is an OCI layout too, of the same one platform,
        // named by its full reference.
        let out = run(Command::new(&skopeo)
            .args(["inspect", "--raw"])
            .arg(format!(
                "oci-archive:{}:{name}:latest",
                image["archive"].as_str().unwrap()
            )));
        assert!(out.status.success());
        let raw = out.stdout;
        assert_eq!(
            format!("sha256:{:x}", <sha2::Sha256 as sha2::Digest>::digest(&raw)),
            host["manifest"].as_str().unwrap()
        );
    }
}

/// The examples loaded one after the other into one store keep their own
/// names, and each is the first platform images.toml lists, whatever the host.
#[test]
fn podman_loads_every_example_under_its_own_name() {
    let Some(podman) = support::Podman::new() else {
        return;
    };
    let ex = examples();
    for image in &ex.images {
        podman.load(image["archive"].as_str().unwrap());
    }
    for image in &ex.images {
        let first = &image["platforms"][0];
        assert_eq!(first["platform"], "linux/amd64");
        for tag in image["tags"].as_array().unwrap() {
            let name = format!(
                "localhost/{}:{}",
                image["name"].as_str().unwrap(),
                tag.as_str().unwrap()
            );
            let (platform, id) = podman.inspect(&name);
            assert_eq!(platform, "linux/amd64", "{name}");
            // podman's image ID is the config digest.
            assert_eq!(
                format!("sha256:{id}"),
                first["config"].as_str().unwrap(),
                "{name}"
            );
        }
    }
    let out = run(podman
        .cmd()
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    let names = String::from_utf8(out.stdout).unwrap();
    assert!(!names.contains("localhost/latest"), "{names}");
}

/// Several tags and a registry: every tag is in the layout's index.json, and
/// podman names the image `registry/repository:tag` for each.
#[test]
fn every_tag_is_addressable_and_loads_under_its_full_reference() {
    let fx = support::Fixture::new(
        &[("app", support::HELLO_MAIN)],
        "[images.app]\npackage = \"app\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
         tags = [\"v1\", \"latest\"]\nregistry = \"registry.example/acme\"\nrepository = \"tool\"\n",
    );
    let out = fx.cli(&["images", "--message-format", "json"]);
    assert!(out.status.success());
    let built = &support::built_images(&out)[0];
    let layout = built["layout"].as_str().unwrap();
    validate::layout(Path::new(layout));
    if let Some(skopeo) = require_tool("skopeo", "skopeo") {
        for tag in ["v1", "latest"] {
            let out = run(Command::new(&skopeo)
                .args(["inspect", "--raw"])
                .arg(format!("oci:{layout}:{tag}")));
            assert!(out.status.success(), "oci:{layout}:{tag}");
            assert_eq!(
                format!(
                    "sha256:{:x}",
                    <sha2::Sha256 as sha2::Digest>::digest(&out.stdout)
                ),
                built["digest"].as_str().unwrap()
            );
        }
    }
    let Some(podman) = support::Podman::new() else {
        return;
    };
    podman.load(built["archive"].as_str().unwrap());
    for tag in ["v1", "latest"] {
        let (platform, id) = podman.inspect(&format!("registry.example/acme/tool:{tag}"));
        assert_eq!(platform, "linux/amd64");
        assert_eq!(
            format!("sha256:{id}"),
            built["platforms"][0]["config"].as_str().unwrap()
        );
    }
}

#[test]
fn a_second_run_packs_nothing() {
    let ex = examples();
    let out = run(support::cli()
        .current_dir(support::repo_root())
        .env("CARGO_TARGET_DIR", support::nested_target_dir())
        .args(["images", "--message-format", "json", "--out"])
        .arg(&ex.out_dir));
    assert!(out.status.success());
    let again = support::built_images(&out);
    assert_eq!(again.len(), ex.images.len());
    for (a, b) in again.iter().zip(&ex.images) {
        assert_eq!(a["fresh"], true, "{}", a["name"]);
        assert_eq!(a["digest"], b["digest"]);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Packed"), "{stderr}");
}

/// Every example binary, on every platform, carries its crate list in
/// cargo-auditable's `.dep-v0` section (read back with the `object` crate,
/// inflated with flate2): the image's package as the root, and for `hello`,
/// which depends on nothing, only itself.
#[test]
fn binaries_carry_their_crate_list() {
    use object::{Object as _, ObjectSection as _};
    use std::io::Read as _;
    let ex = examples();
    for image in &ex.images {
        let name = image["name"].as_str().unwrap();
        for p in image["platforms"].as_array().unwrap() {
            let path = p["binary"].as_str().unwrap();
            let bytes = std::fs::read(path).unwrap();
            let file = object::File::parse(&*bytes).unwrap();
            let section = file
                .section_by_name(".dep-v0")
                .unwrap_or_else(|| panic!("{path} has no .dep-v0 section"));
            let mut json = Vec::new();
            flate2::read::ZlibDecoder::new(section.data().unwrap())
                .read_to_end(&mut json)
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let packages = json["packages"].as_array().unwrap();
            let root: Vec<&str> = packages
                .iter()
                .filter(|p| p["root"] == true)
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(root, [name], "{path}");
            if name == "hello" {
                assert_eq!(packages.len(), 1, "{path}: {json}");
                assert_eq!(packages[0]["source"], "local");
            }
        }
    }
}
