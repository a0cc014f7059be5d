//! The version of this API, and the compatibility rule the registry applies.

use std::fmt;

/// A connector API version: `major.minor`.
///
/// A minor version only adds: new hooks with default bodies, new
/// `#[non_exhaustive]` enum variants, new constructors. A major version may
/// remove or change. A connector built for `a.b` runs on a runtime that
/// implements `a.c` with `c >= b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Breaking changes bump this.
    pub major: u16,
    /// Additions bump this.
    pub minor: u16,
}

impl ApiVersion {
    /// Builds a version.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// Whether a connector built for `self` can run on a runtime that
    /// implements `runtime`: same major, and a minor no newer than the
    /// runtime's.
    pub const fn runs_on(self, runtime: ApiVersion) -> bool {
        self.major == runtime.major && self.minor <= runtime.minor
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!("{}.{}", self.major, self.minor))
    }
}

/// The version of the connector API that this crate defines.
pub const API_VERSION: ApiVersion = ApiVersion::new(2, 3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatibility_rule() {
        let rt = ApiVersion::new(1, 3);
        assert!(ApiVersion::new(1, 0).runs_on(rt));
        assert!(ApiVersion::new(1, 3).runs_on(rt));
        assert!(!ApiVersion::new(1, 4).runs_on(rt));
        assert!(!ApiVersion::new(2, 0).runs_on(rt));
        assert!(!ApiVersion::new(0, 9).runs_on(rt));
        assert_eq!(API_VERSION.to_string(), "2.3");
    }
}
