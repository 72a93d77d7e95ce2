//! HTTP GETs from the Maven repository, through ureq (blocking: the embedded source runs its
//! fetch on a blocking thread).
//!
//! Every request has a time limit: 10 s to connect, 30 s for the response to begin, and 30 s
//! for each read of the body, so a repository that stops answering is an error, never a hang.
//! A user and password in the URL (a private Artifactory or Nexus) go in an `Authorization:
//! Basic` header, never on the request line, and every URL in an error has its password
//! replaced by `***`. ureq honours `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`.

use std::io::{Read, Write};
use std::time::Duration;

/// How long a connection may take to open.
const CONNECT: Duration = Duration::from_secs(10);
/// How long the server may take to begin its response, and then to send each part of it.
const SILENCE: Duration = Duration::from_secs(30);

/// Why a GET failed, in words that name the URL.
#[derive(Debug)]
pub(super) struct Failed {
    pub url: String,
    pub why: String,
    /// The server answered 404: the file is not in the repository.
    pub not_found: bool,
}

impl Failed {
    fn new(url: &str, why: String) -> Self {
        Self {
            url: crate::config::redact_url(url),
            why,
            not_found: false,
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT))
        .timeout_recv_response(Some(SILENCE))
        .timeout_per_read(Some(SILENCE))
        .http_status_as_error(false)
        .user_agent(concat!("pgfresh/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn get(url: &str) -> Result<ureq::http::Response<ureq::Body>, Failed> {
    let mut target = ::url::Url::parse(url).map_err(|e| Failed::new(url, e.to_string()))?;
    let credentials = (!target.username().is_empty()).then(|| {
        use base64::Engine;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let pair = format!(
            "{}:{}",
            decode(target.username()),
            decode(target.password().unwrap_or(""))
        );
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    });
    let _ = (target.set_username(""), target.set_password(None));
    let mut request = agent().get(target.as_str());
    if let Some(credentials) = credentials {
        request = request.header("Authorization", credentials);
    }
    let response = request
        .call()
        .map_err(|e| Failed::new(url, e.to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    Err(Failed {
        not_found: status == ureq::http::StatusCode::NOT_FOUND,
        ..Failed::new(url, format!("the server answered {status}"))
    })
}

/// The body of `url` as text (a small file: metadata, a checksum).
pub(super) fn text(url: &str) -> Result<String, Failed> {
    get(url)?
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| Failed::new(url, e.to_string()))
}

/// Copies the body of `url` into `out`, handing each part to `seen` with the bytes received so
/// far and the size the server announced. A body shorter than announced is an error.
pub(super) fn download(
    url: &str,
    out: &mut impl Write,
    mut seen: impl FnMut(&[u8], u64, Option<u64>),
) -> Result<u64, Failed> {
    let mut response = get(url)?;
    let size = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = response.body_mut().as_reader();
    let mut buf = vec![0u8; 256 << 10];
    let mut received = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(Failed::new(
                    url,
                    format!("the download broke off after {received} bytes: {e}"),
                ));
            }
        };
        out.write_all(&buf[..n])
            .map_err(|e| Failed::new(url, format!("cannot write what arrived: {e}")))?;
        received += n as u64;
        seen(&buf[..n], received, size);
    }
    if let Some(size) = size.filter(|size| received < *size) {
        return Err(Failed::new(
            url,
            format!("the download ended after {received} of {size} bytes"),
        ));
    }
    Ok(received)
}
