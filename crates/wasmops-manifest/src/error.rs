//! The error type, source positions and the translation of toml's errors
//! into one-line messages with hints.

use std::ops::Range;

/// An error in a manifest (or in a file it refers to), rendered on one line as
/// `{path}:{line}:{col}: {message}; hint: {hint}`.
///
/// `line` and `col` are 1-based; `line == 0` means the error has no position
/// (for example an unreadable file) and renders as `{path}: {message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ManifestError {
    /// The path of the file, as given by the caller.
    pub path: String,
    /// 1-based line, or 0 when the error has no position.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl ManifestError {
    /// An error without a position in the file.
    pub fn without_position(
        path: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        ManifestError {
            path: path.into(),
            line: 0,
            col: 0,
            message: message.into(),
            hint,
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&one_line(&self.path));
        if self.line > 0 {
            out.push_str(&format!(":{}:{}", self.line, self.col.max(1)));
        }
        out.push_str(": ");
        out.push_str(&one_line(&self.message));
        if let Some(hint) = &self.hint {
            out.push_str("; hint: ");
            out.push_str(&one_line(hint));
        }
        out
    }
}

/// Replaces line breaks and other control characters so that the rendered
/// error always stays on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Quotes a user-supplied value for a message: control characters are
/// escaped and very long values are shortened.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    format!("`{out}`")
}

/// The text of a manifest with the path to show in errors.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub display: &'a str,
}

impl Source<'_> {
    /// 1-based (line, column) of a byte offset; the column counts characters.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        position_in(self.text, offset)
    }

    pub fn error(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> ManifestError {
        let (line, col) = self.position(span.start);
        ManifestError {
            path: self.display.to_string(),
            line,
            col,
            message: message.into(),
            hint: Some(hint.into()).filter(|h: &String| !h.is_empty()),
        }
    }
}

/// 1-based (line, column) of a byte offset in `text`; the column counts
/// characters. Offsets past the end point just after the last character.
pub(crate) fn position_in(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for (i, c) in text.char_indices() {
        if i >= offset {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// Translates an error from toml (syntax, unknown key, wrong type, ...) into
/// a one-line error with a hint.
pub(crate) fn from_toml(src: &Source<'_>, err: &toml::de::Error) -> ManifestError {
    let message = err
        .message()
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid TOML")
        .to_string();
    let span = err.span().unwrap_or(0..0);
    let start = span.start.min(src.text.len());
    let (message, hint) = explain(src.text, start, message);
    src.error(start..start, message, hint)
}

/// Splits serde's "expected" lists off the message and turns them into a hint.
fn explain(text: &str, offset: usize, message: String) -> (String, String) {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (name, expected) = split_expected(rest);
        let allowed = backticked(expected);
        let name_plain = name.trim_matches('`');
        let hint = did_you_mean(name_plain, &allowed)
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| {
                if TOP_LEVEL_KEYS.contains(&name_plain) && !allowed.iter().any(|a| a == name_plain) {
                    format!(
                        "`{name_plain}` is a top-level key, but here it belongs to the table above it: move it before the first [table] header"
                    )
                } else if allowed.is_empty() {
                    "remove this key: no keys are allowed here".to_string()
                } else {
                    format!("allowed keys here: {}", list(&allowed))
                }
            });
        return (format!("unknown field {name}"), hint);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (name, expected) = split_expected(rest);
        let allowed = backticked(expected);
        let name_plain = name.trim_matches('`');
        let hint = did_you_mean(name_plain, &allowed)
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| format!("use one of {}", list(&allowed)));
        return (format!("unknown value {name}"), hint);
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        let field = field.trim_matches('`');
        let hint = key_example(field)
            .map(|e| format!("add it, e.g. {e}"))
            .unwrap_or_else(|| format!("add `{field} = ...`"));
        return (message, hint);
    }
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        if message.contains(" as i128") || message.contains(" as u128") {
            let number = backticked(&message).into_iter().next().unwrap_or_default();
            return (
                format!("integer `{number}` is too large"),
                "integers are at most 9223372036854775807".to_string(),
            );
        }
        let message = humanize(&message);
        if message.ends_with("expected a string")
            && let Some(found) = backticked(&message).into_iter().next()
        {
            return (message, format!("quote the value: \"{found}\""));
        }
        // A table expected directly under [variables], [key_value] or
        // [component]: the key is a name chosen by the user.
        let table_example = || {
            if !message.ends_with("expected a table") {
                return None;
            }
            match table_before(text, offset)? {
                "variables" => Some("`name = { default = \"value\" }`"),
                "key_value" => Some("`[key_value.LABEL]` with `backend = \"embedded\"`"),
                "component" => Some("`[component.NAME]` with `source = \"NAME.wasm\"`"),
                _ => None,
            }
        };
        let entry_example = || {
            if message.contains("route path") {
                key_example("route")
            } else if message.contains("directory path") {
                key_example("files")
            } else {
                None
            }
        };
        let hint = table_example()
            .or_else(|| key_before(text, offset).and_then(key_example))
            .or_else(entry_example)
            .map(|e| format!("write it like {e}"))
            .unwrap_or_else(|| "see the manifest reference for the expected type".to_string());
        return (message, hint);
    }
    if message.contains("duplicate key") {
        let key: String = text
            .get(offset..)
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .take(64)
            .collect();
        let message = if message == "duplicate key" && !key.is_empty() {
            format!("duplicate key `{key}`")
        } else {
            message
        };
        return (
            message,
            "a key may appear only once in a table; remove or rename one of them".to_string(),
        );
    }
    if message.contains("recurs") {
        return (
            message,
            "the manifest is nested too deeply; flatten it".to_string(),
        );
    }
    let hint = if message.contains("key") {
        "keys are written `name = value`; quote a key that has other characters than letters, digits, `-` and `_`"
    } else if message.contains("string") || message.contains("quote") {
        "strings are written in double quotes, e.g. name = \"shop\""
    } else if message.contains("table") {
        "tables are written [name] or [parent.child] on their own line"
    } else if message.contains("array") {
        "arrays are written [\"a\", \"b\"]"
    } else {
        "fix the TOML syntax here (keys are written key = value, strings in double quotes)"
    };
    (message, hint.to_string())
}

/// Keys of the top level of a manifest.
const TOP_LEVEL_KEYS: &[&str] = &[
    "manifest_version",
    "app",
    "variables",
    "key_value",
    "component",
];

/// Replaces serde's words for Rust types with TOML's.
fn humanize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("struct Raw") {
        out.push_str(&rest[..i]);
        out.push_str("a table");
        let after = &rest[i + "struct ".len()..];
        let ident = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        rest = &after[ident..];
    }
    out.push_str(rest);
    out.replace("a sequence", "an array")
        .replace("expected a map", "expected a table")
        .replace("expected i64", "expected an integer")
        .replace("expected u32", "expected an integer")
        .replace("floating point", "float")
}

/// The name of the `[table]` header above `offset`, if any.
fn table_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    before.lines().rev().find_map(|line| {
        let line = line.trim();
        let inner = line.strip_prefix('[')?.split(']').next()?;
        Some(inner.trim_matches(['[', ' ']))
    })
}

/// `"`x`, expected one of `a`, `b`"` -> (`` `x` ``, `` one of `a`, `b` ``)
fn split_expected(rest: &str) -> (&str, &str) {
    match rest.split_once(", expected ") {
        Some((name, expected)) => (name, expected),
        None => match rest.split_once(", there are no fields") {
            Some((name, _)) => (name, ""),
            None => (rest, ""),
        },
    }
}

/// The `backticked` words of a string, in order.
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, w)| w.to_string())
        .collect()
}

fn list(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest candidate to `word`, when one is close enough to be a typo.
pub(crate) fn did_you_mean<S: AsRef<str>>(word: &str, candidates: &[S]) -> Option<String> {
    let word_lower = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let c = c.as_ref();
        let d = if c.to_lowercase() == word_lower {
            0
        } else {
            edit_distance(&word_lower, &c.to_lowercase())
        };
        let limit = (c.chars().count().max(word.chars().count()) / 3).max(1);
        let plural = c.strip_suffix('s') == Some(word) || word.strip_suffix('s') == Some(c);
        if (d <= limit || plural) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// Levenshtein distance (bounded input sizes keep this cheap).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(128).collect();
    let b: Vec<char> = b.chars().take(128).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The bare key written before `offset` on its line (`key = <offset>`).
fn key_before(text: &str, offset: usize) -> Option<&str> {
    let before = text.get(..offset)?;
    let line = before.rsplit('\n').next()?;
    let line = line.trim_end().strip_suffix('=')?.trim_end();
    let start = line
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .map_or(0, |i| i + 1);
    let key = &line[start..];
    (!key.is_empty()).then_some(key)
}

/// An example of a key written correctly, for hints.
pub(crate) fn key_example(key: &str) -> Option<&'static str> {
    Some(match key {
        "manifest_version" => "`manifest_version = 1`",
        "name" => "`name = \"shop\"`",
        "version" => "`version = \"0.1.0\"`",
        "description" => "`description = \"what it does\"`",
        "default" => "`default = \"hello\"` (values are strings: quote numbers)",
        "required" => "`required = true`",
        "secret" => "`secret = true`",
        "backend" => "`backend = \"embedded\"` or `backend = \"redis\"`",
        "path" => "`path = \"/hello\"`",
        "durability" => "`durability = \"process\"` or `durability = \"fsync\"`",
        "url" => "`url = \"redis://127.0.0.1:6379\"`",
        "source" => "`source = \"app.wasm\"`",
        "route" => "`route = \"/hello\"` or `route = [\"/\", \"/api/...\"]`",
        "host" => "`host = \"api.example.com\"`",
        "allowed_outbound_hosts" => "`allowed_outbound_hosts = [\"https://api.example.com\"]`",
        "key_value_stores" => "`key_value_stores = [\"default\"]`",
        "variables" => "`variables = [\"greeting\"]`",
        "files" => "`files = [\"static\", { source = \"assets\", destination = \"/assets\" }]`",
        "destination" => "`destination = \"/assets\"`",
        "environment" => "`environment = { LOG_LEVEL = \"debug\" }`",
        "memory" => "`memory = \"64MiB\"`",
        "timeout" => "`timeout = \"10s\"`",
        "concurrency" => "`concurrency = 100`",
        "limits" => "`[component.NAME.limits]` with `memory = \"64MiB\"`",
        "app" => "`[app]` with `name = \"shop\"`",
        "component" => "`[component.NAME]` with `source = \"NAME.wasm\"`",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "ab\ncdé = 1\nx";
        assert_eq!(position_in(text, 0), (1, 1));
        assert_eq!(position_in(text, 1), (1, 2));
        assert_eq!(position_in(text, 3), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(position_in(text, text.find('=').unwrap()), (2, 5));
        assert_eq!(position_in(text, 10_000), (3, 2));
    }

    #[test]
    fn display_is_one_line() {
        let e = ManifestError {
            path: "wasmops.toml".into(),
            line: 3,
            col: 7,
            message: "bad\nthing".into(),
            hint: Some("fix\r\nit".into()),
        };
        assert_eq!(e.to_string(), "wasmops.toml:3:7: bad thing; hint: fix  it");
        let e = ManifestError::without_position("x.toml", "cannot read", None);
        assert_eq!(e.to_string(), "x.toml: cannot read");
    }

    #[test]
    fn suggestions() {
        let keys = ["source", "route", "routes_x", "files"];
        assert_eq!(did_you_mean("rout", &keys).as_deref(), Some("route"));
        assert_eq!(did_you_mean("routes", &keys).as_deref(), Some("route"));
        assert_eq!(did_you_mean("sorce", &keys).as_deref(), Some("source"));
        assert_eq!(did_you_mean("zzzzzz", &keys), None);
        assert_eq!(did_you_mean("FILES", &keys).as_deref(), Some("files"));
    }

    #[test]
    fn key_before_finds_the_key() {
        let text = "[component.a]\nroute = 5\n";
        let off = text.find('5').unwrap();
        assert_eq!(key_before(text, off), Some("route"));
        assert_eq!(key_before(text, 0), None);
    }

    #[test]
    fn rust_type_names_become_toml_words() {
        assert_eq!(
            humanize("invalid type: integer `5`, expected struct RawApp"),
            "invalid type: integer `5`, expected a table"
        );
        assert_eq!(
            humanize("invalid type: string \"x\", expected a sequence"),
            "invalid type: string \"x\", expected an array"
        );
        let text = "[variables]\ngreeting = \"hi\"\n";
        assert_eq!(
            table_before(text, text.find("\"hi").unwrap()),
            Some("variables")
        );
        assert_eq!(table_before("[[a.b]]\nx = 1", 10), Some("a.b"));
    }

    #[test]
    fn quote_escapes_and_shortens() {
        assert_eq!(quote("a\nb"), "`a\\nb`");
        assert!(quote(&"x".repeat(500)).ends_with("…`"));
    }
}
