//! Session directory paths, derived from the id when an action needs one.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::session::SessionId;

/// "00", "01", ..., "99", back to back.
const PAIRS: [u8; 200] = {
    let mut out = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        out[2 * i] = b'0' + (i / 10) as u8;
        out[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    out
};

/// Builds `<root>/<prefix><instance>-<id>` (the name [`crate::sweep`] parses) with one
/// allocation and no formatting machinery. The machine stores no path per session: it
/// builds one for each [`Action::Launch`](super::Action::Launch) and
/// [`Action::RemoveDir`](super::Action::RemoveDir).
#[derive(Debug)]
pub(super) struct SessionDirs {
    /// `<root>/<prefix><instance>-`.
    base: Vec<u8>,
}

impl SessionDirs {
    pub(super) fn new(root: &Path, prefix: &str, instance: &str) -> Self {
        let base = root.join(format!("{prefix}{instance}-")).into_os_string();
        SessionDirs {
            base: base.as_bytes().to_vec(),
        }
    }

    /// The directory of session `id`.
    pub(super) fn dir(&self, id: SessionId) -> PathBuf {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = id.0;
        // Two digits per division.
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            at -= 2;
            digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            let pair = n as usize * 2;
            at -= 2;
            digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        } else {
            at -= 1;
            digits[at] = b'0' + n as u8;
        }
        let mut path = Vec::with_capacity(self.base.len() + digits.len() - at);
        path.extend_from_slice(&self.base);
        path.extend_from_slice(&digits[at..]);
        PathBuf::from(OsString::from_vec(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep;

    #[test]
    fn matches_the_name_the_sweep_parses() {
        for root in ["/tmp", "/tmp/", "/"] {
            let dirs = SessionDirs::new(Path::new(root), "bp-", "00000000000a");
            for id in [
                0,
                1,
                9,
                10,
                17,
                99,
                100,
                101,
                999,
                1_000_000,
                12_345_678,
                u64::MAX,
            ] {
                let want = Path::new(root).join(sweep::session_dir_name(
                    "bp-",
                    "00000000000a",
                    SessionId(id),
                ));
                assert_eq!(dirs.dir(SessionId(id)), want, "root {root}, id {id}");
                let name = want.file_name().map(|n| n.to_string_lossy().into_owned());
                assert_eq!(
                    sweep::parse_name("bp-", &name.unwrap_or_default()),
                    sweep::ParsedName::Session {
                        instance: "00000000000a".into(),
                        id
                    }
                );
            }
        }
    }
}
