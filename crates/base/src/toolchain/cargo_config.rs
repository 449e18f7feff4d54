//! The rustflags cargo gives a target's crates, worked out as cargo works
//! them out (cargo's reference, "Configuration": `build.rustflags` and
//! `target.<triple>.rustflags`), because image builds set
//! `CARGO_ENCODED_RUSTFLAGS`, which makes cargo ignore its configuration's:
//! the first of `CARGO_ENCODED_RUSTFLAGS`, `RUSTFLAGS`, then
//! `target.<triple>.rustflags` joined with every matching
//! `target.'cfg(…)'.rustflags`, else `build.rustflags`. Each key is the
//! values of every configuration file joined (`$CARGO_HOME/config.toml`
//! first, then from the outermost directory above where cargo runs to that
//! directory itself), a string split on whitespace as an array, then the
//! key's variable (`CARGO_TARGET_<TRIPLE>_RUSTFLAGS`,
//! `CARGO_BUILD_RUSTFLAGS`) after them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Env;

/// The `rustflags` of cargo's configuration files, as read from one
/// directory (serialised for action keys: their values, not where the
/// files are).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CargoConfig {
    build: Vec<String>,
    build_set: bool,
    /// `target.<triple>.rustflags` by triple.
    triples: BTreeMap<String, Vec<String>>,
    /// `target.'cfg(…)'.rustflags` by key, in key order as cargo takes them.
    cfgs: BTreeMap<String, Vec<String>>,
}

impl CargoConfig {
    /// Reads the configuration files cargo reads when run in `dir`: each
    /// `.cargo/config.toml` (or the older `.cargo/config`) from `dir` up, and cargo's
    /// home's. A file that is not TOML is passed over: cargo refuses it,
    /// and says so itself.
    pub fn read(env: &Env, dir: &Path) -> CargoConfig {
        let mut files: Vec<PathBuf> = dir
            .ancestors()
            .filter_map(|d| {
                let dot = d.join(".cargo");
                // With both, cargo reads the one without the extension.
                [dot.join("config"), dot.join("config.toml")]
                    .into_iter()
                    .find(|f| f.is_file())
            })
            .collect();
        if let Some(home) = env.cargo_home() {
            let home_file = [home.join("config"), home.join("config.toml")]
                .into_iter()
                .find(|f| f.is_file());
            // The home's file is read once, first, even when it is also
            // above `dir`.
            if let Some(h) = home_file {
                files.retain(|f| *f != h);
                files.push(h);
            }
        }
        let mut config = CargoConfig::default();
        for file in files.iter().rev() {
            if let Some(table) = std::fs::read_to_string(file)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
            {
                config.add(&table);
            }
        }
        config
    }

    /// Joins one file's values to those of the files read before it.
    fn add(&mut self, table: &toml::Table) {
        let flags = |t: Option<&toml::Value>| t?.get("rustflags").and_then(string_list);
        if let Some(f) = flags(table.get("build")) {
            self.build.extend(f);
            self.build_set = true;
        }
        let Some(targets) = table.get("target").and_then(toml::Value::as_table) else {
            return;
        };
        for (key, value) in targets {
            let Some(f) = flags(Some(value)) else {
                continue;
            };
            let map = if key.starts_with("cfg(") {
                &mut self.cfgs
            } else {
                &mut self.triples
            };
            map.entry(key.clone()).or_default().extend(f);
        }
    }

    /// Whether a `target.'cfg(…)'` table sets rustflags, and so rustc's
    /// cfg values for a triple are needed.
    pub fn has_cfg_flags(&self) -> bool {
        !self.cfgs.is_empty()
    }

    /// The flags cargo would give `triple`'s crates. `cfg` gives rustc's
    /// cfg values for the triple (`rustc --print cfg`, one `name` or
    /// `name="value"` a line), given the flags that apply without the
    /// `cfg` tables; it is asked only when there are such tables.
    pub fn rustflags(
        &self,
        env: &Env,
        triple: &str,
        cfg: impl FnOnce(&[String]) -> Vec<String>,
    ) -> Vec<String> {
        if let Some(flags) = env.env_rustflags() {
            return flags;
        }
        let mut triple_flags = self.triples.get(triple).cloned().unwrap_or_default();
        triple_flags.extend(env.target_rustflags(triple));
        let mut build = self.build.clone();
        let build_env = env.build_rustflags();
        let build_set = self.build_set || build_env.is_some();
        build.extend(build_env.unwrap_or_default());
        let mut flags = triple_flags;
        if self.has_cfg_flags() {
            let without_cfgs = if flags.is_empty() && build_set {
                build.clone()
            } else {
                flags.clone()
            };
            let values = cfg(&without_cfgs);
            for (key, cfg_flags) in &self.cfgs {
                if cfg_matches(key, &values) {
                    flags.extend(cfg_flags.iter().cloned());
                }
            }
        }
        if flags.is_empty() { build } else { flags }
    }
}

/// A string (split on whitespace) or an array of strings.
fn string_list(value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

/// Whether a `cfg(…)` key holds for rustc's cfg `values`; a key that does
/// not parse holds for nothing.
pub fn cfg_matches(key: &str, values: &[String]) -> bool {
    let Some(inner) = key
        .trim()
        .strip_prefix("cfg(")
        .and_then(|k| k.strip_suffix(')'))
    else {
        return false;
    };
    let mut parser = CfgParser { rest: inner };
    let Some(expr) = parser.expr() else {
        return false;
    };
    parser.skip_space();
    parser.rest.is_empty() && expr.holds(values)
}

enum CfgExpr {
    All(Vec<CfgExpr>),
    Any(Vec<CfgExpr>),
    Not(Box<CfgExpr>),
    Name(String),
    Pair(String, String),
}

impl CfgExpr {
    fn holds(&self, values: &[String]) -> bool {
        match self {
            CfgExpr::All(all) => all.iter().all(|e| e.holds(values)),
            CfgExpr::Any(any) => any.iter().any(|e| e.holds(values)),
            CfgExpr::Not(e) => !e.holds(values),
            CfgExpr::Name(n) => values.iter().any(|v| v == n),
            CfgExpr::Pair(k, v) => values
                .iter()
                .any(|line| line.split_once('=') == Some((k.as_str(), &format!("\"{v}\"")))),
        }
    }
}

/// The cfg grammar (the Rust reference, "Conditional compilation"):
/// `all(…)`, `any(…)`, `not(…)`, `name` and `name = "value"`.
struct CfgParser<'a> {
    rest: &'a str,
}

impl CfgParser<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_space();
        let end = self
            .rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(self.rest.len());
        (end > 0).then(|| {
            let (ident, rest) = self.rest.split_at(end);
            self.rest = rest;
            ident.to_owned()
        })
    }

    fn string(&mut self) -> Option<String> {
        self.skip_space();
        let body = self.rest.strip_prefix('"')?;
        let end = body.find('"')?;
        self.rest = &body[end + 1..];
        Some(body[..end].to_owned())
    }

    fn expr(&mut self) -> Option<CfgExpr> {
        let name = self.ident()?;
        if self.eat('(') {
            let mut list = Vec::new();
            while !self.eat(')') {
                list.push(self.expr()?);
                if !self.eat(',') {
                    self.eat(')').then_some(())?;
                    break;
                }
            }
            return match name.as_str() {
                "all" => Some(CfgExpr::All(list)),
                "any" => Some(CfgExpr::Any(list)),
                "not" if list.len() == 1 => Some(CfgExpr::Not(Box::new(list.remove(0)))),
                _ => None,
            };
        }
        if self.eat('=') {
            return Some(CfgExpr::Pair(name, self.string()?));
        }
        Some(CfgExpr::Name(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUSL_CFG: &[&str] = &[
        "debug_assertions",
        "panic=\"unwind\"",
        "target_arch=\"x86_64\"",
        "target_env=\"musl\"",
        "target_feature=\"sse2\"",
        "target_os=\"linux\"",
        "unix",
    ];

    fn values() -> Vec<String> {
        MUSL_CFG.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn cfg_expressions_match_as_rustc_would() {
        let v = values();
        for (key, want) in [
            ("cfg(unix)", true),
            ("cfg(windows)", false),
            ("cfg(target_env = \"musl\")", true),
            ("cfg(target_env=\"gnu\")", false),
            (
                "cfg(all(target_os = \"linux\", target_arch = \"x86_64\"))",
                true,
            ),
            (
                "cfg(all(target_os = \"linux\", target_arch = \"aarch64\"))",
                false,
            ),
            ("cfg(any(windows, target_env = \"musl\"))", true),
            ("cfg(not(target_env = \"musl\"))", false),
            ("cfg(all())", true),
            ("cfg(any())", false),
            ("cfg(all(unix,))", true),
            ("cfg(unix", false),
            ("cfg(not(unix, windows))", false),
            ("cfg(unix) trailing", false),
            ("x86_64-unknown-linux-musl", false),
        ] {
            assert_eq!(cfg_matches(key, &v), want, "{key}");
        }
    }

    /// A workspace `ws/inner` under `ws`, each with a `.cargo/config.toml`,
    /// and a cargo home with one.
    fn layout(inner: &str, outer: &str, home: &str) -> (tempfile::TempDir, PathBuf, Env) {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write("ws/inner/.cargo/config.toml", inner);
        write("ws/.cargo/config.toml", outer);
        write("home/config.toml", home);
        let env = Env::from_vars([("CARGO_HOME", dir.path().join("home"))]);
        let ws = dir.path().join("ws/inner");
        (dir, ws, env)
    }

    const T: &str = "x86_64-unknown-linux-musl";

    fn flags(config: &CargoConfig, env: &Env) -> Vec<String> {
        config.rustflags(env, T, |_| values())
    }

    /// What cargo 1.95 gives for each layout (checked with a rustc wrapper
    /// that logs its arguments).
    #[test]
    fn the_sources_take_turns_as_in_cargo() {
        let (_d, ws, env) = layout(
            "[build]\nrustflags = [\"--cfg\", \"inner_build\"]\n\
             [target.x86_64-unknown-linux-musl]\nrustflags = [\"--cfg\", \"inner_triple\"]\n\
             [target.'cfg(target_env = \"musl\")']\nrustflags = [\"--cfg\", \"inner_cfg\"]\n",
            "[build]\nrustflags = [\"--cfg\", \"outer_build\"]\n\
             [target.x86_64-unknown-linux-musl]\nrustflags = \"--cfg outer_triple\"\n",
            "[build]\nrustflags = [\"--cfg\", \"home_build\"]\n\
             [target.x86_64-unknown-linux-musl]\nrustflags = [\"--cfg\", \"home_triple\"]\n",
        );
        let config = CargoConfig::read(&env, &ws);
        let cfgs = |f: Vec<String>| -> Vec<String> { f.chunks(2).map(|c| c[1].clone()).collect() };
        assert_eq!(
            cfgs(flags(&config, &env)),
            ["home_triple", "outer_triple", "inner_triple", "inner_cfg"]
        );
        // The triple's variable is joined after the files' values.
        let with_var = |name: &str, value: &str| {
            let mut vars = vec![(
                "CARGO_HOME".to_owned(),
                env.cargo_home().unwrap().into_os_string(),
            )];
            vars.push((name.to_owned(), value.into()));
            Env::from_vars(vars)
        };
        let e = with_var(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS",
            "--cfg env_triple",
        );
        assert_eq!(
            cfgs(flags(&config, &e)),
            [
                "home_triple",
                "outer_triple",
                "inner_triple",
                "env_triple",
                "inner_cfg"
            ]
        );
        // build.rustflags are not used while a triple or cfg table applies.
        let e = with_var("CARGO_BUILD_RUSTFLAGS", "--cfg env_build");
        assert_eq!(
            cfgs(flags(&config, &e)),
            ["home_triple", "outer_triple", "inner_triple", "inner_cfg"]
        );
        // RUSTFLAGS, and the encoded form, beat every file.
        let e = with_var("RUSTFLAGS", "--cfg rf");
        assert_eq!(flags(&config, &e), ["--cfg", "rf"]);
        let e = with_var("CARGO_ENCODED_RUSTFLAGS", "--cfg\x1fenc");
        assert_eq!(flags(&config, &e), ["--cfg", "enc"]);
        // Another triple gets the build flags: no triple or cfg table
        // matches it.
        let arm = config.rustflags(&env, "aarch64-unknown-linux-musl", |_| {
            vec!["target_env=\"gnu\"".to_owned()]
        });
        assert_eq!(cfgs(arm), ["home_build", "outer_build", "inner_build"]);
    }

    #[test]
    fn build_flags_when_no_table_of_the_triple_applies() {
        let (_d, ws, env) = layout(
            "[build]\nrustflags = [\"--cfg\", \"inner_build\"]\n",
            "[build]\nrustflags = \"--cfg   outer_build\"\n",
            "",
        );
        let config = CargoConfig::read(&env, &ws);
        assert!(!config.has_cfg_flags());
        let asked = std::cell::Cell::new(false);
        let got = config.rustflags(&env, T, |_| {
            asked.set(true);
            Vec::new()
        });
        assert_eq!(got, ["--cfg", "outer_build", "--cfg", "inner_build"]);
        assert!(
            !asked.get(),
            "rustc is asked for cfg values only for cfg tables"
        );
        let e = Env::from_vars([
            ("CARGO_HOME", env.cargo_home().unwrap().into_os_string()),
            ("CARGO_BUILD_RUSTFLAGS", "--cfg env_build".into()),
        ]);
        assert_eq!(
            config.rustflags(&e, T, |_| Vec::new()),
            [
                "--cfg",
                "outer_build",
                "--cfg",
                "inner_build",
                "--cfg",
                "env_build"
            ]
        );
        // A cfg table's flags join the triple's; rustc is asked with the
        // flags that apply without them.
        let (_d, ws, env) = layout(
            "[build]\nrustflags = [\"-Cb\"]\n[target.'cfg(unix)']\nrustflags = [\"-Cu\"]\n",
            "",
            "",
        );
        let config = CargoConfig::read(&env, &ws);
        let mut asked_with = Vec::new();
        let got = config.rustflags(&env, T, |f| {
            asked_with = f.to_vec();
            values()
        });
        assert_eq!(got, ["-Cu"]);
        assert_eq!(asked_with, ["-Cb"]);
        // No file at all: nothing.
        let empty = tempfile::tempdir().unwrap();
        let none = Env::from_vars([("CARGO_HOME", empty.path())]);
        assert!(
            CargoConfig::read(&none, empty.path())
                .rustflags(&none, T, |_| values())
                .is_empty()
        );
    }
}
