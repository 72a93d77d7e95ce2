//! Paths at expansion time: the crate root, the invoking file, and lexical clean-up.

use std::path::{Component, Path, PathBuf};

/// The root of the crate being compiled (`CARGO_MANIFEST_DIR`).
pub(crate) fn manifest_dir() -> Result<PathBuf, String> {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .ok_or_else(|| "CARGO_MANIFEST_DIR is not set: build with cargo".to_owned())
}

/// The folder of the file holding the macro call, absolute; `None` when the compiler cannot
/// tell (a file that is not on disk).
pub(crate) fn calling_file_dir() -> Option<PathBuf> {
    let file = proc_macro::Span::call_site().local_file()?;
    // rustc gets the files of a workspace's members relative to the workspace root, which is
    // its (and so this process's) working directory.
    let file = if file.is_absolute() {
        file
    } else {
        std::env::current_dir().ok()?.join(file)
    };
    Some(normalize(file.parent()?))
}

/// `path` with its `.` and `..` components folded away, without touching the file system.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    out
}

/// `path` relative to the crate root when it lies inside it (for messages), else as it is.
pub(crate) fn for_display(path: &Path) -> String {
    manifest_dir()
        .ok()
        .and_then(|root| path.strip_prefix(normalize(&root)).ok().map(Path::to_owned))
        .unwrap_or_else(|| path.to_owned())
        .to_string_lossy()
        .replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::normalize;

    #[test]
    fn normalize_folds_dots() {
        for (path, expected) in [
            ("/a/b/../c/./d.sql", "/a/c/d.sql"),
            ("a/../../b", "../b"),
            ("./x", "x"),
            ("/..", "/"),
        ] {
            assert_eq!(normalize(Path::new(path)), Path::new(expected), "{path}");
        }
    }
}
