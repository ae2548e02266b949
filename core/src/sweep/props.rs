//! Property tests over what the sweep reads from disk: entry names under the root, the
//! legacy pattern matcher, and the planner over arbitrary listings and probe results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::backend::{DirEntryInfo, EntryKind, MarkerState, ProfileLayout, ProfileProbe};

const UID: u32 = 1000;
const PREFIXES: &[&str] = &["bpx-", "browserpool-", "chromelambda-", "a.b_"];
const INSTANCES: &[&str] = &[
    "000000000001",
    "00000000dead",
    "0000000a11ce",
    "ffffffffffff",
];
const OWN: &str = "00000000beef";

fn instance() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(INSTANCES).prop_map(str::to_owned),
        Just(OWN.to_owned()),
        "[0-9a-f]{12}",
    ]
}

fn uuid_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        // near misses
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{11,13}",
        "[0-9a-g]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[0-9a-f-]{36}",
    ]
}

/// Names as they may appear under a shared root: ours, markers, legacy-shaped, and
/// anything at all.
fn name(prefix: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        (instance(), any::<u64>()).prop_map(move |(i, n)| format!("{prefix}{i}-{n}")),
        instance().prop_map(move |i| marker_name(prefix, &i)),
        uuid_like().prop_map(move |u| format!("{prefix}{u}")),
        ".*".prop_map(move |s| format!("{prefix}{s}")),
        "[a-z0-9._-]{0,20}".prop_map(move |s| format!("{prefix}{s}")),
        ".*",
        "tmp[a-z0-9_]{8}",
    ]
}

fn kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        4 => Just(EntryKind::Dir),
        2 => Just(EntryKind::File),
        2 => Just(EntryKind::Symlink),
        1 => Just(EntryKind::Other),
    ]
}

fn marker_state() -> impl Strategy<Value = Option<Result<MarkerState, String>>> {
    prop_oneof![
        Just(None),
        Just(Some(Ok(MarkerState::Live))),
        Just(Some(Ok(MarkerState::Dead))),
        Just(Some(Err("EIO".to_owned()))),
    ]
}

fn profile() -> impl Strategy<Value = Option<Result<ProfileProbe, String>>> {
    let layout = prop_oneof![
        Just(None),
        Just(Some(ProfileLayout::Root)),
        Just(Some(ProfileLayout::Subdir))
    ];
    prop_oneof![
        Just(None),
        Just(Some(Err("ELOOP".to_owned()))),
        (0u64..10_000, layout).prop_map(|(secs, layout)| Some(Ok(ProfileProbe {
            age: Duration::from_secs(secs),
            layout
        }))),
    ]
}

#[derive(Debug)]
struct Listing {
    prefix: &'static str,
    legacy: Vec<LegacyPattern>,
    entries: Vec<DirEntryInfo>,
    markers: BTreeMap<String, Result<MarkerState, String>>,
    profiles: BTreeMap<String, Result<ProfileProbe, String>>,
}

fn listing() -> impl Strategy<Value = Listing> {
    proptest::sample::select(PREFIXES).prop_flat_map(|prefix| {
        let entry = (
            name(prefix),
            kind(),
            prop_oneof![4 => Just(UID), 1 => Just(0u32)],
        );
        (
            proptest::collection::vec(entry, 0..40),
            proptest::collection::vec(marker_state(), INSTANCES.len() + 1),
            proptest::collection::vec(profile(), 40),
            any::<bool>(),
            "[0-9a-f]{12}",
        )
            .prop_map(move |(raw, states, probes, with_legacy, extra)| {
                let mut by_name = BTreeMap::new();
                for (n, kind, uid) in raw {
                    by_name.entry(n.clone()).or_insert(DirEntryInfo {
                        path: PathBuf::from("/tmp").join(&n),
                        name: n,
                        kind,
                        uid,
                    });
                }
                let entries: Vec<DirEntryInfo> = by_name.into_values().collect();
                let mut markers = BTreeMap::new();
                let known = INSTANCES.iter().map(|s| s.to_string()).chain([extra]);
                for (i, st) in known.zip(states) {
                    if let Some(st) = st {
                        markers.insert(i, st);
                    }
                }
                let mut profiles = BTreeMap::new();
                for (e, p) in entries.iter().zip(probes) {
                    if let Some(p) = p {
                        profiles.insert(e.name.clone(), p);
                    }
                }
                Listing {
                    prefix,
                    legacy: if with_legacy {
                        vec![LegacyPattern::uuid(prefix)]
                    } else {
                        Vec::new()
                    },
                    entries,
                    markers,
                    profiles,
                }
            })
    })
}

const MIN_AGE: Duration = Duration::from_secs(3600);

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_name_never_panics_and_accepts_only_exact_shapes(
        prefix in proptest::sample::select(PREFIXES),
        n in name("bpx-"),
    ) {
        match parse_name(prefix, &n) {
            ParsedName::Session { instance, id } => {
                let rest = &n[prefix.len()..];
                prop_assert!(n.starts_with(prefix));
                prop_assert!(is_instance(&instance));
                let digits = &rest[INSTANCE_LEN + 1..];
                prop_assert_eq!(&rest[..INSTANCE_LEN], instance.as_str());
                prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(digits.parse::<u64>().ok(), Some(id));
            }
            ParsedName::Marker { instance } => {
                prop_assert_eq!(n, marker_name(prefix, &instance));
                prop_assert!(is_instance(&instance));
            }
            ParsedName::Other => {}
        }
    }

    #[test]
    fn our_own_names_round_trip(
        prefix in proptest::sample::select(PREFIXES),
        value in any::<u64>(),
        id in any::<u64>(),
    ) {
        let i = instance_from(value);
        prop_assert_eq!(
            parse_name(prefix, &session_dir_name(prefix, &i, crate::session::SessionId(id))),
            ParsedName::Session { instance: i.clone(), id }
        );
        prop_assert_eq!(
            parse_name(prefix, &marker_name(prefix, &i)),
            ParsedName::Marker { instance: i }
        );
    }

    #[test]
    fn the_legacy_matcher_takes_exactly_prefix_plus_uuid(
        prefix in proptest::sample::select(PREFIXES),
        s in prop_oneof![uuid_like(), ".*"],
        junk in "[^0-9a-fA-F-]",
        at in 0usize..36,
    ) {
        let p = LegacyPattern::uuid(prefix);
        let n = format!("{prefix}{s}");
        let canonical = s.len() == 36
            && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
        prop_assert_eq!(p.matches(&n), canonical, "{}", n);
        prop_assert!(!p.matches(&s) || s.starts_with(prefix));
        if canonical {
            // One character off anywhere breaks it.
            let mut broken: Vec<char> = s.chars().collect();
            broken[at] = junk.chars().next().unwrap_or('x');
            let broken: String = broken.into_iter().collect();
            let (b1, b2, b3) = (
                format!("{prefix}{broken}"),
                format!("{prefix}{s}x"),
                format!("x{prefix}{s}"),
            );
            prop_assert!(!p.matches(&b1));
            prop_assert!(!p.matches(&b2));
            prop_assert!(!p.matches(&b3));
        }
    }

    #[test]
    fn the_planner_removes_only_what_it_can_prove_is_ours(l in listing()) {
        let input = PlanInput {
            prefix: l.prefix,
            legacy: &l.legacy,
            legacy_min_age: MIN_AGE,
            own_instance: OWN,
            our_uid: UID,
            entries: &l.entries,
            markers: &l.markers,
            profiles: &l.profiles,
        };
        let p = plan(&input);
        // Every entry gets exactly one verdict.
        prop_assert_eq!(p.dirs.len() + p.markers.len() + p.skipped.len(), l.entries.len());
        let unverifiable = |i: &str| {
            l.entries.iter().any(|e| {
                e.name == marker_name(l.prefix, i) && (e.kind != EntryKind::File || e.uid != UID)
            })
        };
        for d in &p.dirs {
            let e = &d.entry;
            prop_assert_eq!(e.kind, EntryKind::Dir, "{:?}", e);
            prop_assert_eq!(e.uid, UID, "{:?}", e);
            match (&d.why, parse_name(l.prefix, &e.name)) {
                (Removal::DeadPool { instance }, ParsedName::Session { instance: i, .. }) => {
                    prop_assert_eq!(instance, &i);
                    prop_assert_ne!(i.as_str(), OWN);
                    prop_assert_eq!(l.markers.get(&i), Some(&Ok(MarkerState::Dead)));
                    prop_assert!(!unverifiable(&i));
                }
                (Removal::Legacy { pattern, age, .. }, ParsedName::Other) => {
                    prop_assert!(l.legacy.contains(pattern) && pattern.matches(&e.name));
                    prop_assert!(*age >= MIN_AGE);
                    let probe = l.profiles.get(&e.name);
                    prop_assert!(
                        matches!(probe, Some(Ok(ProfileProbe { layout: Some(_), .. }))),
                        "{:?}", probe
                    );
                }
                (why, parsed) => prop_assert!(false, "{:?} planned as {:?} but parses as {:?}", e, why, parsed),
            }
        }
        for m in &p.markers {
            prop_assert_eq!(m.kind, EntryKind::File);
            prop_assert_eq!(m.uid, UID);
            let ParsedName::Marker { instance } = parse_name(l.prefix, &m.name) else {
                prop_assert!(false, "{:?} is not a marker", m);
                continue;
            };
            prop_assert_ne!(instance.as_str(), OWN);
            prop_assert_eq!(l.markers.get(&instance), Some(&Ok(MarkerState::Dead)));
        }
        // What the executor probes covers every instance the plan could remove.
        let todo = to_probe(l.prefix, &l.legacy, OWN, UID, &l.entries);
        for d in &p.dirs {
            match &d.why {
                Removal::DeadPool { instance } => prop_assert!(todo.instances.contains(instance)),
                Removal::Legacy { .. } => prop_assert!(todo.legacy.contains(&d.entry)),
            }
        }
    }
}
