//! README's test command is one command that works on a fresh machine: it
//! installs what the tests need and runs them, and CI runs exactly it.

use std::path::Path;

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The command in the `sh` block right after README's "**Test it:**".
fn readme_test_command() -> String {
    let readme = repo_file("README.md");
    let (_, after) = readme
        .split_once("**Test it:**")
        .expect("README has a \"Test it\" paragraph");
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("```"))
        .map(|(b, _)| b)
        .expect("a sh block follows \"Test it\"");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "the test command is one command: {lines:?}");
    lines[0].trim().to_owned()
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let command = readme_test_command();
    let ci = repo_file(".ci/run");
    let last = ci
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .expect(".ci/run has commands");
    assert_eq!(last, command, ".ci/run ends with README's test command");
    // CI still checks formatting and lints.
    assert!(ci.contains("cargo fmt --all -- --check"));
    assert!(ci.contains("cargo clippy --all-targets -- -D warnings"));
}

#[test]
fn the_test_command_installs_what_the_tests_need() {
    let command = readme_test_command();
    let script = command
        .strip_prefix("./")
        .expect("the test command is a script in the repository");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("script exists")
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{} is executable", path.display());
    }
    let text = repo_file(script);
    // Each prerequisite the suite has on a fresh machine: redis-server for the
    // Redis store tests, smpplib and the npm fixture for the interop tests,
    // and nextest itself.
    for needed in [
        "redis-server",
        "smpplib",
        "npm ci",
        "cargo install cargo-nextest",
        "cargo nextest run --no-fail-fast",
    ] {
        assert!(text.contains(needed), "{script} handles {needed}");
    }
}
