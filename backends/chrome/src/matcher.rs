//! [`SessionMatcher`]: the one answer to "is this process part of that session?", used
//! by every kill, wait, sweep, count and leftover check of this crate, its tests and its
//! examples.
//!
//! ## What a session's processes look like (Chromium 156, measured)
//!
//! - The browser's main process keeps its argv: NUL-separated elements, one of them
//!   exactly `--user-data-dir=<dir>/profile`.
//! - Every child (zygotes, GPU, network and storage utilities, renderers) rewrites its
//!   title: `/proc/<pid>/cmdline` is then **one** element, the space-joined command line,
//!   in which `--user-data-dir=<dir>/profile` appears as a token (other tokens contain
//!   spaces of their own, such as `--enable-crash-reporter=,built on Debian ...`).
//! - Crashpad handlers keep their argv and carry `--database=<dir>/home/.config/...`;
//!   they leave the browser's process group (`setsid` after a double fork).
//!
//! A check that compares whole elements only sees the main process: one process per
//! browser instead of ten or more. The fixtures in `tests/fixtures/chromium-156/` are
//! the captured command lines the unit tests below run on.
//!
//! ## Why a match is proof
//!
//! Session directory names are unique (`<prefix><pool instance>-<n>`, never reused), and
//! the flag must match in full: `--user-data-dir=/r/bp-1/profile` never matches a
//! session in `/r/bp-10`, and a longer path (`.../profile/x`) is not a match either.

use std::path::{Path, PathBuf};

use crate::launcher::PROFILE_DIR;
use crate::procfs::{self, ProcStat};

/// Decides whether a process belongs to the browser of one session directory, from its
/// `/proc/<pid>/cmdline`. A process belongs to directory `D` when:
///
/// - an argument equals `--user-data-dir=D/profile`, or `--user-data-dir=D` (an older
///   server's layout whose profile is the directory itself, as the startup sweep's
///   legacy directories may be), or
/// - an argument is `--database=<path>` with `<path>` strictly inside `D` (Chromium's
///   crash handler), or
/// - its command line is a rewritten title (a single element containing spaces) in which
///   either of those flags appears as a whole space-delimited token.
///
/// Either flag names a profile that *is* `D` or lies inside it, so a matcher built for
/// `X/profile` also claims the processes of session `X`: build matchers only for session
/// directories (the entries directly under a pool's root), never for their insides.
///
/// `D` is matched as given and, if it differs, as its canonical path (a root reached
/// through a symlink), both computed once at construction.
#[derive(Clone, Debug)]
pub struct SessionMatcher {
    dir: PathBuf,
    spellings: Vec<Spelling>,
}

#[derive(Clone, Debug)]
struct Spelling {
    /// `--user-data-dir=<dir>/profile`
    flag: Vec<u8>,
    /// `--user-data-dir=<dir>` (a legacy profile: the directory itself)
    root_flag: Vec<u8>,
    /// `<dir>/`
    inside: Vec<u8>,
}

impl Spelling {
    fn new(dir: &Path) -> Spelling {
        use std::os::unix::ffi::OsStrExt;
        let mut flag = b"--user-data-dir=".to_vec();
        flag.extend_from_slice(dir.join(PROFILE_DIR).as_os_str().as_bytes());
        let mut root_flag = b"--user-data-dir=".to_vec();
        root_flag.extend_from_slice(dir.as_os_str().as_bytes());
        let mut inside = dir.as_os_str().as_bytes().to_vec();
        if inside.last() != Some(&b'/') {
            inside.push(b'/');
        }
        Spelling {
            flag,
            root_flag,
            inside,
        }
    }

    fn proof(&self, args: &[&[u8]]) -> Option<String> {
        let lossy = |a: &[u8]| String::from_utf8_lossy(a).into_owned();
        for a in args {
            if *a == self.flag.as_slice() || *a == self.root_flag.as_slice() {
                return Some(lossy(a));
            }
            if let Some(p) = a.strip_prefix(b"--database=".as_slice()) {
                if p.len() > self.inside.len() && p.starts_with(&self.inside) {
                    return Some(lossy(a));
                }
            }
        }
        if let [title] = args {
            if title.contains(&b' ') {
                for flag in [&self.flag, &self.root_flag] {
                    if has_token(title, flag) {
                        return Some(format!("{} (in a rewritten title)", lossy(flag)));
                    }
                }
            }
        }
        None
    }
}

/// Whether `token` occurs in `text` delimited by the start or a space on its left and the
/// end or a space on its right.
fn has_token(text: &[u8], token: &[u8]) -> bool {
    if token.is_empty() || token.len() > text.len() {
        return false;
    }
    (0..=text.len() - token.len()).any(|i| {
        text[i..].starts_with(token)
            && (i == 0 || text[i - 1] == b' ')
            && text.get(i + token.len()).is_none_or(|&b| b == b' ')
    })
}

impl SessionMatcher {
    /// The matcher for session directory `dir` (the directory that holds `profile/`).
    pub fn new(dir: &Path) -> SessionMatcher {
        let mut spellings = vec![Spelling::new(dir)];
        if let Ok(canon) = std::fs::canonicalize(dir) {
            if canon != dir {
                spellings.push(Spelling::new(&canon));
            }
        }
        SessionMatcher {
            dir: dir.to_owned(),
            spellings,
        }
    }

    /// The session directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The argument that proves raw `/proc/<pid>/cmdline` bytes belong to this session,
    /// if any (for a rewritten title, the flag followed by "(in a rewritten title)").
    pub fn proof(&self, cmdline: &[u8]) -> Option<String> {
        let args = procfs::parse_cmdline(cmdline);
        self.spellings.iter().find_map(|s| s.proof(&args))
    }

    /// Whether raw `/proc/<pid>/cmdline` bytes belong to this session.
    pub fn matches(&self, cmdline: &[u8]) -> bool {
        self.proof(cmdline).is_some()
    }

    /// The proof for process `pid`, if it is alive (not a zombie) and belongs to this
    /// session. Reads `/proc` now.
    pub fn proof_for(&self, pid: i32) -> Option<String> {
        if !procfs::is_live(pid) {
            return None;
        }
        self.proof(&procfs::cmdline_raw(pid)?)
    }

    /// Live processes of this session, in any process group, with their proof, sorted by
    /// PID. Never includes this process. Scans `/proc` (blocking).
    pub fn live(&self) -> Vec<(ProcStat, String)> {
        self.live_in(&procfs::live_processes())
    }

    /// The processes of this session among a snapshot from
    /// [`procfs::live_processes`], with their proof.
    pub fn live_in(&self, snapshot: &[(ProcStat, Vec<u8>)]) -> Vec<(ProcStat, String)> {
        snapshot
            .iter()
            .filter_map(|(st, cmd)| Some((*st, self.proof(cmd)?)))
            .collect()
    }

    /// SIGKILL every live process of this session, each pinned with a pidfd and
    /// re-checked right before the signal (a PID that changed hands is never signalled).
    /// Returns the PIDs signalled. Does not wait for them to die.
    pub fn kill_all(&self) -> Vec<i32> {
        self.live()
            .into_iter()
            .filter(|(st, _)| crate::tree::kill_if_proven(st.pid, self))
            .map(|(st, _)| st.pid)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/chromium-156");
    /// The session directory the fixtures were captured in.
    const CAPTURED: &str = "/tmp/browserpool-0123456789ab-1";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
    }

    fn nul_joined(args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for a in args {
            v.extend_from_slice(a.as_bytes());
            v.push(0);
        }
        v
    }

    /// Every process type of a captured session: which matched, and how.
    const TYPES: &[(&str, &str)] = &[
        ("browser", "element"),
        ("crashpad", "database"),
        ("crashpad-2", "database"),
        ("zygote", "title"),
        ("zygote-2", "title"),
        ("gpu-process", "title"),
        ("utility-network", "title"),
        ("utility-storage", "title"),
        ("renderer", "title"),
        ("renderer-2", "title"),
        ("renderer-3", "title"),
    ];

    #[test]
    fn finds_every_captured_process_type_of_its_session() {
        let m = SessionMatcher::new(Path::new(CAPTURED));
        for (name, how) in TYPES {
            let raw = fixture(&format!("{name}.cmdline"));
            let proof = m
                .proof(&raw)
                .unwrap_or_else(|| panic!("{name} not matched"));
            match *how {
                "element" => assert_eq!(proof, format!("--user-data-dir={CAPTURED}/profile")),
                "database" => assert!(proof.starts_with("--database="), "{name}: {proof}"),
                _ => assert!(proof.ends_with("(in a rewritten title)"), "{name}: {proof}"),
            }
        }
    }

    #[test]
    fn a_whole_element_comparison_sees_only_the_main_process() {
        // The defect this matcher replaces, shown on the same fixtures: comparing whole
        // NUL-separated elements finds one process of the nine in the browser's group.
        let flag = format!("--user-data-dir={CAPTURED}/profile");
        let whole_element = TYPES
            .iter()
            .filter(|(n, _)| !n.starts_with("crashpad"))
            .filter(|(n, _)| {
                procfs::parse_cmdline(&fixture(&format!("{n}.cmdline"))).contains(&flag.as_bytes())
            })
            .count();
        assert_eq!(whole_element, 1);
    }

    #[test]
    fn never_matches_another_session() {
        for other in [
            "/tmp/browserpool-0123456789ab-10",
            "/tmp/browserpool-0123456789ab-",
            "/tmp/browserpool-0123456789ab",
            "/tmp/browserpool-0123456789ab-1/profil",
            "/tmp/browserpool-0123456789ab-1/profile/Default",
            "/tmp/browserpool-0123456789ab-11",
            "/var/tmp/browserpool-0123456789ab-1",
        ] {
            let m = SessionMatcher::new(Path::new(other));
            for (name, _) in TYPES {
                assert!(
                    !m.matches(&fixture(&format!("{name}.cmdline"))),
                    "{other} matched {name}"
                );
            }
        }
    }

    #[test]
    fn tokens_must_be_whole() {
        let m = SessionMatcher::new(Path::new("/r/bp-1"));
        let title = |t: &str| nul_joined(&[t]);
        assert!(m.matches(&title(
            "chromium --type=renderer --user-data-dir=/r/bp-1/profile"
        )));
        assert!(m.matches(&title("--user-data-dir=/r/bp-1/profile --type=gpu")));
        assert!(!m.matches(&title("chromium --user-data-dir=/r/bp-1/profile/x --a")));
        assert!(!m.matches(&title("chromium --user-data-dir=/r/bp-1/profilex --a")));
        assert!(!m.matches(&title("chromium x--user-data-dir=/r/bp-1/profile --a")));
        assert!(!m.matches(&title("chromium --user-data-dir=/r/bp-10/profile --a")));
        // Without a space it is not a rewritten title, and the element is not the flag.
        assert!(!m.matches(&title("--user-data-dir=/r/bp-1/profile,x")));
        // A token inside one element of a normal argv is not proof.
        assert!(!m.matches(&nul_joined(&[
            "sh",
            "-c",
            "chromium --user-data-dir=/r/bp-1/profile"
        ])));
        assert!(m.matches(&nul_joined(&[
            "chromium",
            "--user-data-dir=/r/bp-1/profile"
        ])));
        assert!(!m.matches(&nul_joined(&[
            "chromium",
            "--user-data-dir=/r/bp-1/profile/"
        ])));
        assert!(!m.matches(&nul_joined(&["sleep", "/r/bp-1/profile"])));
    }

    #[test]
    fn a_legacy_profile_that_is_the_directory_itself_matches_exactly() {
        let m = SessionMatcher::new(Path::new("/r/chromelambda-1"));
        let title = |t: &str| nul_joined(&[t]);
        assert!(m.matches(&nul_joined(&[
            "chrome",
            "--user-data-dir=/r/chromelambda-1"
        ])));
        assert!(m.matches(&title(
            "chrome --type=renderer --user-data-dir=/r/chromelambda-1 --x"
        )));
        for other in [
            "--user-data-dir=/r/chromelambda-1/",
            "--user-data-dir=/r/chromelambda-10",
            "--user-data-dir=/r/chromelambda-",
            "--user-data-dir=/r/chromelambda-1/x",
        ] {
            assert!(!m.matches(&nul_joined(&["chrome", other])), "{other}");
            assert!(
                !m.matches(&title(&format!("chrome {other} --x"))),
                "{other}"
            );
        }
    }

    #[test]
    fn crash_database_must_be_strictly_inside() {
        let m = SessionMatcher::new(Path::new("/r/bp-1"));
        assert!(m.matches(&nul_joined(&[
            "crashpad",
            "--database=/r/bp-1/home/.config/x"
        ])));
        assert!(!m.matches(&nul_joined(&["crashpad", "--database=/r/bp-1/"])));
        assert!(!m.matches(&nul_joined(&["crashpad", "--database=/r/bp-1"])));
        assert!(!m.matches(&nul_joined(&["crashpad", "--database=/r/bp-10/x"])));
    }

    #[test]
    fn a_root_reached_through_a_symlink_matches_both_spellings() {
        let real = tempfile::tempdir().unwrap();
        let link_parent = tempfile::tempdir().unwrap();
        let link = link_parent.path().join("link");
        std::os::unix::fs::symlink(real.path(), &link).unwrap();
        let m = SessionMatcher::new(&link);
        let canon = std::fs::canonicalize(real.path()).unwrap();
        for d in [&link, &canon] {
            let flag = format!("--user-data-dir={}/profile", d.display());
            assert!(m.matches(&nul_joined(&["chromium", &flag])), "{flag}");
        }
    }

    #[test]
    fn this_process_is_never_reported() {
        let me = std::process::id() as i32;
        let m = SessionMatcher::new(Path::new("/nonexistent/bp-1"));
        assert!(m.live().iter().all(|(s, _)| s.pid != me));
    }

    proptest! {
        #[test]
        fn arbitrary_command_lines_never_panic_and_a_match_names_the_session(
            bytes in proptest::collection::vec(any::<u8>(), 0..400)
        ) {
            let m = SessionMatcher::new(Path::new("/r/bp-1"));
            if let Some(p) = m.proof(&bytes) {
                prop_assert!(p.contains("/r/bp-1/"));
            }
        }

        #[test]
        fn a_title_matches_exactly_when_the_flag_is_a_token(
            before in "[a-z=/ -]{0,30}", after in "[a-z=/ -]{0,30}", glue_l in "[ x]", glue_r in "[ x]"
        ) {
            let m = SessionMatcher::new(Path::new("/r/bp-1"));
            let title = format!("chromium {before}{glue_l}--user-data-dir=/r/bp-1/profile{glue_r}{after} end");
            let whole = glue_l == " " && glue_r == " ";
            // Another occurrence in the random parts cannot happen: they lack digits.
            prop_assert_eq!(m.matches(&nul_joined(&[&title])), whole);
        }
    }
}
