//! The files an image opts into with `ca-certificates = true` and
//! `passwd = true`, and the image timestamp from `--source-date-epoch`.

use std::io::Read as _;

use crate::support::{Fixture, HELLO_MAIN};
use crate::validate;

/// The contents of every regular file in a layer tar, by path.
fn files(tar: &[u8]) -> Vec<(String, Vec<u8>, u64)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mtime = e.header().mtime().unwrap();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (path, bytes, mtime)
        })
        .collect()
}

#[test]
fn opted_in_files_are_in_the_image_and_the_flag_sets_the_epoch() {
    let fx = Fixture::new(
        &[("app", HELLO_MAIN)],
        "[defaults]\nca-certificates = true\nsource-date-epoch = 5\n\n\
         [images.app]\npackage = \"app\"\nuser = \"1000:2000\"\npasswd = true\n",
    );
    let out = fx.cli(&["images", "--source-date-epoch", "1700000000"]);
    assert!(out.status.success());
    let image = validate::layout(&fx.path().join("target/images/app"));
    let img = &image.images[0];
    assert_eq!(
        img.config["config"]["Labels"]["dev.scratchpack.ca-certificates.version"],
        "webpki-root-certs 1.0.11"
    );
    let entries = files(&img.layers[0]);
    let get = |path: &str| {
        entries
            .iter()
            .find(|(p, _, _)| p == path)
            .unwrap_or_else(|| panic!("no {path} in {entries:?}"))
    };
    let passwd = String::from_utf8(get("etc/passwd").1.clone()).unwrap();
    assert!(passwd.contains("\nnonroot:x:1000:2000:"), "{passwd}");
    let group = String::from_utf8(get("etc/group").1.clone()).unwrap();
    assert!(group.contains("\nnonroot:x:2000:\n"), "{group}");
    let bundle = String::from_utf8(get("etc/ssl/certs/ca-certificates.crt").1.clone()).unwrap();
    assert!(bundle.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(bundle.matches("BEGIN CERTIFICATE").count() > 100);
    // The flag beats images.toml's `source-date-epoch = 5`.
    assert!(entries.iter().all(|(_, _, mtime)| *mtime == 1_700_000_000));

    // Without the flag, images.toml's value is the epoch.
    let out = fx.cli(&["images"]);
    assert!(out.status.success());
    let image = validate::layout(&fx.path().join("target/images/app"));
    assert!(
        files(&image.images[0].layers[0])
            .iter()
            .all(|(_, _, mtime)| *mtime == 5)
    );

    // A garbage flag is a usage error that names the flag.
    let out = fx.cli(&["images", "--source-date-epoch", "tomorrow"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--source-date-epoch is `tomorrow`"));
}
