//! Tag templates: a tag as images.toml (or `--tag`) writes it, literal text
//! around `{version}` (the package's Cargo version) and `{git.short}`,
//! `{git.commit}`, `{git.tag}`, `{git.branch}` (the checkout's), filled in
//! once per run. The values come from the caller (`GitValues`), asked only
//! for the fields a template names, so a run whose tags name no git field
//! asks git nothing. Tags only name an image: they are kept out of its
//! digest and of every key, so changing them rebuilds nothing.

use super::Tag;

/// A field of the checkout a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GitField {
    /// HEAD's commit, 40 hex digits.
    Commit,
    /// Its first seven.
    Short,
    /// The tag on HEAD (the highest version when there are several).
    Tag,
    /// The branch HEAD is on, made into a valid tag.
    Branch,
}

impl GitField {
    const ALL: [(&'static str, GitField); 4] = [
        ("git.short", GitField::Short),
        ("git.commit", GitField::Commit),
        ("git.tag", GitField::Tag),
        ("git.branch", GitField::Branch),
    ];
}

/// The fields a template may name, as the messages list them.
pub const FIELDS: &str = "`{version}`, `{git.short}`, `{git.commit}`, `{git.tag}`, `{git.branch}`";

/// Where the `git.*` fields of templates are read from, one field at a time.
pub trait GitValues {
    /// The field's value, or why this checkout has none (not a git checkout,
    /// no tag on HEAD, a detached HEAD, uncommitted changes for the fields
    /// that name a commit).
    fn value(&self, field: GitField) -> Result<String, String>;
}

/// Values for a run with no checkout to ask: every git field is missing.
pub struct NoGit;

impl GitValues for NoGit {
    fn value(&self, _: GitField) -> Result<String, String> {
        Err("no git checkout was given".to_owned())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Version,
    Git(GitField),
}

/// A parsed tag template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTemplate {
    text: String,
    parts: Vec<Part>,
}

/// What is wrong with a template as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown field `{{{0}}}`; fields: {FIELDS}")]
    UnknownField(String),
    #[error("a `{{` is not closed")]
    Unclosed,
    #[error("`{0}` cannot be in a tag, which has only letters, digits, `_`, `.` and `-`")]
    Character(char),
    #[error("a tag cannot start with `{0}`, only with a letter, a digit or `_`")]
    Start(char),
    #[error("a tag cannot be empty")]
    Empty,
}

/// What filling in a template gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    Tag(Tag),
    /// A field has no value in this checkout: the tag is skipped, and this
    /// says why.
    Skipped(String),
    /// The values made something that is not a tag.
    Invalid(String),
}

/// Whether `c` may appear in a tag (the first character has one more rule,
/// checked on the whole result).
fn tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

impl TagTemplate {
    pub fn parse(text: &str) -> Result<TagTemplate, TemplateError> {
        if text.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let literal_end = rest.find('{').unwrap_or(rest.len());
            let literal = &rest[..literal_end];
            if let Some(bad) = literal.chars().find(|c| !tag_char(*c)) {
                return Err(TemplateError::Character(bad));
            }
            if let Some(first) = literal
                .chars()
                .next()
                .filter(|c| parts.is_empty() && matches!(c, '.' | '-'))
            {
                return Err(TemplateError::Start(first));
            }
            if !literal.is_empty() {
                parts.push(Part::Text(literal.to_owned()));
            }
            rest = &rest[literal_end..];
            let Some(open) = rest.strip_prefix('{') else {
                break;
            };
            let close = open.find('}').ok_or(TemplateError::Unclosed)?;
            let name = &open[..close];
            let part = match name {
                "version" => Part::Version,
                _ => GitField::ALL
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, f)| Part::Git(*f))
                    .ok_or_else(|| TemplateError::UnknownField(name.to_owned()))?,
            };
            parts.push(part);
            rest = &open[close + 1..];
        }
        Ok(TagTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The tag for a package of `version` in the checkout `git` describes.
    pub fn render(&self, version: &str, git: &dyn GitValues) -> Rendered {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Version => out.push_str(version),
                Part::Git(GitField::Branch) => match git.value(GitField::Branch) {
                    Ok(branch) => match sanitise(&branch) {
                        Some(clean) => out.push_str(&clean),
                        None => {
                            return Rendered::Skipped(format!(
                                "the branch `{branch}` has nothing a tag can hold"
                            ));
                        }
                    },
                    Err(why) => return Rendered::Skipped(why),
                },
                Part::Git(field) => match git.value(*field) {
                    Ok(value) => out.push_str(&value),
                    Err(why) => return Rendered::Skipped(why),
                },
            }
        }
        // A long branch name is cut so the tag still fits.
        if out.len() > 128 && self.parts.contains(&Part::Git(GitField::Branch)) {
            out.truncate(128);
        }
        match Tag::parse(&out) {
            Some(tag) => Rendered::Tag(tag),
            None => Rendered::Invalid(out),
        }
    }
}

impl std::fmt::Display for TagTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A branch name as a tag can hold it, as docker/metadata-action makes one:
/// every run of characters a tag cannot have becomes one `-`, and what a
/// tag cannot start with is dropped from the front. `None` when nothing is
/// left.
pub fn sanitise(branch: &str) -> Option<String> {
    let mut out = String::new();
    for c in branch.chars() {
        if tag_char(c) {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_start_matches(['.', '-']);
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Checkout {
        tag: Option<&'static str>,
        branch: &'static str,
    }

    impl GitValues for Checkout {
        fn value(&self, field: GitField) -> Result<String, String> {
            match field {
                GitField::Commit => Ok("0123456789abcdef0123456789abcdef01234567".into()),
                GitField::Short => Ok("0123456".into()),
                GitField::Tag => self.tag.map(str::to_owned).ok_or("HEAD has no tag".into()),
                GitField::Branch => Ok(self.branch.to_owned()),
            }
        }
    }

    fn render(template: &str, tag: Option<&'static str>, branch: &'static str) -> Rendered {
        TagTemplate::parse(template)
            .unwrap()
            .render("1.4.2", &Checkout { tag, branch })
    }

    fn tag(s: &str) -> Rendered {
        Rendered::Tag(Tag::parse(s).unwrap())
    }

    #[test]
    fn fields_are_filled_in_around_literal_text() {
        assert_eq!(render("latest", None, "main"), tag("latest"));
        assert_eq!(render("{version}", None, "main"), tag("1.4.2"));
        assert_eq!(render("sha-{git.short}", None, "main"), tag("sha-0123456"));
        assert_eq!(
            render("{git.commit}", None, "main"),
            tag("0123456789abcdef0123456789abcdef01234567")
        );
        assert_eq!(render("{git.tag}", Some("v1.4.2"), "main"), tag("v1.4.2"));
        assert_eq!(
            render("{git.branch}-{version}", None, "feature/Login_page"),
            tag("feature-Login_page-1.4.2")
        );
    }

    #[test]
    fn a_missing_value_skips_and_a_bad_one_is_invalid() {
        assert_eq!(
            render("{git.tag}", None, "main"),
            Rendered::Skipped("HEAD has no tag".into())
        );
        assert_eq!(
            render("{git.tag}", Some("release/1.0"), "main"),
            Rendered::Invalid("release/1.0".into())
        );
        assert_eq!(
            render("{git.branch}", None, "///"),
            Rendered::Skipped("the branch `///` has nothing a tag can hold".into())
        );
        let t = TagTemplate::parse("{version}").unwrap();
        assert_eq!(
            t.render("1.0.0+build.5", &NoGit),
            Rendered::Invalid("1.0.0+build.5".into())
        );
        assert!(matches!(
            TagTemplate::parse("sha-{git.short}")
                .unwrap()
                .render("1", &NoGit),
            Rendered::Skipped(_)
        ));
    }

    #[test]
    fn branches_become_valid_tags() {
        assert_eq!(sanitise("main").as_deref(), Some("main"));
        assert_eq!(sanitise("feat/a b").as_deref(), Some("feat-a-b"));
        assert_eq!(sanitise("-x").as_deref(), Some("x"));
        assert_eq!(sanitise(".hidden/é").as_deref(), Some("hidden-"));
        assert_eq!(sanitise("/"), None);
        let long: &'static str = Box::leak("b".repeat(300).into_boxed_str());
        match render("{git.branch}", None, long) {
            Rendered::Tag(t) => assert_eq!(t.as_str().len(), 128),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn templates_are_checked_as_written() {
        assert_eq!(
            TagTemplate::parse("{git.sha}"),
            Err(TemplateError::UnknownField("git.sha".into()))
        );
        assert_eq!(
            TagTemplate::parse("v{version"),
            Err(TemplateError::Unclosed)
        );
        assert_eq!(
            TagTemplate::parse("a/{version}"),
            Err(TemplateError::Character('/'))
        );
        assert_eq!(
            TagTemplate::parse("-{version}"),
            Err(TemplateError::Start('-'))
        );
        assert_eq!(TagTemplate::parse(""), Err(TemplateError::Empty));
        assert_eq!(
            TagTemplate::parse("x{git.tag}").unwrap().as_str(),
            "x{git.tag}"
        );
    }
}
