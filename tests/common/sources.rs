//! Which server sources this machine has, and the docker image the tests use.

use std::process::Command;

/// Whether a server source a test needs is here. In CI it must be (a missing source is a CI
/// defect, not a reason to skip); on a developer's machine the test says why it does nothing.
pub fn available(present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is not available, and CI must exercise it"
    );
    eprintln!("{what} is not available on this machine; this test has nothing to check");
    false
}

/// Whether a Docker daemon answers.
pub fn docker_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ID}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether PostgreSQL binaries can be found the way the local source finds them.
pub fn local_binaries() -> bool {
    let on_path = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
    });
    on_path
        || std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|mut d| d.next().is_some())
        || std::env::var_os("PGFRESH_PG_BIN").is_some()
}

/// The image for the docker source in tests: `PGFRESH_IMAGE`, else the offline image built by
/// `scripts/offline-image.sh` when this machine has it (no registry needed), else `None`
/// (pgfresh's default).
pub fn docker_image() -> Option<String> {
    if let Some(image) = std::env::var("PGFRESH_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
    {
        return Some(image);
    }
    let offline = "pgfresh-offline/postgres:15";
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", offline])
        .output()
        .is_ok_and(|o| o.status.success())
        .then(|| offline.to_owned())
}
