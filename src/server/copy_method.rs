//! How the server copies a template's files into a clone: PostgreSQL 18's
//! `file_copy_method = clone` where the data directory's file system shares blocks between
//! copies (reflinks), else the server's own copy.
//!
//! `CREATE DATABASE … STRATEGY FILE_COPY` copies every file of the template. With `clone`, the
//! server asks the kernel to copy (`copy_file_range` on Linux and FreeBSD, `copyfile` on
//! macOS): on XFS, btrfs, bcachefs, ZFS 2.2 or APFS the clone then shares the template's
//! blocks, and a 1 GB template clones in about the time of an empty one, using no room. On
//! other file systems the kernel copies the bytes itself, so `clone` is never wrong there, but
//! nothing is gained either: pgfresh keeps the server's default where it cannot see reflinks.
//!
//! The file system is read where pgfresh can see the data directory: the local and embedded
//! sources' cluster, or a `DB_URL` server on this machine (a loopback or Unix-socket address)
//! whose role may read `data_directory`. A server elsewhere, or in a container, keeps `copy`.
//! The setting is per session (its context is `user`), so pgfresh sets it on its own
//! connections only.

use std::fmt;
use std::path::Path;

/// The `file_copy_method` pgfresh's connections use for clones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CopyMethod {
    /// The server's default: it reads and writes every byte (and PostgreSQL before 18).
    Copy,
    /// `file_copy_method = clone` on PostgreSQL 18+, the data directory on this file system.
    Clone {
        /// The file system's name, for the log line.
        file_system: &'static str,
    },
}

impl CopyMethod {
    /// The method for a server of `version` (`server_version_num`) whose data directory is
    /// `data_dir`, when pgfresh can see it.
    pub(crate) fn choose(version: u32, data_dir: Option<&Path>) -> Self {
        match data_dir.and_then(reflink_file_system) {
            Some(file_system) if version >= 180_000 => Self::Clone { file_system },
            _ => Self::Copy,
        }
    }

    /// The statement that makes a session use it, if the server's default is not it.
    pub(crate) fn statement(self) -> Option<&'static str> {
        match self {
            Self::Copy => None,
            Self::Clone { .. } => Some("SET file_copy_method = clone"),
        }
    }
}

impl fmt::Display for CopyMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Copy => f.write_str("file_copy_method = copy"),
            Self::Clone { file_system } => {
                write!(f, "file_copy_method = clone (the data is on {file_system})")
            }
        }
    }
}

/// The name of the file system holding `path` when it shares blocks between copies.
///
/// Linux: by the file system's magic number (`statfs`). An XFS made without reflinks (before
/// xfsprogs 5.1 made them the default) passes too: there the kernel copies, which costs what
/// the server's copy costs. macOS: APFS, by name. Elsewhere: none.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn reflink_file_system(path: &Path) -> Option<&'static str> {
    // `f_type`'s integer type differs by architecture; the magic numbers fit in 32 bits.
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    let magic = rustix::fs::statfs(path).ok()?.f_type as u32;
    match magic {
        0x5846_5342 => Some("xfs"),
        0x9123_683e => Some("btrfs"),
        0xca45_1a4e => Some("bcachefs"),
        0x2fc1_2fc1 => Some("zfs"),
        _ => None,
    }
}

/// See the Linux version: APFS, read by name.
#[cfg(target_os = "macos")]
pub(crate) fn reflink_file_system(path: &Path) -> Option<&'static str> {
    let stat = rustix::fs::statfs(path).ok()?;
    let name: Vec<u8> = stat
        .f_fstypename
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| c.to_ne_bytes()[0])
        .collect();
    (name == b"apfs").then_some("apfs")
}

/// See the Linux version: none known here.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
pub(crate) fn reflink_file_system(_path: &Path) -> Option<&'static str> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_postgres_18_on_a_reflink_file_system_clones() {
        let shm = Path::new("/dev/shm");
        assert_eq!(CopyMethod::choose(180_004, None), CopyMethod::Copy);
        assert_eq!(CopyMethod::choose(170_006, None), CopyMethod::Copy);
        let xfs = CopyMethod::Clone { file_system: "xfs" };
        assert_eq!(xfs.statement(), Some("SET file_copy_method = clone"));
        assert_eq!(CopyMethod::Copy.statement(), None);
        assert_eq!(
            xfs.to_string(),
            "file_copy_method = clone (the data is on xfs)"
        );
        if shm.is_dir() {
            // tmpfs copies: the default stays.
            assert_eq!(reflink_file_system(shm), None);
            assert_eq!(CopyMethod::choose(180_004, Some(shm)), CopyMethod::Copy);
        }
        assert_eq!(reflink_file_system(Path::new("/no/such/dir")), None);
    }
}
