//! The engine's architecture invariants (ARCHITECTURE.md, "Architecture
//! invariants"), checked on the source text of every `.rs` file under
//! `crates/base/src` and `crates/scratchpack/src`, as rust-analyzer's
//! `xtask/src/tidy.rs` checks its own code. Each rule is a test of its own,
//! and a failure names the file and line of every place that breaks it.
//!
//! The engine is two crates read as one tree: `scratchpack` re-exports every
//! module of `scratchpack-base` under its own name, so `crate::oci` in the
//! one is `crate::oci` in the other, and the ranks run across both.
//!
//! The files are read as text, not compiled. Comments and the contents of
//! string and character literals are blanked first, so that only code is
//! looked at (intra-doc links are read from the comments apart); every file
//! is placed in the module tree by following the `mod` declarations from
//! `lib.rs` (and their `#[path]` attributes), so that `super::` and `self::`
//! resolve as the compiler resolves them; and a path through a `pub use` is
//! followed to the file that defines the item.
//!
//! What counts as an import: a `use` leaf, a path in code that starts at
//! `crate`, `super`, `self`, a child module or a module a `use` brought in,
//! and the path of an intra-doc link (rustdoc resolves it like an import,
//! and a lower layer's docs that link to a higher one say that it knows its
//! users). A `pub use` line is the module's face, not an import of its own:
//! it is held to the ranks, but makes no edge of the file graph.
//!
//! Test code (`#[cfg(test)]` items, and the files they declare) is held only
//! to the `cli` and `unsafe` rules: it may reach up a layer to make its
//! input, read the environment, run programs and be as long as it needs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The engine's crates, the lower first: `scratchpack` depends on
/// `scratchpack-base` (in `crates/base`), so cargo refuses an import the
/// other way, and every module of the lower one ranks below every module of
/// the upper one.
const CRATES: &[&str] = &["base", "scratchpack"];

/// The layers of the engine, bottom to top. A module may import a module of
/// a lower rank, or anything inside itself, and nothing else, so two modules
/// of one rank never import each other. ARCHITECTURE.md has the same table
/// with what each module owns.
const RANKS: &[(&str, u32)] = &[
    // Leaves: nothing of the engine.
    ("diagnostic", 0),
    ("shell", 0),
    ("elf", 0),
    ("gunzip", 0),
    ("digest", 0),
    ("output", 0),
    ("record", 1),
    ("platform", 1),
    // Every program run, and the environment read once.
    ("toolchain", 2),
    // OCI values only: nothing of plans, platforms or programs.
    ("oci", 3),
    // The distribution protocol sends and reads what `oci` describes.
    ("registry", 4),
    // Test fixtures both crates' tests share: hand-built ELF files and
    // images.
    ("testkit", 4),
    // Plans hold registry references and OCI compressions.
    ("manifest", 5),
    ("compile", 6),
    ("unpack", 6),
    ("partition", 6),
    ("build", 7),
    // Documents and signatures about what a build made.
    ("release", 8),
    // The registry cache of a build's outputs signs and checks its entries
    // with release's cosign keys.
    ("action_cache", 9),
    ("testing", 9),
    ("cli", 10),
];

/// The only places that read the process's environment (`std::env::var`,
/// `var_os`, `vars`, `vars_os`) or start a program (`Command::new`), each
/// with the reason it may. Everywhere else what a run depends on is handed
/// down as a value (`toolchain::Env`), so that a test hands it what it
/// wants. The command line's edge needs no entry: `cli` reads the
/// environment through `Env::from_process`, which is `toolchain`'s. A path
/// (under `crates/`) ending in `/` is a directory. Test code is not checked.
const ENV_AND_PROGRAMS: &[(&str, &str)] = &[
    (
        "base/src/toolchain/",
        "every program the engine runs, and the environment they and the engine read, read \
         once into `Env`",
    ),
    (
        "base/src/shell.rs",
        "`NO_COLOR` decides how errors look, and an error is printed whether or not an `Env` \
         was ever read",
    ),
    (
        "scratchpack/src/compile/dep_v0.rs",
        "runs as cargo's `RUSTC_WRAPPER`, a process of its own that reads what cargo sets and \
         runs rustc",
    ),
    (
        "base/src/registry/credentials.rs",
        "secrets: the registry credential variables, the docker config and its credential \
         helpers, read and run only when a registry asks, and kept out of `Env`",
    ),
    (
        "scratchpack/src/release/keys.rs",
        "a secret: the key's password (`COSIGN_PASSWORD`), read only when a key is loaded, \
         and kept out of `Env`",
    ),
];

/// The modules that call into `toolchain`, and so start programs. The others
/// name only its types (a path into `toolchain` ends in a type's name): what
/// they make is made from values their caller gathered. `release` above all
/// renders its documents from facts handed to it.
const PROGRAM_CALLERS: &[&str] = &["toolchain", "compile", "build", "action_cache", "cli"];

/// The longest a function of production code may be, from its `fn` to its
/// closing brace.
const MAX_FUNCTION_LINES: usize = 120;

/// Production code only: test code may use a higher layer to make its input
/// (`gunzip`'s tests read what `oci`'s encoder writes, `elf`'s build binaries
/// for `platform`'s machines).
#[test]
fn imports_point_down_the_ranks() {
    let tree = tree();
    let mut problems = Problems::default();
    for module in tree.modules.keys().filter(|m| m.len() == 1) {
        if rank(&module[0]).is_none() {
            problems.add(0, 1, format!("`{}` is missing from RANKS", module[0]));
        }
    }
    for (module, _) in RANKS {
        if !tree.modules.contains_key(&[module.to_string()][..]) {
            problems.add(0, 1, format!("RANKS names `{module}`, which is no module"));
        }
    }
    for (file, path) in tree.paths() {
        if path.test {
            continue;
        }
        let (Some(from), Some(to)) = (path.importing_top(), path.imported_top()) else {
            continue;
        };
        let (Some(rank_from), Some(rank_to)) = (rank(from), rank(to)) else {
            continue;
        };
        if from != to && rank_to >= rank_from {
            problems.add(
                file,
                path.line,
                format!(
                    "`{from}` (rank {rank_from}) {} `{to}` (rank {rank_to}) through `{}`",
                    path.verb(),
                    path.written
                ),
            );
        }
    }
    problems.check(
        "imports against the ranks (RANKS here, the table in ARCHITECTURE.md): an import \
         points only to a lower rank; move the code to the layer it belongs to, or let the \
         caller hand the value down",
    );
}

/// The crate boundary is a cut through the ranks: a module of `base` ranks
/// below every module of `scratchpack`, so what cargo enforces (the lower
/// crate cannot name the upper) is what the ranks say.
#[test]
fn the_lower_crate_holds_the_lower_ranks() {
    let tree = tree();
    let tops: Vec<(usize, usize, &str, u32)> = (0..tree.files.len())
        .filter(|&i| tree.files[i].module.len() == 1)
        .filter_map(|i| {
            let file = &tree.files[i];
            let krate = CRATES
                .iter()
                .position(|k| file.name.starts_with(&format!("{k}/")))?;
            let module = file.module[0].as_str();
            Some((i, krate, module, rank(module)?))
        })
        .collect();
    let mut problems = Problems::default();
    for &(file, lower, module, at) in &tops {
        for &(_, upper, other, above) in &tops {
            if lower < upper && at >= above {
                problems.add(
                    file,
                    1,
                    format!(
                        "`{module}` (rank {at}) is in crates/{}, `{other}` (rank {above}) in \
                         crates/{}",
                        CRATES[lower], CRATES[upper]
                    ),
                );
            }
        }
    }
    problems.check(
        "modules on the wrong side of the crate boundary: a module of the lower crate ranks \
         below every module of the upper one; move it, or change its rank",
    );
}

/// A module's own file and the files of its children are one module: the
/// parent declares its children, re-exports their items and calls into
/// them, the children use what the parent holds through `super::`. So an
/// import from a parent into its own child makes no edge; every other one
/// does, and no set of files may import each other round.
#[test]
fn no_import_cycles_between_files() {
    let tree = tree();
    let mut edges: BTreeMap<usize, BTreeMap<usize, usize>> = BTreeMap::new();
    for (file, path) in tree.paths() {
        if path.reexport || path.test {
            continue;
        }
        let Some(target) = path.target else { continue };
        let (from, to) = (&tree.files[file].module, &tree.files[target].module);
        let into_own_child = to.len() == from.len() + 1 && to.starts_with(from);
        if target != file && !into_own_child {
            edges
                .entry(file)
                .or_default()
                .entry(target)
                .or_insert(path.line);
        }
    }
    let mut problems = Problems::default();
    for cycle in cycles(tree.files.len(), &edges) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{}:{}", tree.files[w[0]].name, edges[&w[0]][&w[1]]))
            .collect();
        problems.add(
            cycle[0],
            edges[&cycle[0]][&cycle[1]],
            format!(
                "imports go round: {} -> {}",
                steps.join(" -> "),
                tree.files[cycle[0]].name
            ),
        );
    }
    problems.check(
        "import cycles between files: move what both need into one of them, or into a file \
         both import",
    );
}

#[test]
fn no_cli_file_imports_another() {
    let tree = tree();
    let mut problems = Problems::default();
    for (file, path) in tree.paths() {
        let module = &tree.files[file].module;
        let Some(target) = path.target else { continue };
        let other = &tree.files[target].module;
        if module.len() == 2
            && module[0] == "cli"
            && other.len() >= 2
            && other[0] == "cli"
            && other[1] != module[1]
        {
            problems.add(
                file,
                path.line,
                format!(
                    "`{}` {} `{}` through `{}`",
                    module.join("::"),
                    path.verb(),
                    other.join("::"),
                    path.written
                ),
            );
        }
    }
    problems.check(
        "a file of `cli/` importing another: each subcommand is one file with one `run`; what \
         several share goes in `cli.rs`, or below `cli` when it is not about the command line",
    );
}

#[test]
fn only_program_callers_call_into_the_toolchain() {
    let tree = tree();
    let mut problems = Problems::default();
    for (file, path) in tree.paths() {
        if path.test || path.doc || path.imported_top() != Some("toolchain") {
            continue;
        }
        let Some(from) = path.importing_top() else {
            continue;
        };
        let last = path.absolute.last().map_or("", String::as_str);
        if !PROGRAM_CALLERS.contains(&from) && !last.starts_with(|c: char| c.is_ascii_uppercase()) {
            problems.add(
                file,
                path.line,
                format!("`{from}` names `{}`, which is not a type", path.written),
            );
        }
    }
    problems.check(
        "modules outside PROGRAM_CALLERS calling into `toolchain`: they are handed values; let \
         the caller ask the toolchain and hand the answer down",
    );
}

#[test]
fn environment_and_programs_only_where_allowed() {
    const CALLS: &[(&str, &str)] = &[
        ("env::var", "reads the process's environment"),
        ("env::var_os", "reads the process's environment"),
        ("env::vars", "reads the process's environment"),
        ("env::vars_os", "reads the process's environment"),
        ("Command::new", "starts a program"),
    ];
    let tree = tree();
    let mut problems = Problems::default();
    for (index, file) in tree.files.iter().enumerate() {
        if ENV_AND_PROGRAMS
            .iter()
            .any(|(place, _)| allowed(&file.name, place))
        {
            continue;
        }
        for (call, what) in CALLS {
            for at in find_tokens(file.code.as_bytes(), call) {
                if !file.is_test(at) {
                    problems.add(index, file.line(at), format!("`{call}` {what}"));
                }
            }
        }
    }
    problems.check(
        "the environment read or a program started outside ENV_AND_PROGRAMS: take what is \
         needed from `toolchain::Env`, or run the program in `toolchain`",
    );
}

#[test]
fn no_function_over_120_lines() {
    let tree = tree();
    let mut problems = Problems::default();
    for (index, file) in tree.files.iter().enumerate() {
        for function in functions(file) {
            if function.lines > MAX_FUNCTION_LINES && !file.is_test(function.at) {
                problems.add(
                    index,
                    file.line(function.at),
                    format!("`fn {}` is {} lines long", function.name, function.lines),
                );
            }
        }
    }
    problems.check(&format!(
        "functions of production code over {MAX_FUNCTION_LINES} lines: split them where a \
         reader gains, into steps with names"
    ));
}

#[test]
fn no_unsafe_in_the_engine() {
    let tree = tree();
    let mut problems = Problems::default();
    for (index, file) in tree.files.iter().enumerate() {
        for at in find_tokens(file.code.as_bytes(), "unsafe") {
            problems.add(index, file.line(at), "`unsafe`".to_owned());
        }
    }
    problems.check("`unsafe` in the engine: every unsafe call lives in `crates/sandbox`");
}

fn rank(module: &str) -> Option<u32> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn allowed(file: &str, place: &str) -> bool {
    match place.strip_suffix('/') {
        Some(dir) => file.starts_with(dir) && file[dir.len()..].starts_with('/'),
        None => file == place,
    }
}

/// What a rule found, by file and line.
#[derive(Default)]
struct Problems {
    found: BTreeSet<(String, usize, String)>,
}

impl Problems {
    fn add(&mut self, file: usize, line: usize, message: String) {
        self.found
            .insert((tree().files[file].name.clone(), line, message));
    }

    fn check(self, rule: &str) {
        if self.found.is_empty() {
            return;
        }
        let mut text = format!("{rule}:\n");
        for (file, line, message) in &self.found {
            text.push_str(&format!("  crates/{file}:{line}: {message}\n"));
        }
        text.push_str("ARCHITECTURE.md, \"Architecture invariants\", says why the rule holds.");
        panic!("{text}");
    }
}

/// The engine's source files, placed in the module tree.
struct Tree {
    files: Vec<SourceFile>,
    /// Module path -> the file that holds it (an inline module's is the
    /// file it is written in).
    modules: BTreeMap<Vec<String>, usize>,
    /// Per file, every path it names.
    paths: Vec<Vec<NamedPath>>,
}

struct SourceFile {
    /// The path under `crates`, with `/` (`base/src/oci/mod.rs`).
    name: String,
    /// The module the file is, from the crate root.
    module: Vec<String>,
    /// The text with comments and literals blanked, as long as the file.
    code: String,
    /// Byte offset of each line's start.
    line_starts: Vec<usize>,
    /// Byte ranges of test code: `#[cfg(test)]` items, or the whole file.
    tests: Vec<(usize, usize)>,
    /// Inline modules (`mod tests { ... }`): their byte ranges and names.
    inline: Vec<(usize, usize, String)>,
    /// The names the file's module defines at its top level.
    defines: BTreeSet<String>,
    /// Its `pub use` re-exports: name -> the path it stands for.
    reexports: BTreeMap<String, Vec<String>>,
    /// Its `pub use path::*` re-exports.
    globs: Vec<Vec<String>>,
    /// The paths of its intra-doc links, with their offsets.
    doc_links: Vec<(usize, String)>,
}

/// A path to an item of the crate, named in a `use`, in code or in a doc
/// link.
struct NamedPath {
    /// As written, for messages.
    written: String,
    /// From the crate root, `super` and `self` resolved.
    absolute: Vec<String>,
    /// The module it is named in (the file's, or an inline module's).
    scope: Vec<String>,
    /// The file that defines the item, re-exports followed.
    target: Option<usize>,
    line: usize,
    /// On a `pub use` line.
    reexport: bool,
    /// In an intra-doc link.
    doc: bool,
    test: bool,
}

impl NamedPath {
    fn importing_top(&self) -> Option<&str> {
        self.scope.first().map(String::as_str)
    }

    fn imported_top(&self) -> Option<&str> {
        self.absolute.first().map(String::as_str)
    }

    fn verb(&self) -> &'static str {
        if self.doc { "links to" } else { "imports" }
    }
}

impl Tree {
    fn paths(&self) -> impl Iterator<Item = (usize, &NamedPath)> {
        self.paths
            .iter()
            .enumerate()
            .flat_map(|(file, paths)| paths.iter().map(move |p| (file, p)))
    }
}

impl SourceFile {
    fn line(&self, at: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= at)
    }

    fn is_test(&self, at: usize) -> bool {
        self.tests.iter().any(|&(s, e)| s <= at && at < e)
    }

    /// The module an offset is in: the file's, and the inline modules
    /// around it.
    fn scope(&self, at: usize) -> Vec<String> {
        let mut scope = self.module.clone();
        for (s, e, name) in &self.inline {
            if *s <= at && at < *e {
                scope.push(name.clone());
            }
        }
        scope
    }
}

/// The tree, read once for all the tests.
fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in CRATES {
            let src = crates.join(krate).join("src");
            load(&crates, &src.join("lib.rs"), Vec::new(), false, &mut files);
            let undeclared = undeclared(&crates, &src, &files);
            assert!(
                undeclared.is_empty(),
                "files no `mod` declares, which the compiler never reads: {undeclared:?}"
            );
        }
        let mut modules = BTreeMap::new();
        for (index, file) in files.iter().enumerate() {
            modules.insert(file.module.clone(), index);
            for (_, _, name) in &file.inline {
                let mut module = file.module.clone();
                module.push(name.clone());
                modules.entry(module).or_insert(index);
            }
        }
        let mut tree = Tree {
            files,
            modules,
            paths: Vec::new(),
        };
        // Re-exports first: resolving any path may go through them.
        let exports: Vec<_> = (0..tree.files.len())
            .map(|index| exports(&tree, index))
            .collect();
        for (file, (reexports, globs)) in tree.files.iter_mut().zip(exports) {
            file.reexports = reexports;
            file.globs = globs;
        }
        tree.paths = (0..tree.files.len())
            .map(|index| named_paths(&tree, index))
            .collect();
        tree
    })
}

/// Reads `path` as `module`, then every file its `mod` declarations name;
/// files are named by their path under `crates`.
fn load(crates: &Path, path: &Path, module: Vec<String>, test: bool, files: &mut Vec<SourceFile>) {
    let raw =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let code = blank(&raw);
    let bytes = code.as_bytes();
    let mut line_starts = vec![0];
    line_starts.extend(
        (0..bytes.len())
            .filter(|&i| bytes[i] == b'\n')
            .map(|i| i + 1),
    );
    let mut tests = test_ranges(bytes);
    if test {
        tests.push((0, bytes.len()));
    }
    let (defines, declared) = top_level_items(bytes, &raw);
    // A file's children are in the directory named after it, unless it is
    // `lib.rs` or a `mod.rs`, whose children are beside it.
    let file_name = path.file_name().unwrap();
    let children = if file_name == "lib.rs" || file_name == "mod.rs" {
        path.parent().unwrap().to_owned()
    } else {
        path.with_extension("")
    };
    let file = SourceFile {
        name: relative(crates, path),
        module: module.clone(),
        inline: inline_modules(bytes),
        line_starts,
        tests,
        defines,
        reexports: BTreeMap::new(),
        globs: Vec::new(),
        doc_links: doc_links(&raw),
        code,
    };
    let mut child_files: Vec<(PathBuf, Vec<String>, bool)> = Vec::new();
    for d in declared {
        let child_path = match &d.path_attribute {
            // `#[path]` outside an inline module is relative to the
            // directory of the file that declares the module.
            Some(p) => path.parent().unwrap().join(p),
            None if children.join(format!("{}.rs", d.name)).exists() => {
                children.join(format!("{}.rs", d.name))
            }
            None => children.join(&d.name).join("mod.rs"),
        };
        let mut child = module.clone();
        child.push(d.name);
        child_files.push((child_path, child, test || file.is_test(d.at)));
    }
    files.push(file);
    for (child_path, child, test) in child_files {
        load(crates, &child_path, child, test, files);
    }
}

/// Every `.rs` file under `src` that the walk from `lib.rs` did not reach.
fn undeclared(crates: &Path, src: &Path, files: &[SourceFile]) -> Vec<String> {
    let reached: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let mut all = Vec::new();
    let mut stack = vec![src.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                all.push(relative(crates, &path));
            }
        }
    }
    all.retain(|f| !reached.contains(f.as_str()));
    all.sort();
    all
}

fn relative(crates: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(crates).unwrap();
    relative.to_string_lossy().replace('\\', "/")
}

/// Replaces comments and the contents of string and character literals by
/// spaces (newlines kept), so that offsets and lines stay the file's.
fn blank(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        let (from, to, next) = if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            (i, end, end)
        } else if b[i..].starts_with(b"/*") {
            let end = block_comment_end(b, i);
            (i, end, end)
        } else if let Some((body, hashes)) = raw_string_start(b, i) {
            let close = raw_string_close(b, body, hashes);
            (body, close, close + 1 + hashes)
        } else if b[i] == b'"' {
            let close = string_close(b, i + 1);
            (i + 1, close, close + 1)
        } else if b[i] == b'\'' {
            match char_literal_close(b, i) {
                Some(close) => (i + 1, close, close + 1),
                // A lifetime or a label.
                None => (i, i, i + 1),
            }
        } else {
            (i, i, i + 1)
        };
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        i = next;
    }
    String::from_utf8(out).expect("only whole characters are blanked")
}

/// Past the `*/` that closes the (nested) block comment at `i`.
fn block_comment_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 0;
    while i < b.len() {
        if b[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if b[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// For a raw string literal at `i` (`r"`, `r#"`, `br"`, `cr#"`...), where
/// its contents start and how many `#` close it.
fn raw_string_start(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0 && is_ident(b[i - 1]) {
        return None;
    }
    let r = match b[i] {
        b'r' => i,
        b'b' | b'c' if b.get(i + 1) == Some(&b'r') => i + 1,
        _ => return None,
    };
    let hashes = b[r + 1..].iter().take_while(|&&c| c == b'#').count();
    // `r#name` is a raw identifier.
    (b.get(r + 1 + hashes) == Some(&b'"')).then_some((r + 2 + hashes, hashes))
}

/// The `"` that closes a raw string's contents starting at `body`.
fn raw_string_close(b: &[u8], body: usize, hashes: usize) -> usize {
    (body..b.len())
        .find(|&k| {
            b[k] == b'"'
                && b[k + 1..]
                    .iter()
                    .take(hashes)
                    .filter(|&&c| c == b'#')
                    .count()
                    == hashes
        })
        .unwrap_or(b.len())
}

/// The `"` that closes a string's contents starting at `body`.
fn string_close(b: &[u8], body: usize) -> usize {
    let mut k = body;
    while k < b.len() && b[k] != b'"' {
        k += if b[k] == b'\\' { 2 } else { 1 };
    }
    k
}

/// The `'` that closes the character literal at `i`, if it is one.
fn char_literal_close(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i + 1) == Some(&b'\\') {
        return (i + 2..b.len()).find(|&k| b[k] == b'\'');
    }
    let width = match b.get(i + 1)? {
        c if *c >= 0xf0 => 4,
        c if *c >= 0xe0 => 3,
        c if *c >= 0xc0 => 2,
        _ => 1,
    };
    (b.get(i + 1 + width) == Some(&b'\'')).then_some(i + 1 + width)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Offsets where `needle` stands as whole tokens (not part of a longer name).
fn find_tokens(code: &[u8], needle: &str) -> Vec<usize> {
    let n = needle.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(p) = code[i..].windows(n.len()).position(|w| w == n) {
        let at = i + p;
        let before = at.checked_sub(1).map(|j| code[j]);
        let after = code.get(at + n.len()).copied();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            found.push(at);
        }
        i = at + 1;
    }
    found
}

fn skip_space(code: &[u8], mut i: usize) -> usize {
    while i < code.len() && code[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The identifier at `i` (without its `r#`), and the offset past it.
fn ident_at(code: &[u8], i: usize) -> Option<(&str, usize)> {
    let start = if code[i..].starts_with(b"r#") {
        i + 2
    } else {
        i
    };
    let end = (start..code.len())
        .find(|&k| !is_ident(code[k]))
        .unwrap_or(code.len());
    let word = std::str::from_utf8(&code[start..end]).ok()?;
    (!word.is_empty() && !word.as_bytes()[0].is_ascii_digit()).then_some((word, end))
}

/// The offset past the brace that closes the one at `open`.
fn matching_brace(code: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// The offset past the item at `i`: past its `;`, or its closing brace.
fn item_end(code: &[u8], i: usize) -> usize {
    let mut depth = 0i32;
    for (j, &c) in code.iter().enumerate().skip(i) {
        match c {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b';' if depth == 0 => return j + 1,
            b'{' if depth == 0 => return matching_brace(code, j),
            _ => {}
        }
    }
    code.len()
}

/// The offset past the attributes (`#[...]`) and spaces at `i`.
fn skip_attributes(code: &[u8], mut i: usize) -> usize {
    loop {
        i = skip_space(code, i);
        if !code[i..].starts_with(b"#[") {
            return i;
        }
        let mut depth = 0;
        while i < code.len() {
            match code[i] {
                b'[' => depth += 1,
                b']' => depth -= 1,
                _ => {}
            }
            i += 1;
            if depth == 0 {
                break;
            }
        }
    }
}

/// The byte ranges of the items under `#[cfg(test)]`.
fn test_ranges(code: &[u8]) -> Vec<(usize, usize)> {
    let needle = b"#[cfg(test)]";
    let mut ranges = Vec::new();
    for at in (0..code.len()).filter(|&i| code[i..].starts_with(needle)) {
        let item = skip_attributes(code, at);
        ranges.push((at, item_end(code, item)));
    }
    ranges
}

/// Inline modules (`mod name { ... }`): their ranges and names.
fn inline_modules(code: &[u8]) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    for at in find_tokens(code, "mod") {
        let Some((name, end)) = ident_at(code, skip_space(code, at + 3)) else {
            continue;
        };
        let open = skip_space(code, end);
        if code.get(open) == Some(&b'{') {
            found.push((at, matching_brace(code, open), name.to_owned()));
        }
    }
    found
}

/// A `mod name;` declaration: a module in a file of its own.
struct Declared {
    name: String,
    at: usize,
    path_attribute: Option<String>,
}

/// The names a file defines at its top level, and its `mod name;`
/// declarations (their `#[path]` read from the raw text, where the
/// string is not blanked).
fn top_level_items(code: &[u8], raw: &str) -> (BTreeSet<String>, Vec<Declared>) {
    const KINDS: &[&str] = &[
        "struct", "enum", "fn", "const", "static", "trait", "type", "union", "mod",
    ];
    let mut defines = BTreeSet::new();
    let mut declared = Vec::new();
    let mut depth = 0usize;
    // Where the attributes of the item being read began.
    let mut attributes: Option<usize> = None;
    let mut i = 0;
    while i < code.len() {
        match code[i] {
            b'{' => depth += 1,
            b'}' => {
                depth = depth.saturating_sub(1);
                attributes = None;
            }
            b';' => attributes = None,
            b'#' if depth == 0 && code[i..].starts_with(b"#[") => {
                attributes.get_or_insert(i);
                i = skip_attributes(code, i);
                continue;
            }
            c if depth == 0 && is_ident(c) && (i == 0 || !is_ident(code[i - 1])) => {
                let Some((word, end)) = ident_at(code, i) else {
                    i += 1;
                    continue;
                };
                let name = ident_at(code, skip_space(code, end));
                if let (true, Some((name, name_end))) = (KINDS.contains(&word), name) {
                    defines.insert(name.to_owned());
                    if word == "mod" && code.get(skip_space(code, name_end)) == Some(&b';') {
                        let attrs = &raw[attributes.unwrap_or(i)..i];
                        let path_attribute = attrs.split_once("#[path = \"").map(|(_, rest)| {
                            rest.split_once('"')
                                .map_or(rest, |(path, _)| path)
                                .to_owned()
                        });
                        declared.push(Declared {
                            name: name.to_owned(),
                            at: i,
                            path_attribute,
                        });
                    }
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    (defines, declared)
}

/// A leaf of a `use` tree: its segments, its alias and where it is written.
struct UseLeaf {
    segments: Vec<String>,
    alias: Option<String>,
    glob: bool,
    at: usize,
}

/// Every `use` item of a file: its leaves, whether it is a `pub use`, and
/// its byte range.
fn uses(code: &[u8]) -> Vec<(Vec<UseLeaf>, bool, (usize, usize))> {
    let mut found = Vec::new();
    for at in find_tokens(code, "use") {
        let mut leaves = Vec::new();
        let end = use_tree(code, at + 3, &[], &mut leaves);
        let end = code[end..]
            .iter()
            .position(|&c| c == b';')
            .map_or(end, |p| end + p + 1);
        // `pub`, `pub(crate)`, `pub(super)` before the keyword.
        let before = std::str::from_utf8(&code[..at]).unwrap().trim_end();
        let before = match before.strip_suffix(')') {
            Some(b) => b.rsplit_once('(').map_or(b, |(b, _)| b).trim_end(),
            None => before,
        };
        let public =
            before.ends_with("pub") && !before[..before.len() - 3].ends_with(is_ident_char);
        found.push((leaves, public, (at, end)));
    }
    found
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads the `use` tree at `i` into `leaves`; returns the offset past it.
fn use_tree(code: &[u8], i: usize, prefix: &[String], leaves: &mut Vec<UseLeaf>) -> usize {
    let mut segments = prefix.to_vec();
    let start = skip_space(code, i);
    let mut i = start;
    loop {
        i = skip_space(code, i);
        if code[i..].starts_with(b"::") {
            i += 2;
            continue;
        }
        if code[i] == b'{' {
            i += 1;
            loop {
                i = skip_space(code, i);
                if code[i] == b'}' {
                    return i + 1;
                }
                let next = use_tree(code, i, &segments, leaves);
                i = skip_space(code, next);
                if code[i] == b',' {
                    i += 1;
                } else if next == i && code[i] != b'}' {
                    // Not a use tree after all: give up on it.
                    return i;
                }
            }
        }
        if code[i] == b'*' {
            leaves.push(UseLeaf {
                segments,
                alias: None,
                glob: true,
                at: start,
            });
            return i + 1;
        }
        let Some((word, end)) = ident_at(code, i) else {
            return i;
        };
        segments.push(word.to_owned());
        i = skip_space(code, end);
        if code[i..].starts_with(b"::") {
            continue;
        }
        let mut alias = None;
        if let Some(("as", end)) = ident_at(code, i)
            && let Some((name, end)) = ident_at(code, skip_space(code, end))
        {
            alias = Some(name.to_owned());
            i = end;
        }
        // `a::{self}` names `a` itself.
        if segments.len() > 1 && segments.last().is_some_and(|s| s == "self") {
            segments.pop();
        }
        leaves.push(UseLeaf {
            segments,
            alias,
            glob: false,
            at: start,
        });
        return i;
    }
}

/// The paths of a file's intra-doc links (`` [`crate::oci::Source`] ``,
/// `` [`Source`](crate::oci::Source) ``), with their offsets. Only paths
/// with `::` are kept: a bare name is resolved through the file's own
/// imports, which are checked themselves.
fn doc_links(raw: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut offset = 0;
    for line in raw.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("///") || trimmed.starts_with("//!") {
            for (open, close) in [("[`", "`]"), ("](", ")")] {
                let mut from = 0;
                while let Some(p) = line[from..].find(open) {
                    let start = from + p + open.len();
                    let Some(len) = line[start..].find(close) else {
                        break;
                    };
                    let inner = &line[start..start + len];
                    let path = inner.trim_end_matches("()").trim_end_matches('!');
                    let path = path.rsplit('@').next().unwrap_or(path);
                    let segments_ok = path
                        .split("::")
                        .all(|s| !s.is_empty() && s.chars().all(is_ident_char));
                    if path.contains("::") && segments_ok {
                        found.push((offset + start, path.to_owned()));
                    }
                    from = start + len;
                }
            }
        }
        offset += line.len();
    }
    found
}

/// Resolves `segments`, named in `scope`, to a path from the crate root
/// (`scratchpack_base`'s root is the engine's, which re-exports it); `None`
/// for another crate's path.
fn absolute(
    tree: &Tree,
    scope: &[String],
    segments: &[String],
    aliases: &BTreeMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    let (first, mut rest) = segments.split_first()?;
    let mut out = match first.as_str() {
        "crate" | "scratchpack_base" => Vec::new(),
        "self" => scope.to_vec(),
        "super" => {
            let mut out = scope.to_vec();
            out.pop();
            while let Some((_, after)) = rest.split_first().filter(|(s, _)| *s == "super") {
                out.pop();
                rest = after;
            }
            out
        }
        name => {
            let mut child = scope.to_vec();
            child.push(name.to_owned());
            if tree.modules.contains_key(&child) {
                child
            } else {
                aliases.get(name)?.clone()
            }
        }
    };
    out.extend(rest.iter().cloned());
    Some(out)
}

/// The file that defines what `path` names: the file of its longest module
/// prefix, or, for an item that module re-exports, the re-exported item's.
fn target(tree: &Tree, path: &[String], depth: usize) -> Option<usize> {
    let k = (0..=path.len())
        .rev()
        .find(|k| tree.modules.contains_key(&path[..*k]))?;
    let file = tree.modules[&path[..k]];
    if k == path.len() || depth > 8 {
        return Some(file);
    }
    Some(lookup(tree, &path[..k], &path[k..], depth).unwrap_or(file))
}

/// The file that defines `rest[0]` in `module`, through its re-exports.
fn lookup(tree: &Tree, module: &[String], rest: &[String], depth: usize) -> Option<usize> {
    let file = *tree.modules.get(module)?;
    let f = &tree.files[file];
    let name = &rest[0];
    // An inline module (only tests are written inline) is its file's.
    if f.module != module || f.defines.contains(name) {
        return Some(file);
    }
    if let Some(to) = f.reexports.get(name) {
        let mut full = to.clone();
        full.extend(rest[1..].iter().cloned());
        return target(tree, &full, depth + 1);
    }
    f.globs
        .iter()
        .find_map(|glob| lookup(tree, glob, rest, depth + 1))
}

/// The `pub use` items of a file's own module: name -> what it stands for,
/// and the globs.
fn exports(tree: &Tree, index: usize) -> (BTreeMap<String, Vec<String>>, Vec<Vec<String>>) {
    let file = &tree.files[index];
    let mut named = BTreeMap::new();
    let mut globs = Vec::new();
    for (leaves, public, _) in uses(file.code.as_bytes()) {
        for leaf in leaves.into_iter().filter(|_| public) {
            let scope = file.scope(leaf.at);
            if scope != file.module {
                continue;
            }
            let Some(abs) = absolute(tree, &scope, &leaf.segments, &BTreeMap::new()) else {
                continue;
            };
            if leaf.glob {
                globs.push(abs);
            } else {
                let name = leaf
                    .alias
                    .or_else(|| abs.last().cloned())
                    .unwrap_or_default();
                named.insert(name, abs);
            }
        }
    }
    (named, globs)
}

/// Every crate path a file names: in `use` items, in code, in doc links.
fn named_paths(tree: &Tree, index: usize) -> Vec<NamedPath> {
    let file = &tree.files[index];
    let code = file.code.as_bytes();
    let mut out = Vec::new();
    // Modules brought in by a `use`, by the name they go by.
    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let uses = uses(code);
    for (leaves, public, _) in &uses {
        for leaf in leaves {
            let scope = file.scope(leaf.at);
            let Some(abs) = absolute(tree, &scope, &leaf.segments, &aliases) else {
                continue;
            };
            if !leaf.glob && tree.modules.contains_key(&abs) {
                let name = leaf.alias.clone().or_else(|| abs.last().cloned());
                aliases.insert(name.unwrap_or_default(), abs.clone());
            }
            let target = if leaf.glob {
                tree.modules.get(&abs).copied()
            } else {
                target(tree, &abs, 0)
            };
            let glob = if leaf.glob { "::*" } else { "" };
            out.push(NamedPath {
                written: leaf.segments.join("::") + glob,
                absolute: abs,
                scope,
                target,
                line: file.line(leaf.at),
                reexport: *public,
                doc: false,
                test: file.is_test(leaf.at),
            });
        }
    }
    let in_use = |at: usize| uses.iter().any(|(_, _, (s, e))| *s <= at && at < *e);
    for (at, segments) in code_paths(code).into_iter().filter(|(at, _)| !in_use(*at)) {
        out.extend(resolved(tree, file, at, &segments, &aliases, false));
    }
    for (at, link) in &file.doc_links {
        let segments: Vec<String> = link.split("::").map(str::to_owned).collect();
        out.extend(resolved(tree, file, *at, &segments, &aliases, true));
    }
    out
}

/// A path named at `at` in `file`, resolved; `None` for another crate's.
fn resolved(
    tree: &Tree,
    file: &SourceFile,
    at: usize,
    segments: &[String],
    aliases: &BTreeMap<String, Vec<String>>,
    doc: bool,
) -> Option<NamedPath> {
    let scope = file.scope(at);
    let absolute = absolute(tree, &scope, segments, aliases)?;
    Some(NamedPath {
        written: segments.join("::"),
        target: target(tree, &absolute, 0),
        absolute,
        scope,
        line: file.line(at),
        reexport: false,
        doc,
        test: file.is_test(at),
    })
}

/// Every path of two or more segments in code (`a::b`, `a::b::c`), with
/// where it starts.
fn code_paths(code: &[u8]) -> Vec<(usize, Vec<String>)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let starts_path =
            is_ident(code[i]) && (i == 0 || !is_ident(code[i - 1]) && code[i - 1] != b':');
        let Some((_, end)) = starts_path.then(|| ident_at(code, i)).flatten() else {
            i += 1;
            continue;
        };
        if !code[end..].starts_with(b"::") {
            i = end;
            continue;
        }
        let start = i;
        let mut segments = Vec::new();
        while let Some((word, end)) = ident_at(code, i) {
            segments.push(word.to_owned());
            i = end;
            if !code[end..].starts_with(b"::") || !code.get(end + 2).is_some_and(|c| is_ident(*c)) {
                break;
            }
            i = end + 2;
        }
        found.push((start, segments));
    }
    found
}

/// A function definition: its name, where its `fn` is, and how many lines
/// it takes from the `fn` to the closing brace.
struct Function {
    name: String,
    at: usize,
    lines: usize,
}

fn functions(file: &SourceFile) -> Vec<Function> {
    let code = file.code.as_bytes();
    let mut found = Vec::new();
    for at in find_tokens(code, "fn") {
        // `fn(u8) -> u8` is a type, not a definition.
        let Some((name, end)) = ident_at(code, skip_space(code, at + 2)) else {
            continue;
        };
        let mut depth = 0i32;
        let mut body = None;
        for (j, &c) in code.iter().enumerate().skip(end) {
            match c {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    body = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = body else { continue };
        let close = matching_brace(code, open) - 1;
        found.push(Function {
            name: name.to_owned(),
            at,
            lines: file.line(close) - file.line(at) + 1,
        });
    }
    found
}

/// The import cycles among `nodes` files, one per set of files that import
/// each other round (Tarjan's strongly connected components), each as the
/// shortest way from its first file back to it, that file at both ends.
fn cycles(nodes: usize, edges: &BTreeMap<usize, BTreeMap<usize, usize>>) -> Vec<Vec<usize>> {
    struct State<'e> {
        edges: &'e BTreeMap<usize, BTreeMap<usize, usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        sets: Vec<Vec<usize>>,
    }
    fn connect(s: &mut State<'_>, n: usize) {
        s.index[n] = Some(s.counter);
        s.low[n] = s.counter;
        s.counter += 1;
        s.stack.push(n);
        s.on_stack[n] = true;
        let successors: Vec<usize> = s
            .edges
            .get(&n)
            .into_iter()
            .flat_map(|m| m.keys().copied())
            .collect();
        for to in successors {
            match s.index[to] {
                None => {
                    connect(s, to);
                    s.low[n] = s.low[n].min(s.low[to]);
                }
                Some(i) if s.on_stack[to] => s.low[n] = s.low[n].min(i),
                Some(_) => {}
            }
        }
        if s.index[n] == Some(s.low[n]) {
            let mut set = Vec::new();
            while let Some(m) = s.stack.pop() {
                s.on_stack[m] = false;
                set.push(m);
                if m == n {
                    break;
                }
            }
            if set.len() > 1 {
                s.sets.push(set);
            }
        }
    }
    let mut state = State {
        edges,
        index: vec![None; nodes],
        low: vec![0; nodes],
        on_stack: vec![false; nodes],
        stack: Vec::new(),
        counter: 0,
        sets: Vec::new(),
    };
    for n in 0..nodes {
        if state.index[n].is_none() {
            connect(&mut state, n);
        }
    }
    let next = |n: usize| edges.get(&n).into_iter().flat_map(|m| m.keys().copied());
    state
        .sets
        .iter()
        .map(|set| shortest_cycle(set, &next))
        .collect()
}

/// The shortest way round from the first file of `set` (breadth first).
fn shortest_cycle<I: Iterator<Item = usize>>(
    set: &[usize],
    next: &impl Fn(usize) -> I,
) -> Vec<usize> {
    let start = *set.iter().min().unwrap();
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut last = start;
    let mut queue = VecDeque::from([start]);
    'search: while let Some(n) = queue.pop_front() {
        for to in next(n).filter(|t| set.contains(t)) {
            if to == start {
                last = n;
                break 'search;
            }
            if let std::collections::btree_map::Entry::Vacant(e) = came_from.entry(to) {
                e.insert(n);
                queue.push_back(to);
            }
        }
    }
    let mut back = vec![start];
    let mut n = last;
    while n != start {
        back.push(n);
        n = came_from[&n];
    }
    back.push(start);
    back.reverse();
    back
}
