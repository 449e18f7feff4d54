//! `cargo xtask push [NAME…]` and `cargo xtask images --push`: build what is out
//! of date, then push each image with all its tags to its registry through
//! [`crate::registry::push_layout`] (the OCI distribution spec's push flow).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde::Serialize;

use super::{
    Common, Context, Failure, MessageFormat, TagFlags, Target, build_selected, in_plan_order,
    select, write_image_refs,
};
use crate::build::{BuiltImage, short};
use crate::manifest::ImagePlan;
use crate::registry::{self, CredentialSource, ProgressEvent, PushOptions, PushReport, Repository};
use crate::shell::Shell;
use crate::shell::table::{human_size, render};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Images to push [default: all in images.toml that name a registry]
    #[arg(value_name = "NAME")]
    pub(super) names: Vec<String>,
    #[command(flatten)]
    pub(super) target: Target,
    /// How to print results: a table, or one JSON object per image
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    pub(super) message_format: MessageFormat,
    #[command(flatten)]
    pub(super) tags: TagFlags,
    /// Write `registry/repository@sha256:…` of every pushed image to FILE,
    /// one per line, in images.toml's order
    #[arg(long, value_name = "FILE")]
    pub(super) image_refs: Option<PathBuf>,
    #[cfg(feature = "sign")]
    #[command(flatten)]
    pub(super) sign: super::SignFlags,
    #[command(flatten)]
    pub(super) common: Common,
}

pub(super) fn run(args: Args) -> Result<(), Failure> {
    let ctx = args
        .common
        .load_with(crate::toolchain::Env::from_process(), &args.tags.tags)?;
    #[cfg(feature = "sign")]
    let signer = args.sign.signer()?;
    let pushed = build_and_push(&ctx, &args.names, &args.target, Some(args.message_format))?;
    if let Some(path) = &args.image_refs {
        write_image_refs(path, &in_plan_order(&ctx, pushed))?;
    }
    // What was pushed is signed where the push records say it went.
    #[cfg(feature = "sign")]
    if let Some(signer) = &signer {
        let located = super::locate(&ctx, &args.names, &super::Selection::default(), true)?;
        super::sign_located(&ctx, &args.common, signer, &located)?;
    }
    Ok(())
}

/// An image to push and where it goes.
struct Destination<'p> {
    image: &'p ImagePlan,
    repository: Repository,
    insecure: bool,
}

/// Builds and pushes the images `names` selects, printing nothing on
/// stdout, and gives each image's name with its pinned reference
/// (`registry/repository@sha256:…`): the push of `resolve`, which
/// `dispatch` hands it.
pub(super) fn push_quietly(
    ctx: &Context,
    names: &[String],
    target: &Target,
) -> Result<Vec<(String, String)>, Failure> {
    build_and_push(ctx, names, target, None)
}

/// Selects images by name (all when `names` is empty), builds those that have
/// somewhere to go, pushes them one after the other and prints the results
/// in `format` (nothing without one). The first failed push stops the run;
/// what was pushed before it is still printed. Gives each pushed image's
/// name and pinned reference.
fn build_and_push(
    ctx: &Context,
    names: &[String],
    target: &Target,
    format: Option<MessageFormat>,
) -> Result<Vec<(String, String)>, Failure> {
    let selected = select(&ctx.plan.images, names)?;
    let destinations = destinations(&selected, !names.is_empty(), target, ctx.shell)?;
    let to_build: Vec<String> = destinations.iter().map(|d| d.image.name.clone()).collect();
    let built = build_selected(ctx, &to_build)?;

    let targets: Vec<&str> = destinations
        .iter()
        .map(|d| d.repository.registry())
        .collect();
    let creds = registry::default_credentials(&targets);
    let mut stdout = std::io::stdout().lock();
    let mut pushed = Vec::new();
    let mut failure = None;
    // The first repository pushed to on each registry: later images there
    // ask to mount their blobs from it (shared binaries or files cost one
    // request, not an upload), and upload as usual when the registry declines.
    let mut first_on_registry: BTreeMap<String, String> = BTreeMap::new();
    for (image, dest) in built.iter().zip(&destinations) {
        // `build_selected` keeps the order of the names it is given.
        debug_assert_eq!(image.name, dest.image.name);
        let mount_from = first_on_registry
            .get(dest.repository.registry())
            .filter(|repo| repo.as_str() != dest.repository.name())
            .cloned();
        match push_one(ctx, image, dest, &creds, mount_from) {
            Ok(p) => {
                // What `sign` and `verify` start from.
                #[cfg(feature = "sign")]
                crate::release::publish::record_push(
                    &ctx.out_dir,
                    &p.name,
                    &dest.repository,
                    &p.digest,
                    dest.insecure,
                )?;
                first_on_registry
                    .entry(dest.repository.registry().to_owned())
                    .or_insert_with(|| dest.repository.name().to_owned());
                if format == Some(MessageFormat::Json) {
                    writeln!(stdout, "{}", serde_json::to_string(&p)?)?;
                }
                pushed.push(p);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if format == Some(MessageFormat::Human) && !pushed.is_empty() {
        write!(stdout, "{}", table(&pushed))?;
    }
    match failure {
        Some(e) => Err(Failure::Build(e)),
        None => Ok(pushed.into_iter().map(|p| (p.name, p.reference)).collect()),
    }
}

/// Where each selected image goes. An image with no registry is an error when
/// it was named on the command line, and skipped with a warning otherwise; no
/// image with a registry at all is an error.
fn destinations<'p>(
    selected: &[&'p ImagePlan],
    named: bool,
    target: &Target,
    shell: Shell,
) -> Result<Vec<Destination<'p>>, Failure> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for &image in selected {
        let repository = image
            .push
            .as_ref()
            .map_or(image.name.as_str(), |p| p.repository.as_str());
        // The file's `insecure` belongs to the file's registry: a registry given
        // on the command line gets plain HTTP only with `--insecure`.
        let (registry, insecure) = match (&target.registry, &image.push) {
            (Some(r), _) => (r.as_str(), target.insecure),
            (None, Some(p)) => (p.registry.as_str(), target.insecure || p.insecure),
            (None, None) if named => {
                return Err(Failure::Usage(anyhow!(
                    "image `{}` has no registry to push to: set `registry` in images.toml \
                     `[defaults]` (or in `[images.{}]`) or pass `--registry HOST[/NAMESPACE]`",
                    image.name,
                    image.name
                )));
            }
            (None, None) => {
                skipped.push(image.name.as_str());
                continue;
            }
        };
        // images.toml's own registry was parsed with the manifest; one from
        // the command line is parsed here.
        let repository = match (&target.registry, &image.push) {
            (None, Some(p)) => p.reference.clone(),
            _ => Repository::parse(&format!("{registry}/{repository}")).map_err(|e| {
                Failure::Usage(anyhow!(
                    "resolving where to push image `{}`: {e}",
                    image.name
                ))
            })?,
        };
        found.push(Destination {
            image,
            repository,
            insecure,
        });
    }
    if found.is_empty() {
        return Err(Failure::Usage(anyhow!(
            "no registry to push to: set `registry` in images.toml `[defaults]` \
             or pass `--registry HOST[/NAMESPACE]`"
        )));
    }
    for name in skipped {
        shell.warn(format!(
            "skipping image `{name}`: images.toml names no registry for it \
             (set `registry` in `[defaults]` or `[images.{name}]`, or pass `--registry`)"
        ));
    }
    Ok(found)
}

/// What one push did, as printed.
#[derive(Debug, Serialize)]
struct Pushed {
    name: String,
    /// `registry/repository@digest`: the pushed image, pinned.
    reference: String,
    repository: String,
    digest: String,
    tags: Vec<String>,
    blobs_uploaded: usize,
    blobs_skipped: usize,
    blobs_mounted: usize,
    bytes_uploaded: u64,
    manifests_pushed: usize,
    retries: u32,
    elapsed_ms: u64,
}

fn push_one(
    ctx: &Context,
    image: &BuiltImage,
    dest: &Destination<'_>,
    creds: &dyn CredentialSource,
    mount_from: Option<String>,
) -> anyhow::Result<Pushed> {
    let shell = ctx.shell;
    let repo = &dest.repository;
    shell.status(
        "Pushing",
        format!("{} to {}", image.name, references(repo, &image.tags)),
    );
    let progress = Progress::new(shell, std::io::stderr(), std::io::stderr().is_terminal());
    let on_event = |event: &ProgressEvent<'_>| progress.event(event);
    let opts = PushOptions {
        insecure: dest.insecure,
        progress: Some(&on_event),
        mount_from,
        limits: ctx.registry,
        ..PushOptions::default()
    };
    // The layout's index.json names an entry by each tag; all point at the
    // same image.
    let ref_name = image.tags.first().map(String::as_str);
    let result = registry::push_layout(&image.layout, ref_name, repo, &image.tags, creds, &opts);
    progress.close_line();
    let report = result.map_err(|e| {
        // A connection that fails over HTTPS is often a registry that only
        // speaks plain HTTP, which the TLS error itself does not make plain.
        let hint =
            if !dest.insecure && matches!(e.failure(), Some(registry::Failure::Transport { .. })) {
                " over HTTPS (if it speaks plain HTTP, pass `--insecure` or set `insecure = true` \
             in images.toml)"
            } else {
                ""
            };
        anyhow::Error::new(e).context(format!("pushing image `{}` to {repo}{hint}", image.name))
    })?;
    if report.digest != image.digest {
        anyhow::bail!(
            "pushing image `{}` to {repo}: the layout at {} holds {}, but the build made {}",
            image.name,
            image.layout.display(),
            report.digest,
            image.digest
        );
    }
    announce(shell, &image.name, &report);
    Ok(Pushed {
        name: image.name.clone(),
        reference: format!("{repo}@{}", report.digest),
        repository: report.repository,
        digest: report.digest,
        tags: report.tags,
        blobs_uploaded: report.blobs_uploaded,
        blobs_skipped: report.blobs_skipped,
        blobs_mounted: report.blobs_mounted,
        bytes_uploaded: report.bytes_uploaded,
        manifests_pushed: report.manifests_pushed,
        retries: report.retries,
        elapsed_ms: u64::try_from(report.elapsed.as_millis()).unwrap_or(u64::MAX),
    })
}

/// `host/repo:tag` for one tag, `host/repo:{a,b}` for several.
fn references(repo: &Repository, tags: &[String]) -> String {
    match tags {
        [] => repo.to_string(),
        [tag] => format!("{repo}:{tag}"),
        _ => format!("{repo}:{{{}}}", tags.join(",")),
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The status lines after a push: what was already there, and what went up.
fn announce(shell: Shell, name: &str, report: &PushReport) {
    if report.blobs_skipped > 0 {
        shell.status(
            "Skipped",
            format!(
                "{} already in {}",
                plural(report.blobs_skipped, "blob"),
                report.repository
            ),
        );
    }
    if report.blobs_mounted > 0 {
        shell.status(
            "Mounted",
            format!(
                "{} from another repository",
                plural(report.blobs_mounted, "blob")
            ),
        );
    }
    shell.status(
        "Pushed",
        format!(
            "{name} {} ({}, {} uploaded in {:.1}s)",
            report.digest,
            plural(report.blobs_uploaded, "blob"),
            human_size(report.bytes_uploaded),
            report.elapsed.as_secs_f64()
        ),
    );
}

/// The closing table: image, where it went, digest, and what was sent.
fn table(pushed: &[Pushed]) -> String {
    let mut rows = vec![vec![
        "IMAGE".to_owned(),
        "PUSHED TO".to_owned(),
        "DIGEST".to_owned(),
        "UPLOADED".to_owned(),
        "SKIPPED".to_owned(),
        "BYTES".to_owned(),
    ]];
    for p in pushed {
        let to = match p.tags.as_slice() {
            [] => p.repository.clone(),
            tags => format!("{}:{}", p.repository, tags.join(",")),
        };
        rows.push(vec![
            p.name.clone(),
            to,
            short(&p.digest).to_owned(),
            p.blobs_uploaded.to_string(),
            (p.blobs_skipped + p.blobs_mounted).to_string(),
            human_size(p.bytes_uploaded),
        ]);
    }
    render(&rows, 3)
}

/// Blobs at least this big get a progress display; smaller ones go up in a
/// blink and a line each would only be noise.
const LARGE_BLOB: u64 = 1024 * 1024;

/// How often a progress line on a terminal is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);

/// Renders push progress events: bytes sent of large blobs, redrawn in place on
/// a terminal, else one line when an upload starts and one when it ends; and
/// retries as warnings. Interior mutability because the push library takes a
/// `Fn` callback.
struct Progress<W: Write> {
    shell: Shell,
    terminal: bool,
    state: RefCell<ProgressState<W>>,
}

struct ProgressState<W> {
    out: W,
    upload: Option<Upload>,
    /// Whether a line drawn in place is waiting for its newline.
    line_open: bool,
}

struct Upload {
    digest: String,
    size: u64,
    started: Instant,
    drawn: Option<Instant>,
}

impl<W: Write> Progress<W> {
    fn new(shell: Shell, out: W, terminal: bool) -> Self {
        Progress {
            shell,
            terminal,
            state: RefCell::new(ProgressState {
                out,
                upload: None,
                line_open: false,
            }),
        }
    }

    fn event(&self, event: &ProgressEvent<'_>) {
        if self.shell.is_quiet() {
            return;
        }
        let mut st = self.state.borrow_mut();
        match *event {
            ProgressEvent::BlobStarted { digest, size } if size >= LARGE_BLOB => {
                self.end_line(&mut st);
                st.upload = Some(Upload {
                    digest: digest.to_owned(),
                    size,
                    started: Instant::now(),
                    drawn: None,
                });
                if self.terminal {
                    self.draw(&mut st, 0);
                } else {
                    let line = self.line(
                        "Uploading",
                        &format!("{} ({})", short(digest), human_size(size)),
                    );
                    let _ = writeln!(st.out, "{line}");
                }
            }
            ProgressEvent::BlobProgress { digest, sent, size } => {
                let current = st.upload.as_ref().is_some_and(|u| u.digest == digest);
                if !current {
                    return;
                }
                if sent >= size {
                    let upload = st.upload.take().expect("checked above");
                    let line = self.line(
                        "Uploaded",
                        &format!(
                            "{} ({} in {:.1}s)",
                            short(&upload.digest),
                            human_size(upload.size),
                            upload.started.elapsed().as_secs_f64()
                        ),
                    );
                    self.replace_line(&mut st, &line);
                } else if self.terminal {
                    self.draw(&mut st, sent);
                }
            }
            ProgressEvent::Retrying {
                action,
                attempt,
                delay,
                reason,
            } => {
                self.end_line(&mut st);
                // The upload starts over on a retry, and says so with a new start.
                st.upload = None;
                let label = self.shell.paint("warning", "1;33");
                let _ = writeln!(
                    st.out,
                    "{label}: {action}: {reason}; trying again in {:.1}s (try {} failed)",
                    delay.as_secs_f64(),
                    attempt
                );
            }
            _ => {}
        }
    }

    /// Ends an in-place line so that what follows starts on a line of its own.
    fn close_line(&self) {
        let mut st = self.state.borrow_mut();
        self.end_line(&mut st);
        st.upload = None;
    }

    fn end_line(&self, st: &mut ProgressState<W>) {
        if st.line_open {
            let _ = writeln!(st.out);
            st.line_open = false;
        }
    }

    fn draw(&self, st: &mut ProgressState<W>, sent: u64) {
        let Some(upload) = st.upload.as_mut() else {
            return;
        };
        if upload.drawn.is_some_and(|t| t.elapsed() < REDRAW) {
            return;
        }
        upload.drawn = Some(Instant::now());
        let line = self.line(
            "Uploading",
            &format!(
                "{} {} / {}",
                short(&upload.digest),
                human_size(sent),
                human_size(upload.size)
            ),
        );
        // Carriage return, the line, then erase whatever a longer line left.
        let _ = write!(st.out, "\r{line}\x1b[K");
        let _ = st.out.flush();
        st.line_open = true;
    }

    fn replace_line(&self, st: &mut ProgressState<W>, line: &str) {
        if st.line_open {
            let _ = writeln!(st.out, "\r{line}\x1b[K");
            st.line_open = false;
        } else {
            let _ = writeln!(st.out, "{line}");
        }
    }

    /// A status line as [`Shell::status`] writes it.
    fn line(&self, verb: &str, message: &str) -> String {
        format!(
            "{} {message}",
            self.shell.paint(&format!("{verb:>12}"), "1;32")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Drops colour codes (which depend on whether the test's stderr is a
    /// terminal) and spells the erase-line code `<EL>`.
    fn plain(bytes: &[u8]) -> String {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '\x1b' {
                out.push(c);
                continue;
            }
            // CSI: `ESC [`, parameters, then one final letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    if d == 'K' {
                        out.push_str("<EL>");
                    }
                    break;
                }
            }
        }
        out
    }

    fn upload_events(progress: &Progress<&mut Vec<u8>>, size: u64) {
        progress.event(&ProgressEvent::BlobStarted {
            digest: DIGEST,
            size,
        });
        let mut sent = 0;
        while sent < size {
            sent = (sent + size / 4).min(size);
            progress.event(&ProgressEvent::BlobProgress {
                digest: DIGEST,
                sent,
                size,
            });
        }
        // The library reports the end once more after the closing PUT.
        progress.event(&ProgressEvent::BlobProgress {
            digest: DIGEST,
            sent: size,
            size,
        });
        progress.close_line();
    }

    #[test]
    fn without_a_terminal_a_large_blob_gets_a_start_and_an_end_line() {
        let mut out = Vec::new();
        let progress = Progress::new(Shell::new(false), &mut out, false);
        upload_events(&progress, 4 * LARGE_BLOB);
        drop(progress);
        let text = plain(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert_eq!(lines[0], "   Uploading sha256:0123456789ab (4.0 MiB)");
        assert!(
            lines[1].starts_with("    Uploaded sha256:0123456789ab (4.0 MiB in "),
            "{text:?}"
        );
        assert!(!text.contains('\r'));
    }

    #[test]
    fn on_a_terminal_progress_is_redrawn_in_place_and_ends_with_one_newline() {
        let mut out = Vec::new();
        let progress = Progress::new(Shell::new(false), &mut out, true);
        upload_events(&progress, 4 * LARGE_BLOB);
        drop(progress);
        let text = plain(&out);
        assert!(
            text.starts_with("\r   Uploading sha256:0123456789ab 0 B / 4.0 MiB<EL>"),
            "{text:?}"
        );
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
        assert!(
            text.contains("\r    Uploaded sha256:0123456789ab (4.0 MiB in "),
            "{text:?}"
        );
        assert!(text.ends_with("s)<EL>\n"), "{text:?}");
    }

    #[test]
    fn small_blobs_stay_silent_and_retries_warn() {
        let mut out = Vec::new();
        let progress = Progress::new(Shell::new(false), &mut out, false);
        upload_events(&progress, 1000);
        progress.event(&ProgressEvent::Retrying {
            action: "uploading blob sha256:ab to localhost:5000/hello",
            attempt: 1,
            delay: Duration::from_millis(500),
            reason: "connection failed: reset",
        });
        drop(progress);
        assert_eq!(
            plain(&out),
            "warning: uploading blob sha256:ab to localhost:5000/hello: connection failed: \
             reset; trying again in 0.5s (try 1 failed)\n"
        );
    }

    #[test]
    fn quiet_prints_nothing() {
        let mut out = Vec::new();
        let progress = Progress::new(Shell::new(true), &mut out, true);
        upload_events(&progress, 4 * LARGE_BLOB);
        drop(progress);
        assert!(out.is_empty());
    }

    #[test]
    fn references_name_every_tag() {
        let repo = Repository::parse("127.0.0.1:5000/team/hello").unwrap();
        assert_eq!(
            references(&repo, &["latest".into()]),
            "127.0.0.1:5000/team/hello:latest"
        );
        assert_eq!(
            references(&repo, &["latest".into(), "1.0".into()]),
            "127.0.0.1:5000/team/hello:{latest,1.0}"
        );
    }
}
