//! TOML text → [`RawConfig`], with every schema mistake reported, not only the first.
//!
//! One responsibility: the shape of the file. An unknown key, a value of the wrong type
//! and a missing required key each become one [`ConfigError`] with line, column, the
//! table and field path (`upstream.orders.keepalive`, `route[2].upstream`) and plain
//! words (`expected a whole number, got the string "4096"`); an unknown key gets the
//! nearest known key of its table as a suggestion. Nothing here reads files or checks
//! meaning: [`super::validate`] does that with what this module hands over. A TOML
//! syntax error stops here (past it the parser cannot tell what the file means).
//!
//! How: the text is parsed once into toml's spanned tree; [`RawConfig`] is deserialized
//! from a copy of it through `serde_path_to_error`, which says where the first mistake
//! is. That mistake is recorded, its key taken out of the tree, and deserialization runs
//! again on what is left, so everything else in the file is still checked. Each run
//! removes one key, so the loop ends; after [`MAX_SCHEMA_ERRORS`] it stops (and the
//! meaning is not checked). The keys a table knows are the raw struct's fields,
//! as serde's `deny_unknown_fields` lists them in its error: adding a field to a raw
//! struct needs no change here.

use std::ops::Range;

use serde::Deserialize;
use serde_path_to_error::Segment;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::raw::RawConfig;

/// Least Jaro-Winkler similarity between an unknown key and a known one for the known
/// one to be suggested: 0.8 takes one or two typos (`conect_timeout_ms`,
/// `keepalive_timout`) and refuses unrelated names of a similar shape.
const SUGGEST_MIN_SIMILARITY: f64 = 0.8;

/// Schema errors reported before the check gives up. Each costs one more run over the
/// whole file, so a file made wrong by a tool (a typo repeated in 2,000 upstreams) would
/// otherwise take time quadratic in its size; a person fixes fifty mistakes before
/// needing the fifty-first.
const MAX_SCHEMA_ERRORS: usize = 50;

/// What [`parse`] found.
pub(super) struct Schema {
    /// The file as the raw structs, every key with a schema error taken out; absent
    /// after a TOML syntax error or [`MAX_SCHEMA_ERRORS`] schema errors.
    pub raw: Option<RawConfig>,
    /// Every schema error, in the order found (the caller sorts by line).
    pub errors: Vec<ConfigError>,
    /// Dotted paths already reported: the keys taken out, and each absent key that an
    /// unknown key was taken for a typo of. A later check finding such a key missing
    /// would only repeat what is already said.
    pub reported: Vec<String>,
}

/// One step of a path in the file: a key of a table or an index into an array.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `text` (named `file` in errors) into the raw structs, collecting every
/// schema error on the way.
pub(super) fn parse(text: &str, file: &str) -> Schema {
    let mut out = Schema {
        raw: None,
        errors: Vec::new(),
        reported: Vec::new(),
    };
    let error = |at: Option<usize>, field: String, message: String| ConfigError {
        file: file.to_string(),
        line: at.map(|offset| super::line_col(text, offset)),
        field,
        message,
    };
    let mut tree = match DeTable::parse(text) {
        Ok(tree) => tree,
        Err(e) => {
            let at = e.span().map(|s| s.start);
            out.errors
                .push(error(at, String::new(), e.message().trim().to_string()));
            return out;
        }
    };
    loop {
        if out.errors.len() == MAX_SCHEMA_ERRORS {
            let message = format!(
                "stopped after {MAX_SCHEMA_ERRORS} errors in the file's keys and types: fix these and check again"
            );
            out.errors.push(error(None, String::new(), message));
            return out;
        }
        let mut track = serde_path_to_error::Track::new();
        let de = toml::de::Deserializer::from(tree.clone());
        match RawConfig::deserialize(serde_path_to_error::Deserializer::new(de, &mut track)) {
            Ok(raw) => {
                out.raw = Some(raw);
                return out;
            }
            Err(e) => {
                let path = steps(&track.path());
                let m = describe(tree.get_ref(), &path, e.message().trim());
                let at = m.span.map(|s| s.start).or(e.span().map(|s| s.start));
                out.errors.push(error(at, m.field, m.message));
                if let Some(meant) = m.meant {
                    out.reported.push(meant);
                }
                match remove(tree.get_mut(), &path) {
                    Some(removed) => out.reported.push(removed),
                    // Nothing left to take out (a mistake in the document as a whole):
                    // the errors so far are all that can be said.
                    None => return out,
                }
            }
        }
    }
}

/// The path serde_path_to_error reports, without the steps into toml's `Spanned` and
/// datetime wrappers (they are not in the file).
fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } if key.starts_with("$__") => None,
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// `upstream.orders.keepalive`, `route[2].upstream`; a key that is not a bare TOML key
/// is quoted (`upstream."a.b".servers`).
fn dotted(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Index(i) => s += &format!("[{i}]"),
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s += &key(k);
            }
        }
    }
    s
}

/// `k` as a TOML key in a dotted path: bare when it can be, quoted otherwise.
pub(super) fn key(k: &str) -> std::borrow::Cow<'_, str> {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare {
        k.into()
    } else {
        format!("{k:?}").into()
    }
}

/// A schema error put in words: where it is and what is wrong.
struct Mistake {
    span: Option<Range<usize>>,
    field: String,
    message: String,
    /// For an unknown key taken for a typo of a key the table lacks: that key's path.
    meant: Option<String>,
}

/// Turns serde's message for the mistake at `path` into plain words, using the tree
/// for the place and for what the file holds there.
fn describe(root: &DeTable<'_>, path: &[Step], message: &str) -> Mistake {
    let field = dotted(path);
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let known = known_fields(rest);
        let key = match path.last() {
            Some(Step::Key(k)) => k.as_str(),
            _ => rest.split('`').next().unwrap_or_default(),
        };
        let best = suggest(key, &known);
        let message = match best {
            Some(best) => format!("unknown key; did you mean `{best}`?"),
            None if known.is_empty() => "unknown key: this table takes no keys".to_string(),
            None => format!("unknown key (known keys here: {})", known.join(", ")),
        };
        let meant = best.and_then(|best| {
            let mut sibling = path.to_vec();
            *sibling.last_mut()? = Step::Key(best.to_string());
            find(root, &sibling).is_none().then(|| dotted(&sibling))
        });
        let span = find(root, path).map(|(key_span, _)| key_span);
        return Mistake {
            span,
            field,
            message,
            meant,
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let span = find(root, path).map(|(_, value)| value.span());
        let field = if field.is_empty() {
            name.to_string()
        } else {
            format!("{field}.{name}")
        };
        return Mistake {
            span,
            field,
            message: "required key is missing".to_string(),
            meant: None,
        };
    }
    let found = find(root, path).map(|(_, value)| value);
    let wrong = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    let message = match wrong.and_then(|w| w.rsplit_once(", expected ")) {
        Some((got, expected)) => {
            let got = found.map_or_else(|| got.to_string(), |v| describe_value(v.get_ref()));
            format!("expected {}, got {got}", plain_expected(expected))
        }
        None => message.to_string(),
    };
    Mistake {
        span: found.map(Spanned::span),
        field,
        message,
        meant: None,
    }
}

/// The field names in serde's `unknown field` message: after "expected one of",
/// "expected" (one or two names) or "there are no fields" (none).
fn known_fields(rest: &str) -> Vec<String> {
    let Some((_, list)) = rest.split_once(", expected ") else {
        return Vec::new();
    };
    let list = list.strip_prefix("one of ").unwrap_or(list);
    list.split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|name| name.trim().trim_matches('`').to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The known key most like `key`, if one is like enough.
fn suggest<'k>(key: &str, known: &'k [String]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), k))
        .filter(|(score, _)| *score >= SUGGEST_MIN_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.as_str())
}

/// serde's name for the type a field wants, as a user would say it.
fn plain_expected(expected: &str) -> String {
    let e = expected.trim();
    let words = match e {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64" | "u128"
        | "usize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a sequence" => "an array",
        "a map" => "a table",
        _ if e.starts_with("struct ") => "a table",
        _ => return e.to_string(),
    };
    words.to_string()
}

/// What the file holds, for "got …": `the string "4096"`, `the number 5`, `a table`.
fn describe_value(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("the string {:?}", s.as_ref()),
        DeValue::Integer(i) => format!("the number {}", i.as_str()),
        DeValue::Float(f) => format!("the number {}", f.as_str()),
        DeValue::Boolean(b) => format!("{b}"),
        DeValue::Datetime(d) => format!("the date-time {d}"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// The entry at `path`: the span of its key (of the element, for an array index) and
/// its value. The empty path is not an entry.
fn find<'t, 'i>(
    table: &'t DeTable<'i>,
    path: &[Step],
) -> Option<(Range<usize>, &'t Spanned<DeValue<'i>>)> {
    let (Step::Key(k), mut rest) = path.split_first()? else {
        return None;
    };
    let (key, mut value) = table.get_key_value(k.as_str())?;
    let mut span = key.span();
    while let Some((Step::Index(i), r)) = rest.split_first() {
        let DeValue::Array(items) = value.get_ref() else {
            return None;
        };
        value = items.get(*i)?;
        span = value.span();
        rest = r;
    }
    if rest.is_empty() {
        return Some((span, value));
    }
    let DeValue::Table(t) = value.get_ref() else {
        return None;
    };
    find(t, rest)
}

/// Takes the key at `path` out of the tree, so the next run goes past it; returns its
/// dotted path. A trailing array index is dropped first (a bad element takes its whole
/// array out: removing only the element would renumber the ones after it, and the
/// later checks name elements by number).
fn remove(root: &mut DeTable<'_>, path: &[Step]) -> Option<String> {
    let keep = path.iter().rposition(|s| matches!(s, Step::Key(_)))?;
    let path = &path[..=keep];
    let (Step::Key(key), parents) = path.split_last()? else {
        return None;
    };
    take(root, parents, key)?;
    Some(dotted(path))
}

/// Removes `key` from the table `parents` leads to from `table`.
fn take(table: &mut DeTable<'_>, parents: &[Step], key: &str) -> Option<()> {
    let Some((first, mut rest)) = parents.split_first() else {
        return table.remove(key).map(drop);
    };
    let Step::Key(k) = first else {
        return None;
    };
    let mut value = table.get_mut(k.as_str())?.get_mut();
    while let Some((Step::Index(i), r)) = rest.split_first() {
        let DeValue::Array(items) = value else {
            return None;
        };
        value = items.get_mut(*i)?.get_mut();
        rest = r;
    }
    let DeValue::Table(t) = value else {
        return None;
    };
    take(t, rest, key)
}
