pub mod build;
pub mod cache;
pub mod ci;
pub mod client;
pub mod completions;
pub mod compose;
pub mod doctor;
pub mod inspect;
pub mod kube;
pub mod new;
pub mod node;
pub mod oci;
pub mod pipeline;
pub mod run;
pub mod serve;
pub mod test;
pub mod up;

#[cfg(test)]
mod tests {
    /// No command imports another: what several share lives outside
    /// `commands/` (`sources.rs`, `progress.rs`, the library crates).
    #[test]
    fn no_command_imports_another() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // A command's own unit tests may use `super::*`.
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                assert!(
                    !line.contains("super::") && !line.contains("crate::commands"),
                    "{}:{}: a command reaches into another: {line}",
                    path.display(),
                    n + 1
                );
            }
            checked += 1;
        }
        assert!(checked >= 15, "{checked}");
    }
}
