//! Private directories and files: what only the server's user may read, and nothing another
//! local user planted.
//!
//! A run directory holds the server's generated superuser password (`state`) and, for the local
//! source, the cluster's data. Anyone who reads the password can log in as that superuser and
//! run programs as the server's OS user (`COPY … TO PROGRAM`), and anyone who controls the
//! directory controls the data. So every run directory is created with `mkdir` mode `0700` for
//! the user that owns the server, every file in it with mode `0600`, and an existing one is used
//! only when it is a real directory (not a symbolic link), owned by that user, with no group or
//! other permission bits; files are opened without following symbolic links and checked the
//! same way. Anything else is refused, never worked around.
//!
//! On Windows (the docker source only) the base is the user's own temporary directory, in
//! their profile, whose access list lets in only them, the system and administrators; what
//! pgfresh creates there inherits it. pgfresh reads no access lists: it refuses symbolic
//! links (reparse points) where it expects a directory or a file, and nothing more.

#[cfg(unix)]
use std::fs::{DirBuilder, Metadata};
use std::fs::{File, OpenOptions};
use std::io;
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
#[cfg(unix)]
use crate::os::euid;

/// Who owns a server's files: this process's user, or (when this process is root) the user
/// the server runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Owner {
    #[cfg(unix)]
    pub uid: u32,
    #[cfg(unix)]
    pub gid: u32,
}

impl Owner {
    /// `server_user` when there is one (the process is root), else this process's user.
    #[cfg(not(unix))]
    pub fn of(_server_user: Option<(u32, u32)>) -> Self {
        Self {}
    }

    /// `server_user` when there is one (the process is root), else this process's user.
    #[cfg(unix)]
    pub fn of(server_user: Option<(u32, u32)>) -> Self {
        match server_user {
            Some((uid, gid)) => Self { uid, gid },
            None => Self {
                uid: euid(),
                gid: crate::os::egid(),
            },
        }
    }

    /// Gives `path` to this owner when it is not this process's user.
    #[cfg(unix)]
    fn give(self, path: &Path) -> io::Result<()> {
        if self.uid == euid() {
            return Ok(());
        }
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
    }
}

/// Creates the directory `path` (mode `0700`, for `owner`) unless it exists, then checks that
/// it can be trusted: see the module docs.
#[cfg(unix)]
pub(super) fn directory(path: &Path, owner: Owner) -> Result<()> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => owner
            .give(path)
            .map_err(|e| failed(path, "cannot give it to the server's user", e))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(failed(path, "cannot create it", e)),
    }
    let meta = std::fs::symlink_metadata(path).map_err(|e| failed(path, "cannot read it", e))?;
    if meta.is_dir() && meta.uid() != owner.uid && meta.uid() == euid() {
        // Made a moment ago by another process of this (root) user, which has not given it to
        // the server's user yet: as trustworthy as one this process made.
        trusted(
            path,
            &meta,
            true,
            Owner {
                uid: meta.uid(),
                ..owner
            },
        )?;
        return owner
            .give(path)
            .map_err(|e| failed(path, "cannot give it to the server's user", e));
    }
    trusted(path, &meta, true, owner)
}

/// Checks the directory run directories are made in (`PGFRESH_RUN_DIR`, created when missing):
/// one that others may write to must have the sticky bit (as `/dev/shm` and `/tmp` do), or
/// another user could rename a run directory away and put one of theirs in its place.
#[cfg(unix)]
pub(super) fn base(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| failed(path, "cannot create it", e))?;
    let meta = std::fs::metadata(path).map_err(|e| failed(path, "cannot read it", e))?;
    let mode = meta.permissions().mode();
    if mode & 0o022 == 0 || mode & 0o1000 != 0 {
        return Ok(());
    }
    Err(Error::RunDir {
        path: path.display().to_string(),
        reason: format!(
            "other users may write to it (mode {:04o}) and it has no sticky bit, so they could \
             replace the run directories pgfresh makes in it",
            mode & 0o7777
        ),
        remedy: "Set PGFRESH_RUN_DIR to a directory only you can write to, or add the sticky \
                 bit (`chmod +t`)"
            .into(),
        source: None,
    })
}

/// Checks that `owner`, when it is not this process's user (root runs the local server as
/// `postgres`), may enter `path`: every directory from `/` down must let it search. Without
/// that, a private `PGFRESH_RUN_DIR` of root's fails later in `initdb`, as "Permission denied"
/// on a file pgfresh has just written.
#[cfg(unix)]
pub(super) fn reachable(path: &Path, owner: Owner) -> Result<()> {
    let Some(blocked) = blocker(path, owner)? else {
        return Ok(());
    };
    Err(Error::RunDir {
        path: path.display().to_string(),
        reason: blocked.reason,
        remedy: format!(
            "Let it in (`chmod o+x {}`), or set PGFRESH_RUN_DIR to a directory it can enter",
            blocked.dir.display()
        ),
        source: None,
    })
}

/// A directory that the server's user cannot search, on the way to a path it needs.
#[cfg(unix)]
pub(super) struct Blocked {
    pub dir: std::path::PathBuf,
    /// Who cannot enter what, with its owner and mode.
    pub reason: String,
}

/// The first directory from `/` down to `path` that `owner` may not search, when `owner` is
/// not this process's user.
#[cfg(unix)]
pub(super) fn blocker(path: &Path, owner: Owner) -> Result<Option<Blocked>> {
    if owner.uid == euid() {
        return Ok(None);
    }
    let full = std::fs::canonicalize(path).map_err(|e| failed(path, "cannot read it", e))?;
    for dir in full.ancestors() {
        let meta = std::fs::metadata(dir).map_err(|e| failed(dir, "cannot read it", e))?;
        let mode = meta.mode();
        let search = if meta.uid() == owner.uid {
            0o100
        } else if meta.gid() == owner.gid {
            0o010
        } else {
            0o001
        };
        if mode & search == 0 {
            return Ok(Some(Blocked {
                dir: dir.to_owned(),
                reason: format!(
                    "the server runs as {}, which cannot enter {} (owner {}, mode {:04o})",
                    user_name(owner.uid),
                    dir.display(),
                    user_name(meta.uid()),
                    mode & 0o7777
                ),
            }));
        }
    }
    Ok(None)
}

/// The owner of the existing directory `path` when pgfresh could have made it for this
/// process (owned by this process's user, or, for root, by a user a local server runs as) and
/// it can be trusted.
#[cfg(all(unix, feature = "cli"))]
pub(super) fn existing(path: &Path) -> Option<Owner> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let own = euid();
    let server_users = [user("postgres"), user("nobody")];
    let ours = meta.uid() == own
        || (own == 0
            && server_users
                .iter()
                .flatten()
                .any(|(uid, _)| *uid == meta.uid()));
    let owner = Owner {
        uid: meta.uid(),
        gid: meta.gid(),
    };
    (ours && trusted(path, &meta, true, owner).is_ok()).then_some(owner)
}

/// Opens the file `path` in a trusted directory for reading and appending, creating it (mode
/// `0600`, for `owner`) when `create` says so; `Ok(None)` when it does not exist and is not to
/// be created. A symbolic link, another owner or a wider mode is refused.
#[cfg(unix)]
pub(super) fn file(path: &Path, owner: Owner, create: bool) -> Result<Option<File>> {
    let opened = OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(None),
        // O_NOFOLLOW on a symbolic link.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            let meta =
                std::fs::symlink_metadata(path).map_err(|e| failed(path, "cannot read it", e))?;
            return trusted(path, &meta, false, owner).and(Err(failed(path, "cannot open it", e)));
        }
        Err(e) => return Err(failed(path, "cannot open it", e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| failed(path, "cannot read it", e))?;
    if meta.uid() != owner.uid && meta.uid() == euid() {
        // Just created by this (root) process for the server's user.
        owner
            .give(path)
            .map_err(|e| failed(path, "cannot give it to the server's user", e))?;
        return Ok(Some(file));
    }
    trusted(path, &meta, false, owner)?;
    Ok(Some(file))
}

/// Writes `text` to `path` through a new file (mode `0600`, for `owner`) renamed into place,
/// so that a reader never sees half of it and nobody else ever could.
#[cfg(unix)]
pub(super) fn write(path: &Path, text: &str, owner: Owner) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| failed(&tmp, "cannot create it", e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| failed(&tmp, "cannot write it", e))?;
    owner
        .give(&tmp)
        .map_err(|e| failed(&tmp, "cannot give it to the server's user", e))?;
    std::fs::rename(&tmp, path).map_err(|e| failed(path, "cannot replace it", e))
}

/// Refuses what pgfresh did not make: not the expected kind of file (a symbolic link, say),
/// another owner, or any group or other permission bit.
#[cfg(unix)]
fn trusted(path: &Path, meta: &Metadata, dir: bool, owner: Owner) -> Result<()> {
    let kind = meta.file_type();
    let what = if dir { "directory" } else { "file" };
    let problem = if kind.is_symlink() {
        Some(format!("it is a symbolic link, not a {what}"))
    } else if dir != kind.is_dir() || (!dir && !kind.is_file()) {
        Some(format!("it is not a {what}"))
    } else if meta.uid() != owner.uid {
        Some(format!(
            "it belongs to another user, not to {}",
            user_name(owner.uid)
        ))
    } else if meta.permissions().mode() & 0o077 != 0 {
        Some("other users have access to it".to_owned())
    } else {
        None
    };
    let Some(problem) = problem else {
        return Ok(());
    };
    Err(Error::RunDir {
        path: path.display().to_string(),
        reason: format!(
            "pgfresh did not make it and will not use it: {problem} (owner {}, mode {:04o}); it \
             would hold the test server's password{}",
            user_name(meta.uid()),
            meta.permissions().mode() & 0o7777,
            if dir { " and data" } else { "" }
        ),
        remedy: format!(
            "Remove it if it is a stale leftover of yours (`rm -rf {}`), or set PGFRESH_RUN_DIR \
             to a directory only you can write to",
            path.display()
        ),
        source: None,
    })
}

/// A failed system call on `path`.
pub(super) fn failed(path: &Path, what: &str, e: io::Error) -> Error {
    Error::RunDir {
        path: path.display().to_string(),
        reason: format!("{what}: {e}"),
        remedy: "Check that it is writable, or set PGFRESH_RUN_DIR to a directory that is".into(),
        source: Some(Arc::new(e)),
    }
}

/// `name (uid)` from `/etc/passwd`, or just the uid.
#[cfg(unix)]
fn user_name(uid: u32) -> String {
    passwd()
        .into_iter()
        .find(|(_, u, _)| *u == uid)
        .map_or_else(
            || format!("uid {uid}"),
            |(name, ..)| format!("{name} (uid {uid})"),
        )
}

/// The uid and gid of the user `name`, from `/etc/passwd`.
#[cfg(all(unix, feature = "local"))]
pub(super) fn user(name: &str) -> Option<(u32, u32)> {
    passwd()
        .into_iter()
        .find(|(n, ..)| n == name)
        .map(|(_, uid, gid)| (uid, gid))
}

/// `(name, uid, gid)` of every user in `/etc/passwd`.
#[cfg(unix)]
fn passwd() -> Vec<(String, u32, u32)> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            Some((
                f.first()?.to_string(),
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Windows: creates the directory `path` unless it exists; refuses anything but a directory.
#[cfg(not(unix))]
pub(super) fn directory(path: &Path, _owner: Owner) -> Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => not_a_link(path, true),
        Err(e) => Err(failed(path, "cannot create it", e)),
    }
}

/// Windows: creates the base directory when missing (its access list is the profile's).
#[cfg(not(unix))]
pub(super) fn base(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| failed(path, "cannot create it", e))
}

/// Windows: the server's user is this process's (a container's, for the docker source).
#[cfg(not(unix))]
pub(super) fn reachable(_path: &Path, _owner: Owner) -> Result<()> {
    Ok(())
}

/// Windows: opens the file `path` for reading and appending, creating it when `create` says
/// so; `Ok(None)` when it does not exist and is not to be created; a link is refused.
#[cfg(not(unix))]
pub(super) fn file(path: &Path, _owner: Owner, create: bool) -> Result<Option<File>> {
    if std::fs::symlink_metadata(path).is_ok() {
        not_a_link(path, false)?;
    }
    match OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !create => Ok(None),
        Err(e) => Err(failed(path, "cannot open it", e)),
    }
}

/// Windows: writes `text` to `path` through a new file renamed into place.
#[cfg(not(unix))]
pub(super) fn write(path: &Path, text: &str, _owner: Owner) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| failed(&tmp, "cannot create it", e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| failed(&tmp, "cannot write it", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| failed(path, "cannot replace it", e))
}

/// Windows: refuses `path` unless it is a directory (`dir`) or a file, not a link to one.
#[cfg(not(unix))]
fn not_a_link(path: &Path, dir: bool) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| failed(path, "cannot read it", e))?;
    let what = if dir { "directory" } else { "file" };
    if (dir && meta.is_dir()) || (!dir && meta.is_file()) {
        return Ok(());
    }
    Err(Error::RunDir {
        path: path.display().to_string(),
        reason: format!(
            "pgfresh did not make it and will not use it: it is not a {what} (a link, or \
             another kind of file)"
        ),
        remedy: format!(
            "Remove it if it is a stale leftover of yours, or set PGFRESH_RUN_DIR to a \
             directory only you can write to ({})",
            path.display()
        ),
        source: None,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn mine() -> Owner {
        Owner::of(None)
    }

    #[test]
    fn new_files_and_directories_are_private() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("run");
        directory(&dir, mine()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        file(&dir.join("lock"), mine(), true).unwrap().unwrap();
        write(&dir.join("state"), "x", mine()).unwrap();
        for name in ["lock", "state"] {
            let mode = std::fs::metadata(dir.join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert!(file(&dir.join("absent"), mine(), false).unwrap().is_none());
        // Opening it again finds it trustworthy.
        directory(&dir, mine()).unwrap();
    }

    #[test]
    fn a_file_open_to_others_or_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("state");
        std::fs::write(&open, "x").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = file(&open, mine(), false).unwrap_err().to_string();
        assert!(
            e.contains("other users have access to it") && e.contains("mode 0644"),
            "{e}"
        );

        let link = dir.path().join("lease");
        std::os::unix::fs::symlink(&open, &link).unwrap();
        let e = file(&link, mine(), true).unwrap_err().to_string();
        assert!(e.contains("it is a symbolic link, not a file"), "{e}");
        assert!(e.contains("PGFRESH_RUN_DIR"), "{e}");
    }
}
