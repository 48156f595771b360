//! The relay's certificate: `relay gen-cert` makes a self-signed one, and
//! `relay serve` loads any PEM chain and key (self-signed, private CA or
//! public CA) into its QUIC server configuration.
//!
//! Clients identify a relay by its certificate's SHA-256 fingerprint
//! (pinned with `--ca` or trusted on first use, see `common::trust`), so
//! both operations return it for the relay to print.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::atomic_file::{self, PRIVATE};
use common::frame::ALPN;
use common::trust::fingerprint;
use quinn::crypto::rustls::QuicServerConfig;
use rcgen::{
    date_time_ymd, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer};

/// Names a generated certificate is valid for when none are given: the
/// loopback names, so a relay on this machine works out of the box.
pub const DEFAULT_SANS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Validity of a generated certificate when none is given. Pinned and
/// trust-on-first-use clients identify the relay by the exact certificate and
/// ignore its dates; a year is what other verifiers expect of a certificate.
pub const DEFAULT_DAYS: u32 = 365;

/// Longest validity `gen-cert` accepts: a hundred years, far inside what
/// X.509 dates can express.
pub const MAX_DAYS: u32 = 36_525;

/// Common name of generated certificates; clients check the SANs, this
/// only tells a person reading the certificate what it is.
const COMMON_NAME: &str = "confab relay";

/// Certificate and key file names inside `gen-cert`'s output folder.
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// What `relay gen-cert` should make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenCert {
    /// Folder to write `cert.pem` and `key.pem` into; created if missing.
    pub out: PathBuf,
    /// Names the certificate is valid for: IP addresses become IP SANs,
    /// anything else a DNS name. Empty means [`DEFAULT_SANS`].
    pub sans: Vec<String>,
    /// Days of validity from now, 1 to [`MAX_DAYS`].
    pub days: u32,
    /// Replace existing files instead of refusing.
    pub force: bool,
}

/// What `relay gen-cert` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The certificate, PEM.
    pub cert_path: PathBuf,
    /// The private key, PKCS#8 PEM, readable by its owner only.
    pub key_path: PathBuf,
    /// SHA-256 fingerprint of the certificate, as clients show it.
    pub fingerprint: String,
}

/// Making or loading the relay's certificate failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// `gen-cert` would overwrite a file and `--force` was not given.
    #[error("{} already exists; pass --force to replace it (clients that pinned or remembered the old certificate will then refuse the relay until they trust the new one)", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// A `--san` is neither an IP address nor a valid DNS name.
    #[error("`{san}` cannot be a certificate name: {reason}; give a DNS name like relay.example.com or an IP address like 192.0.2.7")]
    BadSan {
        /// The name as given.
        san: String,
        /// Why it is not valid.
        reason: String,
    },
    /// `--days` is out of range.
    #[error("a certificate cannot be valid for {days} days; give --days between 1 and {MAX_DAYS}")]
    BadDays {
        /// The number given.
        days: u32,
    },
    /// rcgen could not make the key or certificate.
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// Writing the output folder or a file failed.
    #[error("cannot write {}: {error}; check that the folder exists and is writable, or choose another with --out", path.display())]
    Write {
        /// The file or folder being written.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The certificate file is missing or unreadable.
    #[error("cannot read certificate {}: {error}; create one with `relay gen-cert --out {}`", path.display(), out_hint(path))]
    ReadCert {
        /// The file given with `--cert`.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The key file is missing or unreadable.
    #[error("cannot read private key {}: {error}; create one with `relay gen-cert --out {}`", path.display(), out_hint(path))]
    ReadKey {
        /// The file given with `--key`.
        path: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// Other users may read the key file: whoever can read it can pose as
    /// this relay.
    #[error("the private key {} can be read by other users (mode {mode:o}); run `chmod 600 {}` and start again", path.display(), path.display())]
    KeyExposed {
        /// The file given with `--key`.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The certificate file is not PEM or has no certificate in it.
    #[error("no certificate found in {}{}; expected PEM `-----BEGIN CERTIFICATE-----` blocks, the relay's own certificate first", path.display(), detail(reason))]
    NoCert {
        /// The file given with `--cert`.
        path: PathBuf,
        /// The PEM parse error, if the file was not even PEM.
        reason: Option<String>,
    },
    /// The certificate could not be parsed.
    #[error("the certificate in {} is not usable: {reason}; pass a PEM X.509 certificate, or create one with `relay gen-cert`", path.display())]
    BadCert {
        /// The file given with `--cert`.
        path: PathBuf,
        /// What rustls reported.
        reason: String,
    },
    /// The key file is not PEM or has no private key in it.
    #[error("no private key found in {}{}; expected a PEM `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY` block", path.display(), detail(reason))]
    NoKey {
        /// The file given with `--key`.
        path: PathBuf,
        /// The PEM parse error, if the file was not even PEM.
        reason: Option<String>,
    },
    /// The private key could not be used (unsupported type, corrupt).
    #[error("the private key in {} is not usable: {reason}; use an ECDSA, Ed25519 or RSA key, or create one with `relay gen-cert`", path.display())]
    BadKey {
        /// The file given with `--key`.
        path: PathBuf,
        /// What rustls reported.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("the private key in {} does not belong to the certificate in {}; pass the key that was made together with that certificate", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls or quinn refused the configuration (a bug, not an input
    /// problem).
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// The `--out` folder to suggest for a missing file: the folder it was
/// expected in.
fn out_hint(path: &Path) -> String {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.display().to_string(),
        _ => ".".to_owned(),
    }
}

fn detail(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

/// Make a self-signed ECDSA P-256 certificate and its key in `opts.out`
/// (`cert.pem`, mode 0644, and `key.pem`, mode 0600 from the moment it
/// exists). Existing files are refused unless `opts.force`, in which case
/// each is replaced by an atomic rename, so a running relay or a reader
/// never sees half a file.
pub fn generate(opts: &GenCert) -> Result<Generated, CertError> {
    if !(1..=MAX_DAYS).contains(&opts.days) {
        return Err(CertError::BadDays { days: opts.days });
    }
    let subject_alt_names = match opts.sans.is_empty() {
        true => DEFAULT_SANS.iter().map(|s| san(s)).collect(),
        false => opts.sans.iter().map(|s| san(s)).collect::<Result<_, _>>(),
    }?;
    let cert_path = opts.out.join(CERT_FILE);
    let key_path = opts.out.join(KEY_FILE);
    if !opts.force {
        // Checked before any work so a refusal leaves everything as it was.
        for path in [&cert_path, &key_path] {
            if path.exists() {
                return Err(CertError::Exists { path: path.clone() });
            }
        }
    }

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = subject_alt_names;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, COMMON_NAME);
    // An hour of slack so that clients with a clock slightly behind accept
    // a certificate made a moment ago.
    let now = unix_now();
    params.not_before = date_time_ymd(1970, 1, 1) + now.saturating_sub(Duration::from_secs(3600));
    params.not_after =
        date_time_ymd(1970, 1, 1) + now + Duration::from_secs(u64::from(opts.days) * 86_400);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;

    fs::create_dir_all(&opts.out).map_err(|error| CertError::Write {
        path: opts.out.clone(),
        error,
    })?;
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |error| CertError::Write { path, error }
    };
    let key_new = atomic_file::stage(&key_path, key.serialize_pem().as_bytes(), PRIVATE)
        .map_err(failed(&key_path))?;
    let cert_new =
        atomic_file::stage(&cert_path, cert.pem().as_bytes(), 0o644).map_err(failed(&cert_path))?;
    // Key first: a relay restarted between the two renames fails with
    // "key does not belong to certificate", never serves a stale pair.
    key_new.commit().map_err(failed(&key_path))?;
    cert_new.commit().map_err(failed(&cert_path))?;

    Ok(Generated {
        cert_path,
        key_path,
        fingerprint: fingerprint(cert.der()),
    })
}

/// One SAN: an IP address (bare or in brackets) or a DNS name, possibly
/// with a leading `*.` wildcard label.
fn san(name: &str) -> Result<SanType, CertError> {
    let trimmed = name.trim();
    let bare = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = |reason: &str| CertError::BadSan {
        san: name.to_owned(),
        reason: reason.to_owned(),
    };
    let host = trimmed.strip_prefix("*.").unwrap_or(trimmed);
    DnsName::try_from(host).map_err(|_| bad("not a valid DNS name"))?;
    let ia5 = rcgen::string::Ia5String::try_from(trimmed.to_ascii_lowercase())
        .map_err(|_| bad("not ASCII"))?;
    Ok(SanType::DnsName(ia5))
}

fn unix_now() -> Duration {
    // A clock before 1970 is broken; the epoch still gives a usable (if
    // odd) validity window rather than a panic.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The QUIC server configuration of `relay serve` from a PEM certificate
/// chain (the relay's certificate first, then any intermediates) and its
/// PKCS#8, SEC1 or PKCS#1 private key, with the certificate's fingerprint
/// for the relay to print. TLS 1.3 only, ALPN `confab/1`, the protocol's
/// idle timeout.
pub fn load_server_config(
    cert: &Path,
    key: &Path,
) -> Result<(quinn::ServerConfig, String), CertError> {
    let chain = read_chain(cert)?;
    let private_key = read_key(key)?;
    let leaf_fingerprint = fingerprint(&chain[0]);

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| CertError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                CertError::KeyMismatch {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                }
            }
            rustls::Error::InvalidCertificate(why) => CertError::BadCert {
                path: cert.to_owned(),
                reason: format!("{why:?}"),
            },
            other => CertError::BadKey {
                path: key.to_owned(),
                reason: other.to_string(),
            },
        })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // `max_early_data_size` stays 0: 0-RTT data can be replayed by an
    // attacker, and nothing in a chat session is worth that risk to save
    // one round trip on reconnect.

    let quic = QuicServerConfig::try_from(tls).map_err(|e| CertError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(crate::defaults::transport()));
    Ok((config, leaf_fingerprint))
}

/// Every certificate of a PEM file, at least one.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem_text = fs::read(path).map_err(|error| CertError::ReadCert {
        path: path.to_owned(),
        error,
    })?;
    let chain = CertificateDer::pem_slice_iter(&pem_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::NoCert {
            path: path.to_owned(),
            reason: Some(e.to_string()),
        })?;
    if chain.is_empty() {
        return Err(CertError::NoCert {
            path: path.to_owned(),
            reason: None,
        });
    }
    Ok(chain)
}

/// The first private key of a PEM file, refused if group or others may
/// read it.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|error| CertError::ReadKey {
            path: path.to_owned(),
            error,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(CertError::KeyExposed {
            path: path.to_owned(),
            mode,
        });
    }
    let pem_text = fs::read(path).map_err(|error| CertError::ReadKey {
        path: path.to_owned(),
        error,
    })?;
    PrivateKeyDer::from_pem_slice(&pem_text).map_err(|e| CertError::NoKey {
        path: path.to_owned(),
        reason: match e {
            pem::Error::NoItemsFound => None,
            other => Some(other.to_string()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::trust::{client_config, remember, TrustFailure, TrustMode};
    use std::net::SocketAddr;

    fn opts(out: &Path, sans: &[&str]) -> GenCert {
        GenCert {
            out: out.to_owned(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            days: DEFAULT_DAYS,
            force: false,
        }
    }

    fn cert_der(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    /// Does a web PKI verifier with the certificate as its only root accept
    /// it for `name`? This is what a client checking names would decide.
    fn valid_for(cert: &CertificateDer<'static>, name: &str) -> bool {
        use rustls::client::danger::ServerCertVerifier;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier
            .verify_server_cert(cert, &[], &name, &[], now)
            .is_ok()
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generate_writes_both_files_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs/new");
        let made = generate(&opts(&out, &[])).unwrap();
        assert_eq!(made.cert_path, out.join("cert.pem"));
        assert_eq!(made.key_path, out.join("key.pem"));
        let cert = fs::read_to_string(&made.cert_path).unwrap();
        let key = fs::read_to_string(&made.key_path).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        #[cfg(unix)]
        {
            assert_eq!(mode(&made.key_path), 0o600);
            assert_eq!(mode(&made.cert_path) & 0o022, 0, "cert writable by others");
        }
        // No temporary files left behind.
        assert_eq!(fs::read_dir(&out).unwrap().count(), 2);
    }

    #[test]
    fn generate_refuses_existing_files_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(&opts(dir.path(), &[])).unwrap();
        let cert_before = fs::read(&first.cert_path).unwrap();
        let key_before = fs::read(&first.key_path).unwrap();

        let err = generate(&opts(dir.path(), &[])).unwrap_err();
        assert!(matches!(err, CertError::Exists { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("cert.pem") && text.contains("--force"),
            "{text}"
        );
        assert_eq!(fs::read(&first.cert_path).unwrap(), cert_before);
        assert_eq!(fs::read(&first.key_path).unwrap(), key_before);

        // A lone key is protected too.
        fs::remove_file(&first.cert_path).unwrap();
        let err = generate(&opts(dir.path(), &[])).unwrap_err();
        assert!(err.to_string().contains("key.pem"), "{err}");
        assert_eq!(fs::read(&first.key_path).unwrap(), key_before);
    }

    #[test]
    fn force_replaces_both_files_with_a_new_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate(&opts(dir.path(), &[])).unwrap();
        let key_before = fs::read(&first.key_path).unwrap();
        let second = generate(&GenCert {
            force: true,
            ..opts(dir.path(), &[])
        })
        .unwrap();
        assert_ne!(first.fingerprint, second.fingerprint);
        assert_ne!(fs::read(&second.key_path).unwrap(), key_before);
        assert_eq!(
            second.fingerprint,
            fingerprint(&cert_der(&second.cert_path))
        );
        #[cfg(unix)]
        assert_eq!(mode(&second.key_path), 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn printed_fingerprint_is_the_certificate_files() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate(&opts(dir.path(), &[])).unwrap();
        let der = cert_der(&made.cert_path);
        assert_eq!(made.fingerprint, common::trust::fingerprint(&der));
        let (_config, served) = load_server_config(&made.cert_path, &made.key_path).unwrap();
        assert_eq!(served, made.fingerprint);
    }

    #[test]
    fn certificate_is_valid_for_the_requested_names_only() {
        let dir = tempfile::tempdir().unwrap();
        let sans = [
            "relay.example.com",
            "10.1.2.3",
            "[fd00::7]",
            "*.lab.example",
        ];
        let made = generate(&opts(dir.path(), &sans)).unwrap();
        let der = cert_der(&made.cert_path);
        for name in ["relay.example.com", "10.1.2.3", "fd00::7", "a.lab.example"] {
            assert!(valid_for(&der, name), "not valid for {name}");
        }
        for name in ["localhost", "127.0.0.1", "other.example.com"] {
            assert!(!valid_for(&der, name), "valid for {name}");
        }
    }

    #[test]
    fn default_names_are_the_loopback_ones() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate(&opts(dir.path(), &[])).unwrap();
        let der = cert_der(&made.cert_path);
        for name in DEFAULT_SANS {
            assert!(valid_for(&der, name), "not valid for {name}");
        }
        assert!(!valid_for(&der, "example.com"));
    }

    #[test]
    fn bad_names_and_days_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        for bad in ["not a name", "", "héllo.example", "a..b"] {
            let err = generate(&opts(&out, &[bad])).unwrap_err();
            assert!(matches!(err, CertError::BadSan { .. }), "{bad}: {err}");
        }
        for days in [0, MAX_DAYS + 1, u32::MAX] {
            let err = generate(&GenCert {
                days,
                ..opts(&out, &[])
            })
            .unwrap_err();
            assert!(matches!(err, CertError::BadDays { .. }), "{err}");
        }
        assert!(!out.exists());
        generate(&GenCert {
            days: MAX_DAYS,
            ..opts(&out, &[])
        })
        .unwrap();
    }

    #[test]
    fn missing_files_are_named_with_the_fix() {
        let err = load_server_config(Path::new("certs/cert.pem"), Path::new("certs/key.pem"))
            .unwrap_err();
        assert!(matches!(err, CertError::ReadCert { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with("cannot read certificate certs/cert.pem: "),
            "{text}"
        );
        assert!(
            text.ends_with("; create one with `relay gen-cert --out certs`"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);

        let dir = tempfile::tempdir().unwrap();
        let made = generate(&opts(dir.path(), &[])).unwrap();
        let missing_key = dir.path().join("nokey.pem");
        let err = load_server_config(&made.cert_path, &missing_key).unwrap_err();
        assert!(matches!(err, CertError::ReadKey { .. }), "{err}");
        assert!(err.to_string().contains("nokey.pem"), "{err}");
    }

    #[test]
    fn wrong_or_empty_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate(&opts(&dir.path().join("a"), &[])).unwrap();
        let b = generate(&opts(&dir.path().join("b"), &[])).unwrap();

        let err = load_server_config(&a.cert_path, &b.key_path).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");

        // Key and certificate swapped: neither file has what is expected.
        let err = load_server_config(&a.key_path, &a.cert_path).unwrap_err();
        assert!(matches!(err, CertError::NoCert { .. }), "{err}");
        let not_a_key = dir.path().join("not-a-key.pem");
        fs::copy(&a.cert_path, &not_a_key).unwrap();
        restrict(&not_a_key);
        let err = load_server_config(&a.cert_path, &not_a_key).unwrap_err();
        assert!(matches!(err, CertError::NoKey { .. }), "{err}");

        let junk = dir.path().join("junk.pem");
        fs::write(&junk, "-----BEGIN CERTIFICATE-----\n!!!\n").unwrap();
        let err = load_server_config(&junk, &a.key_path).unwrap_err();
        assert!(
            matches!(
                err,
                CertError::NoCert {
                    reason: Some(_),
                    ..
                }
            ),
            "{err}"
        );

        let garbage = dir.path().join("garbage.pem");
        fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_server_config(&garbage, &a.key_path).unwrap_err();
        assert!(matches!(err, CertError::BadCert { .. }), "{err}");
    }

    // End to end: a QUIC server with a generated certificate, and clients
    // trusting it in each mode.

    /// A relay stand-in that completes handshakes and holds connections.
    fn serve(cert: &Path, key: &Path) -> (quinn::Endpoint, SocketAddr) {
        restrict(key);
        let (config, _) = load_server_config(cert, key).unwrap();
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let accept = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accept.accept().await {
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        conn.closed().await;
                    }
                });
            }
        });
        (endpoint, addr)
    }

    /// Connect with `mode` to `addr` under the name `host`; on failure, the
    /// trust outcome (`None` if the failure was not about trust).
    async fn connect(
        mode: &TrustMode,
        addr: SocketAddr,
        host: &str,
    ) -> Result<(), Option<TrustFailure>> {
        let server = format!("{host}:{}", addr.port());
        let (config, check) = client_config(mode, &server).unwrap();
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let connecting = endpoint.connect_with(config, addr, host).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .expect("handshake timed out");
        match result {
            Ok(conn) => {
                assert_eq!(
                    conn.handshake_data()
                        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                        .and_then(|d| d.protocol),
                    Some(ALPN.to_vec())
                );
                conn.close(0u32.into(), b"done");
                endpoint.wait_idle().await;
                assert_eq!(check.outcome(), None);
                Ok(())
            }
            Err(e) => {
                let outcome = check.outcome();
                assert!(outcome.is_some(), "not a trust failure: {e}");
                Err(outcome)
            }
        }
    }

    #[tokio::test]
    async fn pinned_certificate_is_accepted_under_any_name_and_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        let relay = generate(&opts(&dir.path().join("relay"), &[])).unwrap();
        let other = generate(&opts(&dir.path().join("other"), &[])).unwrap();
        let (_server, addr) = serve(&relay.cert_path, &relay.key_path);

        let pinned = TrustMode::Pinned(relay.cert_path.clone());
        connect(&pinned, addr, "localhost").await.unwrap();
        // The exact certificate is the identity: the name does not matter.
        connect(&pinned, addr, "not-in-the-cert.example")
            .await
            .unwrap();

        let wrong = TrustMode::Pinned(other.cert_path.clone());
        match connect(&wrong, addr, "localhost").await {
            Err(Some(TrustFailure::PinMismatch {
                file,
                expected,
                presented,
            })) => {
                assert_eq!(file, other.cert_path);
                assert_eq!(expected, vec![other.fingerprint.clone()]);
                assert_eq!(presented, relay.fingerprint);
            }
            other => panic!("expected PinMismatch, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn pinned_private_ca_accepts_its_leaf_for_the_right_name_only() {
        use rcgen::{BasicConstraints, CertifiedIssuer};
        let dir = tempfile::tempdir().unwrap();

        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "confab test CA");
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let ca_path = dir.path().join("ca.pem");
        fs::write(&ca_path, ca.pem()).unwrap();

        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = CertificateParams::new(vec!["relay.test".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let cert_path = dir.path().join("chain.pem");
        let key_path = dir.path().join("key.pem");
        fs::write(&cert_path, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
        let (_server, addr) = serve(&cert_path, &key_path);

        let mode = TrustMode::Pinned(ca_path);
        connect(&mode, addr, "relay.test").await.unwrap();
        match connect(&mode, addr, "wrong.test").await {
            Err(Some(TrustFailure::Invalid(text))) => assert!(text.contains("ca.pem"), "{text}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn tofu_unknown_relay_is_refused_then_accepted_after_remember() {
        let dir = tempfile::tempdir().unwrap();
        let relay = generate(&opts(&dir.path().join("relay"), &[])).unwrap();
        let (_server, addr) = serve(&relay.cert_path, &relay.key_path);
        let file = dir.path().join("config/known_relays");
        let mode = TrustMode::Tofu {
            file: file.clone(),
            accept_new: false,
        };

        let (server, fp) = match connect(&mode, addr, "127.0.0.1").await {
            Err(Some(TrustFailure::Unknown {
                server,
                fingerprint,
                file: named,
            })) => {
                assert_eq!(named, file);
                (server, fingerprint)
            }
            other => panic!("expected Unknown, got {other:?}"),
        };
        assert_eq!(server, format!("127.0.0.1:{}", addr.port()));
        assert_eq!(fp, relay.fingerprint);
        assert!(!file.exists());

        remember(&file, &server, &fp).unwrap();
        connect(&mode, addr, "127.0.0.1").await.unwrap();
    }

    #[tokio::test]
    async fn tofu_changed_certificate_is_refused_and_the_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let relay = generate(&opts(&dir.path().join("relay"), &[])).unwrap();
        let imposter = generate(&opts(&dir.path().join("imposter"), &[])).unwrap();
        let (_server, addr) = serve(&imposter.cert_path, &imposter.key_path);
        let file = dir.path().join("known_relays");
        let server = format!("127.0.0.1:{}", addr.port());
        remember(&file, &server, &relay.fingerprint).unwrap();
        let before = fs::read(&file).unwrap();

        for accept_new in [false, true] {
            let mode = TrustMode::Tofu {
                file: file.clone(),
                accept_new,
            };
            match connect(&mode, addr, "127.0.0.1").await {
                Err(Some(failure @ TrustFailure::Changed { .. })) => {
                    let text = failure.to_string();
                    assert!(text.contains("presented a different certificate"), "{text}");
                    assert!(text.contains(&relay.fingerprint), "{text}");
                    assert!(text.contains(&imposter.fingerprint), "{text}");
                }
                other => panic!("expected Changed, got {other:?}"),
            }
            assert_eq!(fs::read(&file).unwrap(), before);
        }
    }

    #[tokio::test]
    async fn tofu_accept_new_records_the_relay() {
        let dir = tempfile::tempdir().unwrap();
        let relay = generate(&opts(&dir.path().join("relay"), &[])).unwrap();
        let (_server, addr) = serve(&relay.cert_path, &relay.key_path);
        let file = dir.path().join("new/known_relays");
        let mode = TrustMode::Tofu {
            file: file.clone(),
            accept_new: true,
        };
        connect(&mode, addr, "localhost").await.unwrap();
        let server = format!("localhost:{}", addr.port());
        assert_eq!(
            common::trust::lookup(&file, &server).unwrap(),
            vec![relay.fingerprint.clone()]
        );
        // Known now, so a strict client accepts it too.
        let strict = TrustMode::Tofu {
            file,
            accept_new: false,
        };
        connect(&strict, addr, "localhost").await.unwrap();
    }

    #[tokio::test]
    async fn platform_roots_refuse_a_self_signed_relay() {
        let dir = tempfile::tempdir().unwrap();
        let relay = generate(&opts(dir.path(), &[])).unwrap();
        let (_server, addr) = serve(&relay.cert_path, &relay.key_path);
        let server = format!("localhost:{}", addr.port());
        // A machine without CA roots cannot run this check; that is a
        // configuration error of its own, tested by its message.
        let Ok((config, check)) = client_config(&TrustMode::Roots, &server) else {
            return;
        };
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let result = endpoint
            .connect_with(config, addr, "localhost")
            .unwrap()
            .await;
        assert!(result.is_err());
        match check.outcome() {
            Some(TrustFailure::Invalid(text)) => assert!(text.contains("--ca"), "{text}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// Key files written by tests get the mode `relay serve` insists on.
    fn restrict(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let made = generate(&GenCert {
            out: dir.path().to_owned(),
            sans: vec![],
            days: 30,
            force: false,
        })
        .unwrap();
        fs::set_permissions(&made.key_path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_server_config(&made.cert_path, &made.key_path).unwrap_err();
        assert!(
            matches!(err, CertError::KeyExposed { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&made.key_path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load_server_config(&made.cert_path, &made.key_path).is_ok());
    }
}
