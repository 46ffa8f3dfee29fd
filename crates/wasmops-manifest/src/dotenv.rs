//! The `.env` file next to the manifest.
//!
//! Errors never quote a value: a line may hold a secret.

/// One `NAME=value` line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub value: String,
}

/// A malformed line: 1-based line and column, message and hint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: String,
}

/// Parses a dotenv file: `NAME=value` lines, `#` comments, blank lines, an
/// optional `export ` prefix, values optionally in single quotes (literal) or
/// double quotes (with `\n`, `\t`, `\r`, `\"` and `\\` escapes). An unquoted
/// value ends at a ` #` comment and is trimmed.
pub(crate) fn parse(text: &str) -> Result<Vec<Entry>, Problem> {
    let mut entries = Vec::new();
    for (index, raw_line) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
        let content = line.trim_start();
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let (content, indent) = match content.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => {
                let trimmed = rest.trim_start();
                (trimmed, indent + content.len() - trimmed.len())
            }
            _ => (content, indent),
        };
        let col_of = |byte: usize| line[..(indent + byte).min(line.len())].chars().count() + 1;
        let problem = |byte: usize, message: String, hint: &str| Problem {
            line: line_no,
            col: col_of(byte),
            message,
            hint: hint.to_string(),
        };
        let Some(eq) = content.find('=') else {
            return Err(problem(
                0,
                format!("line {line_no} is not of the form NAME=value"),
                "write NAME=value, or start the line with `#` to make it a comment",
            ));
        };
        let key = content[..eq].trim_end();
        let key_ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
        if !key_ok {
            return Err(problem(
                0,
                format!("line {line_no} does not start with a valid name"),
                "names are made of letters, digits and `_`, e.g. API_TOKEN=value",
            ));
        }
        let after_eq = &content[eq + 1..];
        let value_start = eq + 1 + (after_eq.len() - after_eq.trim_start().len());
        let value_text = after_eq.trim_start();
        let (value, rest, rest_start) = match value_text.chars().next() {
            Some(quote @ ('"' | '\'')) => match unquote(&value_text[1..], quote) {
                Some((value, used)) => {
                    let rest_start = value_start + 1 + used;
                    (value, &content[rest_start..], rest_start)
                }
                None => {
                    return Err(problem(
                        value_start,
                        format!("the quoted value of `{key}` is not closed"),
                        "close the quote on the same line (values cannot span lines)",
                    ));
                }
            },
            _ => {
                let mut end = value_text.len();
                let bytes = value_text.as_bytes();
                for i in 1..bytes.len() {
                    if bytes[i] == b'#' && (bytes[i - 1] == b' ' || bytes[i - 1] == b'\t') {
                        end = i;
                        break;
                    }
                }
                (value_text[..end].trim_end().to_string(), "", content.len())
            }
        };
        let trailing = rest.trim_start();
        if !trailing.is_empty() && !trailing.starts_with('#') {
            return Err(problem(
                rest_start + (rest.len() - trailing.len()),
                format!("unexpected text after the quoted value of `{key}`"),
                "put nothing after the closing quote except a `#` comment",
            ));
        }
        entries.push(Entry {
            key: key.to_string(),
            value,
        });
    }
    Ok(entries)
}

/// Reads a quoted value after its opening quote: returns the value and the
/// number of bytes used, closing quote included.
fn unquote(text: &str, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Some((out, i + 1));
        }
        if c == '\\' && quote == '"' {
            let (_, e) = chars.next()?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn parses_the_usual_forms() {
        let text = "# comment\n\
                    \n\
                    A=1\n\
                    export B = two words \n\
                    C=\"quoted # not a comment\" # comment\n\
                    D='single $x \\n'\n\
                    E=\"esc\\n\\\"x\\\"\"\r\n\
                    F=\n\
                    G=value # trailing comment\n\
                    H=a#b\n\
                    \texport\tWASMOPS_VARIABLE_I=i\n\
                    export=notaprefix\n";
        assert_eq!(
            kv(text),
            vec![
                pair("A", "1"),
                pair("B", "two words"),
                pair("C", "quoted # not a comment"),
                pair("D", "single $x \\n"),
                pair("E", "esc\n\"x\""),
                pair("F", ""),
                pair("G", "value"),
                pair("H", "a#b"),
                pair("WASMOPS_VARIABLE_I", "i"),
                pair("export", "notaprefix"),
            ]
        );
    }

    #[test]
    fn problems_name_the_line_not_the_value() {
        let p = parse("A=1\nsupersecretvalue\n").unwrap_err();
        assert_eq!((p.line, p.col), (2, 1));
        assert!(!p.message.contains("supersecret"));

        let p = parse("A=1\n  TOKEN=\"hunter2\n").unwrap_err();
        assert_eq!((p.line, p.col), (2, 9));
        assert!(!p.message.contains("hunter2"));
        assert!(p.message.contains("TOKEN"));

        let p = parse("TOKEN='abc' def\n").unwrap_err();
        assert_eq!((p.line, p.col), (1, 13));
        assert!(!p.message.contains("abc"));

        let p = parse("secret value=1\n").unwrap_err();
        assert!(!p.message.contains("secret"));

        let p = parse("=1\n").unwrap_err();
        assert_eq!(p.line, 1);
    }
}
