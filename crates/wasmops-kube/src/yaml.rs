//! YAML for JSON values: keys sorted, strings double-quoted (JSON escapes
//! are YAML escapes, so nothing is read back as a number or a boolean),
//! multi-line strings as literal blocks when that is exact.

use std::fmt::Write as _;

use serde_json::Value;

/// One YAML document per object, each starting with `---`.
pub fn to_yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        node(&mut out, o, 0);
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn plain_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
        && !k.starts_with(['-', '.', '/'])
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        )
        && k.parse::<f64>().is_err()
}

fn key(out: &mut String, k: &str) {
    if plain_key(k) {
        out.push_str(k);
    } else {
        out.push_str(&Value::String(k.to_string()).to_string());
    }
}

/// A literal block (`|`) represents `s` exactly: one final newline, no
/// carriage returns or tabs, no line starting with a space, no trailing
/// spaces.
fn block_ok(s: &str) -> bool {
    s.ends_with('\n')
        && !s.ends_with("\n\n")
        && s.len() > 1
        && !s.contains(['\r', '\t'])
        && s.lines()
            .all(|l| !l.starts_with(' ') && !l.ends_with(' ') && l.chars().all(|c| !c.is_control()))
}

fn scalar(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::String(s) if s.contains('\n') && block_ok(s) => {
            out.push_str("|\n");
            for line in s.lines() {
                if !line.is_empty() {
                    indent(out, level);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        _ => {
            let _ = writeln!(out, "{v}");
        }
    }
}

fn sorted(m: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// Writes `v` as the value of a mapping at `level` (its own lines).
fn node(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in sorted(m) {
                indent(out, level);
                key(out, k);
                out.push(':');
                value_after_key(out, val, level);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                indent(out, level);
                out.push('-');
                item_after_dash(out, item, level);
            }
        }
        _ => {
            indent(out, level);
            scalar(out, v, level + 2);
        }
    }
}

fn value_after_key(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            node(out, v, level + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            node(out, v, level);
        }
        Value::Object(_) => out.push_str(" {}\n"),
        Value::Array(_) => out.push_str(" []\n"),
        _ => {
            out.push(' ');
            scalar(out, v, level + 2);
        }
    }
}

fn item_after_dash(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            // The first key on the dash's line, the others under it.
            let mut first = true;
            for (k, val) in sorted(m) {
                if first {
                    out.push(' ');
                    first = false;
                } else {
                    indent(out, level + 2);
                }
                key(out, k);
                out.push(':');
                value_after_key(out, val, level + 2);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            node(out, v, level + 2);
        }
        Value::Object(_) => out.push_str(" {}\n"),
        Value::Array(_) => out.push_str(" []\n"),
        _ => {
            out.push(' ');
            scalar(out, v, level + 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        let v = json!({
            "b": [1, "two", {"x": "y", "a": []}, [true]],
            "a": {"yes": "no", "n": null, "k.io/name": "v", "e": {}},
            "text": "line one\nline two\n",
            "odd": " leading\n",
        });
        let y = to_yaml(&[v]);
        assert_eq!(
            y,
            "---\n\
             a:\n  e: {}\n  k.io/name: \"v\"\n  \"n\": null\n  \"yes\": \"no\"\n\
             b:\n- 1\n- \"two\"\n- a: []\n  x: \"y\"\n-\n  - true\n\
             odd: \" leading\\n\"\n\
             text: |\n  line one\n  line two\n"
        );
    }
}
