//! `cargo xtask resolve -f FILE|DIR|-`: ko's `resolve` for scratchpack's
//! images. Reads YAML (any number of documents: Kubernetes manifests, Helm
//! or Kustomize output), builds and pushes every image a scalar names as
//! `scratchpack://NAME` (or `scratchpack://NAME:TAG`, which also pushes it
//! under TAG), and prints the YAML with each reference replaced by the
//! pushed `registry/repository@sha256:…`. Only the references change:
//! comments, order, quoting and every other byte are kept, since the text
//! is replaced where the YAML parser says each scalar is, never
//! re-serialised. Nothing is printed unless everything was read and pushed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use saphyr_parser::{Event, Parser, Span};

use super::{Common, Failure, PushImages, TagFlags, Target, in_plan_order, write_image_refs};
use crate::manifest::Tag;
use crate::toolchain::Env;

/// What a reference starts with.
const SCHEME: &str = "scratchpack://";

/// The most YAML `resolve` reads from one file or standard input: far more
/// than any deployment's, and a bound on a mistaken `-f /dev/zero`.
const MAX_YAML: u64 = 64 << 20;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// A YAML file, a directory (its `*.yaml` and `*.yml` files, in path
    /// order, subdirectories included), or `-` for standard input
    /// (repeatable)
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR|-",
        required = true
    )]
    files: Vec<PathBuf>,
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    tags: TagFlags,
    /// Write `registry/repository@sha256:…` of every image pushed to FILE,
    /// one per line, in images.toml's order
    #[arg(long, value_name = "FILE")]
    image_refs: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// One input file, its text and the references in it.
struct Input {
    name: String,
    text: String,
    refs: Vec<Ref>,
}

/// One `scratchpack://NAME[:TAG]` in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ref {
    /// Where it is written, in bytes.
    range: Range<usize>,
    line: usize,
    name: String,
    tag: Option<String>,
}

pub(super) fn run(args: Args, push: &PushImages) -> Result<(), Failure> {
    // Every file is read and parsed before anything is built: a file that
    // is not YAML costs no build.
    let mut inputs = Vec::new();
    for f in &args.files {
        for (name, text) in read_inputs(f)? {
            let refs = references(&text).map_err(|e| Failure::Usage(anyhow!("{name}:{e}")))?;
            inputs.push(Input { name, text, refs });
        }
    }
    let mut ctx = args
        .common
        .load_with(Env::from_process(), &args.tags.tags)?;
    let mut wanted = BTreeSet::new();
    for input in &inputs {
        for r in &input.refs {
            let at = format!("{}:{}", input.name, r.line);
            let Some(image) = ctx.plan.images.iter_mut().find(|i| i.name == r.name) else {
                let known: Vec<&str> = ctx.plan.images.iter().map(|i| i.name.as_str()).collect();
                return Err(Failure::Usage(anyhow!(
                    "{at}: `{SCHEME}{}` names no image of images.toml; images: {}",
                    r.name,
                    known.join(", ")
                )));
            };
            if let Some(t) = &r.tag {
                let tag = Tag::parse(t).ok_or_else(|| {
                    Failure::Usage(anyhow!(
                        "{at}: `{t}` in `{SCHEME}{}:{t}` is not a tag",
                        r.name
                    ))
                })?;
                if !image.tags.contains(&tag) {
                    image.tags.push(tag);
                }
            }
            wanted.insert(r.name.clone());
        }
    }
    let names: Vec<String> = wanted.into_iter().collect();
    let pushed: BTreeMap<String, String> = if names.is_empty() {
        BTreeMap::new()
    } else {
        push(&ctx, &names, &args.target)?.into_iter().collect()
    };
    let mut out = String::new();
    for (i, input) in inputs.iter().enumerate() {
        if i > 0 {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("---\n");
        }
        out.push_str(&replaced(&input.text, &input.refs, &pushed));
    }
    if let Some(path) = &args.image_refs {
        write_image_refs(path, &in_plan_order(&ctx, pushed.into_iter().collect()))?;
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

/// The files `-f` names, each with its text: the file, every `*.yaml` and
/// `*.yml` under a directory in path order, or standard input for `-`.
fn read_inputs(path: &Path) -> Result<Vec<(String, String)>, Failure> {
    let text = |name: String, bytes: Vec<u8>| {
        String::from_utf8(bytes)
            .map(|t| (name.clone(), t))
            .map_err(|e| {
                Failure::Usage(anyhow!(
                    "{name} is not YAML: byte {} is not UTF-8",
                    e.utf8_error().valid_up_to()
                ))
            })
    };
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e: std::io::Error| {
            Failure::Usage(anyhow::Error::new(e).context(format!("reading {}", p.display())))
        }
    };
    if path == Path::new("-") {
        let bytes =
            crate::record::read_within(std::io::stdin().lock(), MAX_YAML).map_err(io(path))?;
        return Ok(vec![text("<stdin>".to_owned(), bytes)?]);
    }
    if !path.is_dir() {
        let bytes = read_yaml_file(path).map_err(io(path))?;
        return Ok(vec![text(path.display().to_string(), bytes)?]);
    }
    let mut files = Vec::new();
    yaml_files(path, &mut files).map_err(io(path))?;
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let bytes = read_yaml_file(&f).map_err(io(&f))?;
            text(f.display().to_string(), bytes)
        })
        .collect()
}

/// A YAML file's bytes: a regular file (a link to one is followed) of at
/// most [`MAX_YAML`] bytes. A FIFO or a device is refused without waiting
/// on it.
fn read_yaml_file(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::record::read_regular(path, MAX_YAML, true)
}

/// Every `*.yaml` and `*.yml` file under `dir`.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            yaml_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every reference in the scalars of `text`, in the order written; a
/// `line:column: …` message when `text` is not YAML or a reference cannot
/// be replaced where it is written.
fn references(text: &str) -> Result<Vec<Ref>, String> {
    let mut refs = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            format!(
                "{}:{}: not YAML: {}",
                e.marker().line(),
                e.marker().col() + 1,
                e.info()
            )
        })?;
        let Event::Scalar(value, ..) = event else {
            continue;
        };
        if !value.contains(SCHEME) {
            continue;
        }
        let written = byte_range(text, span);
        let found = in_text(&text[written.clone()], written.start, span.start.line())?;
        // A reference folded over lines or spelled with escapes is in the
        // value but not in the text; it cannot be replaced in place.
        if found.len() != value.matches(SCHEME).count() {
            return Err(format!(
                "{}:{}: a `{SCHEME}` reference is written over several lines or with escapes; \
                 write each on one line as it is",
                span.start.line(),
                span.start.col() + 1
            ));
        }
        refs.extend(found);
    }
    Ok(refs)
}

/// The bytes `span` (in characters) covers in `text`.
fn byte_range(text: &str, span: Span) -> Range<usize> {
    let byte = |chars: usize| {
        text.char_indices()
            .nth(chars)
            .map_or(text.len(), |(i, _)| i)
    };
    byte(span.start.index())..byte(span.end.index())
}

/// The references in `slice`, which starts at byte `offset` of its text,
/// on `line` (a plain or quoted scalar; a block scalar's lines counted).
fn in_text(slice: &str, offset: usize, line: usize) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    for (i, _) in slice.match_indices(SCHEME) {
        let rest = &slice[i + SCHEME.len()..];
        let name_len = rest
            .find(|c: char| {
                !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
            })
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        let mut len = SCHEME.len() + name_len;
        let line = line + slice[..i].matches('\n').count();
        if name.is_empty() {
            return Err(format!("{line}: `{SCHEME}` names no image"));
        }
        let tag = rest[name_len..].strip_prefix(':').map(|t| {
            let tag_len = t
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
                .unwrap_or(t.len());
            len += 1 + tag_len;
            t[..tag_len].to_owned()
        });
        out.push(Ref {
            range: offset + i..offset + i + len,
            line,
            name: name.to_owned(),
            tag,
        });
    }
    Ok(out)
}

/// `text` with each reference replaced by what its image was pushed as.
fn replaced(text: &str, refs: &[Ref], pushed: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in refs {
        out.push_str(&text[at..r.range.start]);
        out.push_str(&pushed[&r.name]);
        at = r.range.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of a usage error (exit 2), with its causes.
    fn usage(result: Result<Vec<(String, String)>, Failure>) -> String {
        match result {
            Err(Failure::Usage(e)) => format!("{e:#}"),
            Err(_) => panic!("not a usage error"),
            Ok(files) => panic!("read {} files", files.len()),
        }
    }

    #[test]
    fn fifos_devices_and_endless_input_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("deploy.yaml");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // Read as a file named on its own and as one found in a directory.
        for path in [fifo.as_path(), dir.path()] {
            let err = usage(read_inputs(path));
            assert!(err.contains("deploy.yaml: not a regular file"), "{err}");
        }
        let err = usage(read_inputs(Path::new("/dev/zero")));
        assert!(err.contains("not a regular file"), "{err}");
        let err = crate::record::read_within(std::io::repeat(b'a'), MAX_YAML).unwrap_err();
        assert!(err.to_string().contains("more than 64 MiB"), "{err}");
        let plain = dir.path().join("plain.yml");
        std::fs::write(&plain, "image: x\n").unwrap();
        std::fs::remove_file(&fifo).unwrap();
        let Ok(files) = read_inputs(dir.path()) else {
            panic!("the plain file is read")
        };
        assert_eq!(files[0].1, "image: x\n");
    }

    const DEPLOYMENT: &str = r#"# The web tier.
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}   # flow style
spec:
  template:
    spec:
      containers:
        - name: hello
          image: scratchpack://hello
        - name: sidecar
          image: "scratchpack://greeter:v1.2"
          args: ['--peer=scratchpack://hello', "keep: scratchpack is not a reference"]
---
# scratchpack://hello in a comment stays
kind: ConfigMap
data:
  script: |
    run scratchpack://greeter
"#;

    #[test]
    fn references_are_replaced_where_they_are_written_and_nothing_else_moves() {
        let refs = references(DEPLOYMENT).unwrap();
        let names: Vec<(&str, Option<&str>, usize)> = refs
            .iter()
            .map(|r| (r.name.as_str(), r.tag.as_deref(), r.line))
            .collect();
        assert_eq!(
            names,
            [
                ("hello", None, 10),
                ("greeter", Some("v1.2"), 12),
                ("hello", None, 13),
                ("greeter", None, 19),
            ]
        );
        let pushed = BTreeMap::from([
            ("hello".to_owned(), "r.example/hello@sha256:aa".to_owned()),
            (
                "greeter".to_owned(),
                "r.example/greeter@sha256:bb".to_owned(),
            ),
        ]);
        let out = replaced(DEPLOYMENT, &refs, &pushed);
        let expected = DEPLOYMENT
            .replace("scratchpack://hello\n", "r.example/hello@sha256:aa\n")
            .replace(
                "\"scratchpack://greeter:v1.2\"",
                "\"r.example/greeter@sha256:bb\"",
            )
            .replace(
                "--peer=scratchpack://hello",
                "--peer=r.example/hello@sha256:aa",
            )
            .replace(
                "run scratchpack://greeter",
                "run r.example/greeter@sha256:bb",
            );
        assert_eq!(out, expected);
        assert!(out.contains("# scratchpack://hello in a comment stays"));
    }

    #[test]
    fn text_that_is_not_yaml_is_refused_with_its_place() {
        let e = references("a: [unclosed\nb: c\n").unwrap_err();
        assert!(e.contains("not YAML"), "{e}");
        let e = references("key: \"scratchpack:\\x2f/hello\"\n").unwrap_err();
        assert!(e.starts_with("1:6: a `scratchpack://` reference"), "{e}");
        let e = references("image: scratchpack://\n").unwrap_err();
        assert_eq!(e, "1: `scratchpack://` names no image");
        assert!(references("plain: text\n").unwrap().is_empty());
    }

    #[test]
    fn spans_in_characters_are_bytes_in_the_text() {
        let text = "é: scratchpack://hello # ü\n";
        let refs = references(text).unwrap();
        assert_eq!(&text[refs[0].range.clone()], "scratchpack://hello");
    }
}
