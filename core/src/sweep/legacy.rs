//! Names of an earlier server's leftover directories that the sweep may consider.

use std::fmt;

/// The fixed shape of what follows a [`LegacyPattern`]'s prefix.
///
/// A closed set of shapes rather than arbitrary regular expressions: each is long and
/// random enough that another program's names do not take it by accident, and each
/// can be reviewed at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LegacyShape {
    /// A UUID in its canonical text form: exactly 36 characters, hex digits (either
    /// case) in groups of 8, 4, 4, 4 and 12 separated by `-`, for example
    /// `550e8400-e29b-41d4-a716-446655440000`. No braces, no `urn:uuid:`.
    Uuid,
}

impl LegacyShape {
    /// Whether `s` is exactly of this shape.
    pub fn matches(self, s: &str) -> bool {
        match self {
            LegacyShape::Uuid => {
                let b = s.as_bytes();
                b.len() == 36
                    && b.iter().enumerate().all(|(i, c)| match i {
                        8 | 13 | 18 | 23 => *c == b'-',
                        _ => c.is_ascii_hexdigit(),
                    })
            }
        }
    }
}

impl fmt::Display for LegacyShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LegacyShape::Uuid => f.write_str("<uuid>"),
        }
    }
}

/// The names of an earlier server's directories that the startup sweep may remove
/// (see [`PoolConfig::legacy`](crate::PoolConfig::legacy)): a literal prefix followed by
/// exactly one [`LegacyShape`] and nothing else.
///
/// A name that matches is only a candidate: the directory must also look like a Chrome
/// profile and be older than [`PoolConfig::legacy_min_age`](crate::PoolConfig::legacy_min_age)
/// (see [`crate::sweep`]). The prefix obeys the same rules as the pool's own prefix
/// ([`PoolConfig::validate`](crate::PoolConfig::validate)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LegacyPattern {
    /// The literal prefix, e.g. `"chromelambda-"`.
    pub prefix: String,
    /// What follows it.
    pub shape: LegacyShape,
}

impl LegacyPattern {
    /// `prefix` followed by a UUID: the incident's `chromelambda-<uuid>` is
    /// `LegacyPattern::uuid("chromelambda-")`.
    pub fn uuid(prefix: impl Into<String>) -> Self {
        LegacyPattern {
            prefix: prefix.into(),
            shape: LegacyShape::Uuid,
        }
    }

    /// Whether `name` is exactly this pattern.
    pub fn matches(&self, name: &str) -> bool {
        name.strip_prefix(self.prefix.as_str())
            .is_some_and(|rest| self.shape.matches(rest))
    }
}

impl fmt::Display for LegacyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.prefix, self.shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_pattern_matches_exactly_the_canonical_form() {
        let p = LegacyPattern::uuid("chromelambda-");
        assert_eq!(p.to_string(), "chromelambda-<uuid>");
        for ok in [
            "chromelambda-550e8400-e29b-41d4-a716-446655440000",
            "chromelambda-550E8400-E29B-41D4-A716-446655440000",
            "chromelambda-00000000-0000-0000-0000-000000000000",
        ] {
            assert!(p.matches(ok), "{ok}");
        }
        for bad in [
            "chromelambda-",
            "chromelambda-550e8400-e29b-41d4-a716-44665544000",
            "chromelambda-550e8400-e29b-41d4-a716-4466554400000",
            "chromelambda-550e8400e29b-41d4-a716-446655440000-",
            "chromelambda-550e8400-e29b-41d4-a716-44665544000g",
            "chromelambda-{550e8400-e29b-41d4-a716-446655440000}",
            "chromelambda-550e8400-e29b-41d4-a716-446655440000.lock",
            "chromelambda-550e8400-e29b-41d4-a716-446655440000/x",
            "Chromelambda-550e8400-e29b-41d4-a716-446655440000",
            "tmp550e8400-e29b-41d4-a716-446655440000",
            "chromelambda-0123456789ab-1",
            // A multi-byte character where a hex digit should be, same byte length.
            "chromelambda-550e8400-e29b-41d4-a716-4466554400é",
        ] {
            assert!(!p.matches(bad), "{bad}");
        }
    }
}
