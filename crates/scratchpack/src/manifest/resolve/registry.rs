//! The registry keys of `[defaults]`: `registry-limits` over the defaults of
//! [`RegistryLimits`], and the key files of the cache (`cache-sign-key`,
//! `cache-verify-key`), as README's "Pushing" and "Scaling out" describe.

use std::time::Duration;

use super::*;
use crate::manifest::CacheKeyFiles;
use crate::manifest::raw::RawRegistryLimits;
use crate::registry::RegistryLimits;

impl Resolver<'_> {
    /// `[defaults]`' `registry-limits`, key by key over the defaults.
    pub(super) fn registry_limits(&mut self, raw: Option<&S<RawRegistryLimits>>) -> RegistryLimits {
        let mut limits = RegistryLimits::default();
        let Some(raw) = raw.map(S::get_ref) else {
            return limits;
        };
        let mut positive = |v: &Option<S<i64>>| {
            let v = v.as_ref()?;
            match u64::try_from(*v.get_ref()) {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    self.error(
                        Diagnostic::new("invalid registry limit", span_of(v))
                            .label("a limit is at least 1"),
                    );
                    None
                }
            }
        };
        if let Some(s) = positive(&raw.idle_timeout) {
            limits.idle_timeout = Duration::from_secs(s);
        }
        if let Some(s) = positive(&raw.timeout) {
            limits.timeout = Duration::from_secs(s);
        }
        if let Some(n) = positive(&raw.max_documents) {
            limits.walk.documents = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = positive(&raw.max_bytes) {
            limits.walk.bytes = n;
        }
        limits
    }

    /// The cache's key files, from the workspace root; an empty name is
    /// refused where it is written.
    pub(super) fn cache_keys(&mut self, defaults: &RawImage) -> CacheKeyFiles {
        let mut file = |key: &str, v: &Option<S<String>>| {
            let v = v.as_ref()?;
            if v.get_ref().trim().is_empty() {
                self.error(
                    Diagnostic::new(format!("`{key}` is empty"), span_of(v))
                        .label("expected a file")
                        .help("name the key file, relative to the workspace root"),
                );
                return None;
            }
            Some(self.workspace.root.join(v.get_ref()))
        };
        CacheKeyFiles {
            sign: file("cache-sign-key", &defaults.cache_sign_key),
            verify: file("cache-verify-key", &defaults.cache_verify_key),
        }
    }
}
