//! The human-readable text form of a [`Report`].

use std::fmt::Write as _;

use crate::report::{Metadata, Report};

/// Pads `rows` into aligned columns (the last column is not padded).
pub(crate) fn table(rows: &[Vec<String>], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn metadata_rows(m: &Metadata) -> Vec<Vec<String>> {
    crate::report::METADATA_FIELDS
        .iter()
        .filter_map(|f| m.get(f).map(|v| vec![format!("{f}:"), one_line(v)]))
        .collect()
}

/// Keeps untrusted strings on one line in text output.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn human_size(n: usize) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Report {
    /// A human-readable, table-like report.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let name = self
            .metadata
            .name
            .as_deref()
            .map(one_line)
            .unwrap_or_else(|| "-".to_string());
        let head = vec![
            vec!["kind:".to_string(), self.kind.as_str().to_string()],
            vec!["name:".to_string(), name],
            vec![
                "size:".to_string(),
                format!("{} ({} bytes)", human_size(self.size), self.size),
            ],
            vec!["sha256:".to_string(), self.sha256.clone()],
            vec![
                "valid:".to_string(),
                match &self.validation_error {
                    None => "yes".to_string(),
                    Some(e) => format!("no: {}", one_line(e)),
                },
            ],
        ];
        o.push_str(&table(&head, ""));

        let _ = writeln!(o, "\nimports ({}):", self.imports.len());
        if self.imports.is_empty() {
            o.push_str("  (none)\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .imports
                .iter()
                .map(|i| vec![i.kind.as_str().to_string(), one_line(&i.display_name())])
                .collect();
            o.push_str(&table(&rows, "  "));
        }

        let _ = writeln!(o, "\nexports ({}):", self.exports.len());
        if self.exports.is_empty() {
            o.push_str("  (none)\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .exports
                .iter()
                .map(|e| vec![e.kind.as_str().to_string(), one_line(&e.name)])
                .collect();
            o.push_str(&table(&rows, "  "));
        }

        o.push_str("\ncapabilities:\n");
        if self.capabilities.is_empty() {
            o.push_str("  (none)\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .capabilities
                .iter()
                .map(|c| {
                    vec![
                        c.id.to_string(),
                        c.description.clone(),
                        format!("({})", one_line(&c.interfaces.join(", "))),
                    ]
                })
                .collect();
            o.push_str(&table(&rows, "  "));
        }

        o.push_str("\nproducers:\n");
        if self.producers.is_empty() {
            o.push_str("  (none)\n");
        } else {
            let rows: Vec<Vec<String>> = self
                .producers
                .iter()
                .map(|p| vec![one_line(&p.field), one_line(&p.name), one_line(&p.version)])
                .collect();
            o.push_str(&table(&rows, "  "));
        }

        o.push_str("\nmetadata:\n");
        let top = metadata_rows(&self.metadata);
        if top.is_empty() && self.nested_metadata.is_empty() {
            o.push_str("  (none)\n");
        }
        o.push_str(&table(&top, "  "));
        for m in &self.nested_metadata {
            let _ = writeln!(o, "  in {}:", m.scope);
            o.push_str(&table(&metadata_rows(m), "    "));
        }

        if self.has_dependency_list || !self.dependencies.is_empty() {
            let _ = writeln!(o, "\nrust dependencies ({}):", self.dependencies.len());
            if let Some(e) = &self.dependency_list_error {
                let _ = writeln!(o, "  error: {}", one_line(e));
            }
            let rows: Vec<Vec<String>> = self
                .dependencies
                .iter()
                .map(|d| {
                    vec![
                        one_line(&d.name),
                        one_line(&d.version),
                        one_line(if d.source.is_empty() { "-" } else { &d.source }),
                        match (d.root, d.kind) {
                            (true, _) => "root".to_string(),
                            (false, crate::report::DependencyKind::Build) => "build".to_string(),
                            (false, crate::report::DependencyKind::Runtime) => {
                                "runtime".to_string()
                            }
                        },
                    ]
                })
                .collect();
            o.push_str(&table(&rows, "  "));
        }

        o.push_str("\nsections:\n");
        let mut rows: Vec<Vec<String>> = vec![vec![
            "name".to_string(),
            "count".to_string(),
            "bytes".to_string(),
        ]];
        rows.extend(
            self.section_totals()
                .into_iter()
                .map(|(name, count, bytes)| {
                    vec![one_line(&name), count.to_string(), bytes.to_string()]
                }),
        );
        rows.push(vec![
            "total (file)".to_string(),
            String::new(),
            self.size.to_string(),
        ]);
        o.push_str(&table(&rows, "  "));

        if let Some(wit) = &self.wit {
            o.push_str("\nwit:\n");
            for line in wit.lines() {
                let _ = writeln!(o, "  {line}");
            }
        }

        if !self.notes.is_empty() {
            o.push_str("\nnotes:\n");
            for n in &self.notes {
                let _ = writeln!(o, "  - {}", one_line(n));
            }
        }
        o
    }
}
