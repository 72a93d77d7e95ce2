//! Unpacking one of zonky's jars: a zip holding one xz-compressed tar
//! (`postgres-linux-x86_64.txz`) with `bin/`, `lib/` and `share/` inside.
//!
//! Nothing is unpacked before the jar's checksum matched (see [`super`]). The tar crate keeps
//! every entry inside the target directory (no absolute paths, no `..`, no writing through a
//! link it made), and only the jar's one `.txz` is read.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

/// Unpacks the `.txz` inside the jar `jar` into the new directory `tree`.
pub(super) fn jar(jar: &Path, tree: &Path) -> io::Result<()> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut zip = zip::ZipArchive::new(BufReader::new(File::open(jar)?))
        .map_err(|e| invalid(format!("not a jar: {e}")))?;
    let index = (0..zip.len())
        .find(|&i| {
            zip.name_for_index(i)
                .is_some_and(|name| name.is_ok_and(|name| name.ends_with(".txz")))
        })
        .ok_or_else(|| invalid("the jar holds no .txz archive".into()))?;
    let entry = zip
        .by_index(index)
        .map_err(|e| invalid(format!("cannot read the jar's archive: {e}")))?;
    let xz = lzma_rust2::XzReader::new(BufReader::new(entry), false);
    let mut tar = tar::Archive::new(BufReader::new(xz));
    tar.set_preserve_permissions(true);
    tar.set_overwrite(false);
    std::fs::create_dir(tree)?;
    tar.unpack(tree)?;
    for tool in ["initdb", "pg_ctl", "postgres"] {
        if !tree.join("bin").join(tool).is_file() {
            return Err(invalid(format!("the archive has no bin/{tool}")));
        }
    }
    Ok(())
}
