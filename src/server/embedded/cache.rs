//! The cache of fetched binaries: one directory per artifact and version,
//! `<cache>/<artifact>-<version>/{bin,lib,share}`, in `PGFRESH_CACHE_DIR` (by default
//! `pgfresh` in the platform's cache directory, or `/var/cache/pgfresh` for root).
//!
//! - **Private to its user.** pgfresh creates the cache directory with mode `0700` (`0755`
//!   for root, whose servers run as `postgres` and must reach the binaries), and uses an
//!   existing one only when it is a real directory owned by this user that nobody else may
//!   write to. As root, the server's user must be able to enter every directory on the way.
//! - **Whole or absent.** A version is unpacked into a `.partial-*` directory inside the cache
//!   and renamed into place once complete, so a crash or a concurrent process never sees half
//!   a tree.
//! - **Fetched once.** Fetching happens under an exclusive lock on `<cache>/.lock`; a process
//!   that waited for it looks again before fetching, and finds what the other one unpacked.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::maven::{newest_of, numbers};
use crate::config::{Config, PgVersion};
use crate::error::{Error, Result};
use crate::os::euid;
use crate::server::private::{self, Owner};

/// What to do when the cache cannot be used.
const CACHE_REMEDY: &str =
    "Set PGFRESH_CACHE_DIR to a directory of your own that nobody else may write to";

pub(super) struct Cache {
    root: PathBuf,
}

/// Where the cache is when `PGFRESH_CACHE_DIR` is unset.
fn default_root() -> Option<PathBuf> {
    if euid() == 0 && cfg!(target_os = "linux") {
        // Root's home is private (0700): the `postgres` user could not run binaries there.
        return Some(PathBuf::from("/var/cache/pgfresh"));
    }
    dirs::cache_dir().map(|dir| dir.join("pgfresh"))
}

impl Cache {
    /// The cache directory, created when missing and checked as the module docs say.
    /// `server_user` is the user the server runs as when it is not this process's.
    pub fn open(config: &Config, server_user: Option<(u32, u32)>) -> Result<Self> {
        let root = match config.cache_dir.clone().or_else(default_root) {
            Some(root) => root,
            None => {
                return Err(Error::embedded(
                    "this platform names no cache directory",
                    "Set PGFRESH_CACHE_DIR to a directory of your own",
                    None,
                ));
            }
        };
        let failed = |what: &str, e: std::io::Error| {
            Error::embedded(
                format!("{what} {}: {e}", root.display()),
                CACHE_REMEDY,
                Some(e),
            )
        };
        if let Some(parent) = root.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed("cannot create", e))?;
        }
        let mode = if server_user.is_some() { 0o755 } else { 0o700 };
        match DirBuilder::new().mode(mode).create(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(failed("cannot create the cache directory", e)),
        }
        let meta = std::fs::symlink_metadata(&root).map_err(|e| failed("cannot read", e))?;
        let wrong = if !meta.is_dir() {
            Some("is not a directory (a symbolic link is not followed)".to_owned())
        } else if meta.uid() != euid() {
            Some(format!(
                "belongs to uid {}, not to this user ({})",
                meta.uid(),
                euid()
            ))
        } else if meta.mode() & 0o022 != 0 {
            Some(format!(
                "may be written by others (mode {:04o})",
                meta.mode() & 0o7777
            ))
        } else {
            None
        };
        if let Some(wrong) = wrong {
            return Err(Error::embedded(
                format!("the cache directory {} {wrong}", root.display()),
                CACHE_REMEDY,
                None,
            ));
        }
        if let Some(blocked) = private::blocker(&root, Owner::of(server_user))? {
            return Err(Error::embedded(
                format!("cache directory {}: {}", root.display(), blocked.reason),
                format!(
                    "Let it in (`chmod o+x {}`), or set PGFRESH_CACHE_DIR to a directory it can \
                     enter (as root the default is /var/cache/pgfresh)",
                    blocked.dir.display()
                ),
                None,
            ));
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The unpacked version of `artifact` that `wanted` asks for, and its directory: for a
    /// major, the newest of that major in the cache.
    pub fn find(&self, artifact: &str, wanted: &PgVersion) -> Option<(String, PathBuf)> {
        let prefix = format!("{artifact}-");
        let cached: Vec<String> = std::fs::read_dir(&self.root)
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let version = name.strip_prefix(&prefix)?;
                numbers(version)?;
                Some(version.to_owned())
            })
            .collect();
        let version = match wanted {
            PgVersion::Exact(v) => cached.iter().find(|c| *c == v)?,
            PgVersion::Major(major) => newest_of(*major, &cached)?,
        };
        Some((
            version.clone(),
            self.root.join(format!("{prefix}{version}")),
        ))
    }

    /// Waits for the cache's lock; held until the file is dropped.
    pub fn lock(&self) -> Result<File> {
        let path = self.root.join(".lock");
        let failed = |e: std::io::Error| {
            Error::embedded(
                format!("cannot lock {}: {e}", path.display()),
                CACHE_REMEDY,
                Some(e),
            )
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(failed)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| failed(e.into()))?;
        Ok(file)
    }

    /// A new scratch directory for fetching `name`, removed when dropped. Scratch directories
    /// left by a process that died are removed first (the caller holds the lock, so none is in
    /// use).
    pub fn scratch(&self, name: &str) -> Result<Scratch> {
        for entry in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(".partial-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let path = self
            .root
            .join(format!(".partial-{name}-{}", std::process::id()));
        DirBuilder::new().mode(0o700).create(&path).map_err(|e| {
            Error::embedded(
                format!("cannot create {}: {e}", path.display()),
                CACHE_REMEDY,
                Some(e),
            )
        })?;
        Ok(Scratch(path))
    }

    /// Moves the complete tree `tree` into place as `name`, readable and runnable by every
    /// user (the binaries are no secret; root's server runs as `postgres`) and writable only by
    /// this one.
    pub fn install(&self, tree: &Path, name: &str) -> Result<PathBuf> {
        let target = self.root.join(name);
        let failed = |what: &str, e: std::io::Error| {
            Error::embedded(format!("{what}: {e}"), CACHE_REMEDY, Some(e))
        };
        open_up(tree)
            .map_err(|e| failed(&format!("cannot set the modes in {}", tree.display()), e))?;
        std::fs::rename(tree, &target)
            .map_err(|e| failed(&format!("cannot move the tree to {}", target.display()), e))?;
        Ok(target)
    }
}

/// Directories `0755`; files readable by all, executables runnable by all, nothing writable
/// by others; links left alone.
fn open_up(dir: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() {
            open_up(&entry.path())?;
        } else if meta.is_file() {
            let mode = meta.mode() & 0o777;
            let runnable = if mode & 0o100 != 0 { 0o111 } else { 0 };
            let mode = (mode | 0o444 | runnable) & !0o022;
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// A scratch directory, removed with whatever is left in it when dropped.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
