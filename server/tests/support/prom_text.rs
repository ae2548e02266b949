//! A strict reader of the Prometheus text exposition format (version 0.0.4), for tests.
//!
//! It accepts only what the format allows (<https://prometheus.io/docs/instrumenting/exposition_formats/>)
//! and says why it refuses anything else:
//! - every line ends with `\n`; `# HELP name text` and `# TYPE name type` at most once per
//!   name, the `TYPE` before the family's first sample; other `#` lines are comments;
//! - a sample is `name{label="value",...} value [timestamp]`: names match
//!   `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*` (not `__`-prefixed),
//!   values escape only `\\`, `\"` and `\n`, the value is a float (or `NaN`, `+Inf`,
//!   `-Inf`) and the timestamp an integer;
//! - a family's samples are contiguous and no two have the same name and labels;
//! - a histogram's series have `_bucket` lines with increasing `le` bounds and
//!   non-decreasing counts up to `le="+Inf"`, which equals its `_count`, and a `_sum`.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The lines that share a `# TYPE` (or, untyped, a name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Family {
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

const KINDS: [&str; 5] = ["counter", "gauge", "histogram", "summary", "untyped"];

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    !s.starts_with("__")
        && c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
        _ => Err(format!("bad value {s:?}")),
    }
}

/// `{a="x",b="y"}` at the start of `s`: the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = &s[1..];
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("a label without `=`")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name} has an unquoted value"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name}'s value is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape in label {name}: {other:?}")),
                },
                Some((_, '\n')) => return Err(format!("raw newline in label {name}")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected `,` or `}}` after label {name}"));
        }
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end..])?
    } else {
        (BTreeMap::new(), &line[name_end..])
    };
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected a space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("bad timestamp {ts:?}: {e}"))?;
    }
    if parts.next().is_some() {
        return Err("extra fields after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The family a sample of `name` belongs to, given the declared types.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for (suffixes, kinds) in [
        (&["_bucket", "_sum", "_count"][..], &["histogram"][..]),
        (&["_sum", "_count"][..], &["summary"][..]),
    ] {
        for s in suffixes {
            if let Some(base) = name.strip_suffix(s) {
                if types.get(base).is_some_and(|k| kinds.contains(&k.as_str())) {
                    return base.to_owned();
                }
            }
        }
    }
    name.to_owned()
}

/// One histogram series: its `(le, count)` buckets, its `_count`, whether it has a `_sum`.
type Series = (Vec<(f64, f64)>, Option<f64>, bool);

fn check_histogram(name: &str, f: &Family) -> Result<(), String> {
    // Series: the labels without `le`.
    let mut series: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    for s in &f.samples {
        let mut key: BTreeMap<String, String> = s.labels.clone();
        let le = key.remove("le");
        let e = series
            .entry(key.into_iter().collect())
            .or_insert((Vec::new(), None, false));
        match s.name.strip_prefix(name) {
            Some("_bucket") => {
                let le = le.ok_or_else(|| format!("{name}_bucket without `le`"))?;
                e.0.push((parse_value(&le)?, s.value));
            }
            Some("_count") => e.1 = Some(s.value),
            Some("_sum") => e.2 = true,
            _ => return Err(format!("{} in histogram {name}", s.name)),
        }
    }
    for (labels, (buckets, count, sum)) in series {
        let last = buckets
            .last()
            .ok_or_else(|| format!("{name}{labels:?} has no buckets"))?;
        if last.0 != f64::INFINITY {
            return Err(format!("{name}{labels:?} has no le=\"+Inf\" bucket"));
        }
        for w in buckets.windows(2) {
            if w[0].0 >= w[1].0 || w[0].1 > w[1].1 {
                return Err(format!("{name}{labels:?}: buckets out of order: {w:?}"));
            }
        }
        if count != Some(last.1) || !sum {
            return Err(format!(
                "{name}{labels:?}: _count {count:?} and _sum present={sum} for +Inf={}",
                last.1
            ));
        }
    }
    Ok(())
}

/// Parse `text`, or say which line breaks which rule.
pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut closed = BTreeSet::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut w = c.trim_start_matches(' ').splitn(3, ' ');
            match (w.next(), w.next(), w.next()) {
                (Some("HELP"), Some(name), help) => {
                    if !is_metric_name(name) {
                        return Err(at(format!("bad metric name {name:?}")));
                    }
                    if helps
                        .insert(name.to_owned(), help.unwrap_or("").to_owned())
                        .is_some()
                    {
                        return Err(at(format!("a second HELP for {name}")));
                    }
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !is_metric_name(name) || !KINDS.contains(&kind) {
                        return Err(at("bad TYPE line".into()));
                    }
                    if families.contains_key(name) {
                        return Err(at(format!("TYPE for {name} after its samples")));
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(at(format!("a second TYPE for {name}")));
                    }
                }
                _ => {} // a comment
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let fam = family_of(&sample.name, &types);
        if current.as_deref() != Some(&fam) {
            if closed.contains(&fam) {
                return Err(at(format!("samples of {fam} are not together")));
            }
            if let Some(prev) = current.replace(fam.clone()) {
                closed.insert(prev);
            }
        }
        if !seen.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at("the same series twice".into()));
        }
        families
            .entry(fam.clone())
            .or_insert_with(|| Family {
                kind: types.get(&fam).cloned().unwrap_or_else(|| "untyped".into()),
                ..Family::default()
            })
            .samples
            .push(sample);
    }
    for (name, f) in &mut families {
        f.help = helps.get(name).cloned();
        if f.kind == "histogram" {
            check_histogram(name, f)?;
        }
        if f.kind == "counter" && f.samples.iter().any(|s| s.value < 0.0 || s.value.is_nan()) {
            return Err(format!("counter {name} has a negative or NaN sample"));
        }
    }
    Ok(families)
}
