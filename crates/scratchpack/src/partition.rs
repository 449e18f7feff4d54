//! Partitioned runs: `--partition hash:I/N` or `count:I/N` (cargo-nextest's
//! syntax) picks a stable, disjoint share of the images, so N runners
//! together build or test each image exactly once. `hash` places an image by
//! a hash of its name alone, so adding an image moves no other; `count`
//! deals the images, sorted by name, round-robin, for shares of even size.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::manifest::ImagePlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Hash,
    Count,
}

/// Share `index` (1-based) of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub kind: Kind,
    pub index: u64,
    pub total: u64,
}

impl FromStr for Partition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected `hash:I/N` or `count:I/N`, with 1 <= I <= N";
        let (kind, share) = s.split_once(':').ok_or_else(|| format!("`{s}`: {usage}"))?;
        let kind = match kind {
            "hash" => Kind::Hash,
            "count" => Kind::Count,
            other => return Err(format!("unknown partition kind `{other}`: {usage}")),
        };
        let (i, n) = share
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: {usage}"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("`{v}` in `{s}` is not a number: {usage}"))
        };
        let (index, total) = (number(i)?, number(n)?);
        if index == 0 || total == 0 || index > total {
            return Err(format!("`{s}`: {usage}"));
        }
        Ok(Partition { kind, index, total })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Hash => "hash",
            Kind::Count => "count",
        };
        write!(f, "{kind}:{}/{}", self.index, self.total)
    }
}

/// The share (1-based) an image name falls in under `hash:_/total`: the
/// first eight bytes of the name's sha256, so every machine agrees.
pub fn hash_share(name: &str, total: u64) -> u64 {
    let h = Sha256::digest(name.as_bytes());
    let first = u64::from_be_bytes(h[..8].try_into().expect("eight bytes"));
    first % total + 1
}

impl Partition {
    /// This share of `images`, in their given order.
    pub fn select<'p>(&self, images: &[&'p ImagePlan]) -> Vec<&'p ImagePlan> {
        let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
        let mine = self.names(&names);
        images
            .iter()
            .filter(|i| mine.contains(&i.name.as_str()))
            .copied()
            .collect()
    }

    /// This share of `names`.
    pub fn names<'n>(&self, names: &[&'n str]) -> Vec<&'n str> {
        match self.kind {
            Kind::Hash => names
                .iter()
                .filter(|n| hash_share(n, self.total) == self.index)
                .copied()
                .collect(),
            Kind::Count => {
                let mut sorted = names.to_vec();
                sorted.sort_unstable();
                sorted.dedup();
                let mine: Vec<&str> = sorted
                    .iter()
                    .enumerate()
                    .filter(|(pos, _)| *pos as u64 % self.total + 1 == self.index)
                    .map(|(_, n)| *n)
                    .collect();
                names.iter().filter(|n| mine.contains(n)).copied().collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("image-{i:02}")).collect()
    }

    #[test]
    fn parses_nextests_syntax() {
        let p: Partition = "hash:2/3".parse().unwrap();
        assert_eq!((p.kind, p.index, p.total), (Kind::Hash, 2, 3));
        assert_eq!(p.to_string(), "hash:2/3");
        assert_eq!("count:1/1".parse::<Partition>().unwrap().kind, Kind::Count);
        for bad in [
            "hash:0/3",
            "hash:4/3",
            "hash:1/0",
            "hash:1",
            "1/3",
            "slice:1/3",
            "hash:a/3",
            "hash:-1/3",
        ] {
            let e = bad.parse::<Partition>().unwrap_err();
            assert!(e.contains("hash:I/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn shares_are_disjoint_and_cover_everything() {
        let all = names(40);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        for kind in ["hash", "count"] {
            for total in 1..=5 {
                let mut seen: Vec<&str> = Vec::new();
                for index in 1..=total {
                    let p: Partition = format!("{kind}:{index}/{total}").parse().unwrap();
                    seen.extend(p.names(&refs));
                }
                seen.sort_unstable();
                assert_eq!(seen, refs, "{kind} over {total}: each image exactly once");
            }
        }
    }

    #[test]
    fn count_shares_are_even_and_hash_shares_do_not_move() {
        let all = names(40);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        for index in 1..=3 {
            let p: Partition = format!("count:{index}/3").parse().unwrap();
            let n = p.names(&refs).len();
            assert!(n == 13 || n == 14, "{n}");
        }
        // Adding an image moves no other under `hash`, whatever the order.
        let p: Partition = "hash:1/3".parse().unwrap();
        let before = p.names(&refs);
        let mut more = refs.clone();
        more.insert(0, "zz-new");
        let after: Vec<&str> = p
            .names(&more)
            .into_iter()
            .filter(|n| *n != "zz-new")
            .collect();
        assert_eq!(before, after);
        // Stable across machines and releases: pinned for one name (the
        // first eight bytes of sha256("hello"), big-endian, modulo N, plus 1).
        assert_eq!(hash_share("hello", 3), 2);
        assert_eq!(hash_share("hello", 7), 1);
        let shares: std::collections::BTreeSet<u64> =
            refs.iter().map(|n| hash_share(n, 3)).collect();
        assert_eq!(shares.len(), 3, "40 names reach every share");
    }
}
