//! A `DB_URL` server that requires TLS, for real: a cluster with `ssl=on` and a certificate the
//! test makes (its own CA, a server certificate for `localhost`). `sslmode=require` connects,
//! `verify-full` with the CA (`sslrootcert`) connects, `verify-full` without it is refused with
//! a message naming `sslrootcert`; a build without the `tls` feature names the feature.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{OwnServer, PROBE, output, rerun};

/// A CA and a server certificate it signed for `localhost` and 127.0.0.1, made with openssl in
/// `dir`: `ca.crt`, `server.crt`, `server.key`.
fn certificates(dir: &Path) {
    let script = r#"set -e
        cd "$1"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=pgfresh test CA" \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext -out server.crt 2>/dev/null"#;
    let status = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(dir)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl could not make the certificates");
}

/// A local cluster of the test's own, switched to `ssl = on` with the test's certificate.
async fn tls_server(certs: &Path) -> OwnServer {
    let mut server = OwnServer::new("local", 5);
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = rerun(PROBE, &env);
    assert!(out.status.success(), "{}", output(&out));
    server.hold(Duration::from_secs(10));
    let data = server.run_dir().expect("a run directory").join("data");
    let owner = std::fs::metadata(&data).unwrap();
    for file in ["server.crt", "server.key"] {
        let target = data.join(file);
        std::fs::copy(certs.join(file), &target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&target, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    let admin = pgfresh::sqlx::PgPool::connect(&server.admin_url())
        .await
        .unwrap();
    for statement in ["ALTER SYSTEM SET ssl = on", "SELECT pg_reload_conf()"] {
        pgfresh::sqlx::raw_sql(statement)
            .execute(&admin)
            .await
            .unwrap();
    }
    admin.close().await;
    server
}

#[tokio::test]
async fn a_server_that_requires_tls_works_out_of_the_box() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let server = tls_server(certs.path()).await;
    let (port, password) = server.state().unwrap();
    let ca = certs.path().join("ca.crt").display().to_string();
    let url = |host: &str, query: &str| {
        format!("postgres://postgres:{password}@{host}:{port}/postgres?{query}")
    };
    let run = |url: String| {
        rerun(
            PROBE,
            &[("PGFRESH_SERVER", "url"), ("DB_URL", url.as_str())],
        )
    };

    #[cfg(feature = "tls")]
    {
        for (case, url) in [
            ("require", url("127.0.0.1", "sslmode=require")),
            (
                "verify-full with the CA",
                url(
                    "localhost",
                    &format!("sslmode=verify-full&sslrootcert={ca}"),
                ),
            ),
        ] {
            let out = run(url);
            assert!(out.status.success(), "{case}: {}", output(&out));
            assert_eq!(common::probe_field(&out, "source"), "url", "{case}");
        }

        let out = run(url("localhost", "sslmode=verify-full"));
        let text = output(&out);
        assert!(
            !out.status.success(),
            "an untrusted certificate was accepted:\n{text}"
        );
        assert!(
            text.contains("cannot connect to PostgreSQL at localhost:"),
            "{text}"
        );
        assert!(text.contains("invalid peer certificate"), "{text}");
        assert!(text.contains("sslrootcert=<file>"), "{text}");
        assert!(!text.contains(&password), "the password leaked:\n{text}");
    }

    #[cfg(not(feature = "tls"))]
    {
        let _ = ca; // only verify-full needs the CA
        let out = run(url("127.0.0.1", "sslmode=require"));
        let text = output(&out);
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("the connection needs TLS") && text.contains("`tls` cargo feature"),
            "{text}"
        );
    }
    drop(server);
}
