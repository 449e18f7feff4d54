//! What an unpacked image holds, as its layers' tar headers say (the
//! image's own modes, set-id bits included, not the host files'), and how a
//! process inside the image finds a path in it.

use std::collections::{BTreeMap, VecDeque};

use crate::manifest::FileKind;

/// Host mode of every directory the unpacker creates: the unpacking user must
/// be able to add entries, and the sandbox's outside uid (which is not the
/// owner when the caller is root) must be able to traverse it. The image's
/// own mode is kept in the [`Tree`] for structure tests.
pub(super) const HOST_DIR_MODE: u32 = 0o755;

/// What an unpacked path is, as the layer's tar header said: the mode is the
/// image's (set-id bits included), not the host file's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: FileKind,
    pub mode: u32,
    /// The target, for a symlink.
    pub link: Option<String>,
}

/// Every path of an unpacked image (`/`-rooted) and what it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub(super) fn new() -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "/".to_owned(),
            Node {
                kind: FileKind::Dir,
                mode: HOST_DIR_MODE,
                link: None,
            },
        );
        Tree { nodes }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The entry `path` names as a process inside the image finds it, and
    /// its resolved path: symlinks among the parents are followed (a relative
    /// target from its directory, an absolute one from the image's root, and
    /// `..` stops at the root), the last component too when `follow_last`.
    /// At most 40 links are followed, as Linux allows.
    pub fn lookup(&self, path: &str, follow_last: bool) -> Option<(String, &Node)> {
        fn parts(p: &str) -> VecDeque<String> {
            p.split('/')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        }
        let mut pending = parts(path);
        let mut resolved: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop_front() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => resolved.push(part),
            }
            let here = format!("/{}", resolved.join("/"));
            let node = self.nodes.get(&here)?;
            if node.kind == FileKind::Symlink && (follow_last || !pending.is_empty()) {
                links += 1;
                if links > 40 {
                    return None;
                }
                let target = node.link.as_deref()?;
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut next = parts(target);
                next.extend(pending);
                pending = next;
            }
        }
        let here = format!("/{}", resolved.join("/"));
        let node = self.nodes.get(&here)?;
        Some((here, node))
    }

    /// Forgets `path` and everything under it. Descendants sort between
    /// `path/` and `path0` (`0` follows `/`), so only they are visited: a
    /// layer of many files unpacks in time linear in its entries.
    pub(super) fn remove(&mut self, path: &str) {
        self.nodes.remove(path);
        let below: Vec<String> = self
            .nodes
            .range(format!("{path}/")..format!("{path}0"))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below {
            self.nodes.remove(&p);
        }
    }
}
