//! The committed corpora of nasty files: every file must have a case.

use std::path::Path;

/// The names of the entries of `dir`, sorted.
///
/// # Panics
///
/// When `dir` cannot be read or holds a name that is not UTF-8 (a test's own corpus).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort_unstable();
    names
}

/// Asserts that `cases` names every entry of `dir` and nothing else: a corpus file without a
/// case would test nothing.
pub fn assert_every_file_has_a_case<'a>(dir: &Path, cases: impl IntoIterator<Item = &'a str>) {
    let mut listed: Vec<&str> = cases.into_iter().collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        file_names(dir),
        "every corpus entry of {} has a case",
        dir.display()
    );
}
