//! How a client decides to trust a relay, and the QUIC client configuration
//! built on that decision.
//!
//! There are three ways, and none of them skips verification:
//!
//! - [`TrustMode::Roots`]: the platform's CA roots, ordinary web PKI checks
//!   including the host name. For relays with a certificate from a real CA.
//! - [`TrustMode::Pinned`]: a PEM file the user gave (`--ca FILE`). The relay
//!   is accepted if its certificate is one of the file's certificates, byte
//!   for byte, or if its chain validates with the file's certificates as
//!   roots (a private CA).
//! - [`TrustMode::Tofu`]: trust on first use, as ssh does. The relay's
//!   certificate fingerprint is remembered in a known-relays file the first
//!   time the user accepts it; a later different certificate is refused.
//!
//! In every mode the TLS 1.3 handshake signature is verified against the
//! presented certificate, so a relay must hold the private key of the
//! certificate it shows.
//!
//! rustls reports a refused certificate only as a `rustls::Error` deep inside
//! a connection error, so [`client_config`] also hands out a [`TrustCheck`]:
//! after a failed connect, [`TrustCheck::outcome`] says exactly what was
//! wrong ([`TrustFailure`]), so a CLI can prompt and a GUI can show a dialog.

mod known;
mod verifier;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use sha2::{Digest, Sha256};

pub use known::{
    default_known_relays, forget, lookup, remember, replace_changed, KNOWN_RELAYS_ENV,
};

use crate::frame::ALPN;
use crate::limits::{IDLE_TIMEOUT, KEEP_ALIVE};
use verifier::{Policy, RelayVerifier};

/// The SHA-256 fingerprint of a DER certificate as people compare it:
/// `SHA256:` then the 32 bytes in uppercase hex joined by `:`, e.g.
/// `SHA256:3F:A0:…:9C`. `relay serve` prints the same string at start.
pub fn fingerprint(cert_der: &[u8]) -> String {
    let digest = Sha256::digest(cert_der);
    let mut out = String::with_capacity(7 + digest.len() * 3);
    out.push_str("SHA256:");
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// The host part of a `host:port` server address, as the TLS server name:
/// `relay.example.com:4433` → `relay.example.com`, `[::1]:4433` → `::1`.
/// An address without a port is returned as it is.
pub fn server_host(server: &str) -> &str {
    let server = server.trim();
    if let Some(rest) = server.strip_prefix('[') {
        // Bracketed IPv6: everything up to the closing bracket.
        return rest.split(']').next().unwrap_or(rest);
    }
    match server.rsplit_once(':') {
        // More than one colon without brackets is a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => server,
    }
}

/// How a client decides to trust a relay's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustMode {
    /// The platform's CA roots, with the host name checked: for relays
    /// whose certificate comes from a public CA.
    Roots,
    /// The certificates in this PEM file (`--ca FILE`): the relay's own
    /// certificate (then the host name does not matter: the exact key is the
    /// identity) or a private CA that signed it (then it must match).
    Pinned(PathBuf),
    /// Trust on first use with this known-relays file (see
    /// [`default_known_relays`]). With `accept_new`, an unknown relay is
    /// remembered and accepted without asking; otherwise it is refused with
    /// [`TrustFailure::Unknown`] so the caller can ask the user, call
    /// [`remember`] and connect again.
    Tofu {
        /// The known-relays file.
        file: PathBuf,
        /// Remember and accept relays not in the file yet.
        accept_new: bool,
    },
}

/// Why a relay's certificate was refused. Read it with
/// [`TrustCheck::outcome`] after a failed connect.
///
/// The first line of each message, where `SERVER`, `FILE` and the
/// fingerprints are filled in:
///
/// - `Unknown`: "the relay at SERVER is not known yet; its certificate
///   fingerprint is SHA256:…"
/// - `Changed`: "the relay at SERVER presented a different certificate than
///   the one remembered in FILE"
/// - `PinMismatch`: "the relay's certificate does not match the pinned
///   certificates in FILE"
/// - `Invalid`: "the relay's certificate is not valid: REASON"
///
/// The lines after it list the fingerprints and say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustFailure {
    /// Trust on first use, and this relay is not in the known-relays file.
    /// Show the fingerprint, ask the user, then [`remember`] it.
    #[error(
        "the relay at {server} is not known yet; its certificate fingerprint is {fingerprint}\n\
         Compare it with the fingerprint the relay's operator sees (`relay serve` prints it at \
         start). If they match, accept it to remember it in {}.",
        file.display()
    )]
    Unknown {
        /// The server as the user typed it (`host:port`).
        server: String,
        /// The fingerprint of the certificate the relay presented.
        fingerprint: String,
        /// The known-relays file it would be remembered in.
        file: PathBuf,
    },
    /// Trust on first use, and the relay presented a certificate other than
    /// the remembered one. Never connect: this is what an interception looks
    /// like. `accept_new` does not cover it; only the user, once the relay's
    /// operator confirmed the new fingerprint, may [`replace_changed`] it.
    #[error(
        "the relay at {server} presented a different certificate than the one remembered in {}\n  \
         remembered: {known}\n  \
         presented:  {presented}\n\
         Someone may be intercepting the connection, or the relay's certificate was replaced. \
         If the relay's operator confirms the new fingerprint (`relay serve` prints it at start), \
         remove the line for {server} from {} and connect again.",
        file.display(),
        file.display()
    )]
    Changed {
        /// The server as the user typed it (`host:port`).
        server: String,
        /// The remembered fingerprint (several are joined by ", ").
        known: String,
        /// The fingerprint of the certificate the relay presented.
        presented: String,
        /// The known-relays file.
        file: PathBuf,
    },
    /// Pinned file, and the relay's certificate is neither in it nor signed
    /// by a certificate in it.
    #[error(
        "the relay's certificate does not match the pinned certificates in {}\n  \
         pinned:    {}\n  \
         presented: {presented}\n\
         Check that the file is the relay's current certificate (`relay serve` prints its \
         fingerprint at start) or the CA that signed it.",
        file.display(),
        expected.join("\n             ")
    )]
    PinMismatch {
        /// The pinned PEM file.
        file: PathBuf,
        /// Fingerprints of the certificates in the file.
        expected: Vec<String>,
        /// The fingerprint of the certificate the relay presented.
        presented: String,
    },
    /// The certificate failed web PKI validation (unknown issuer, expired,
    /// wrong host name, …), or the handshake signature did not verify.
    /// The text names the reason and, where it helps, what to do.
    #[error("the relay's certificate is not valid: {0}")]
    Invalid(String),
}

/// Where the verifier of one client configuration records its last verdict.
///
/// Clones share the slot. The outcome is that of the most recent
/// certificate check made with the configuration, so keep one configuration
/// per connection attempt when attempts run concurrently.
#[derive(Debug, Clone, Default)]
pub struct TrustCheck {
    slot: Arc<Mutex<Option<TrustFailure>>>,
}

impl TrustCheck {
    /// Why the last certificate check refused the relay, or `None` if it
    /// accepted it (or none ran yet: the connect failed before TLS).
    pub fn outcome(&self) -> Option<TrustFailure> {
        // A panic elsewhere while holding the lock leaves a valid Option.
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, outcome: Option<TrustFailure>) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = outcome;
    }
}

/// A client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The pinned certificate file could not be read or is not PEM.
    #[error("cannot read pinned certificate file {}: {reason}; pass the relay's cert.pem (or its CA) to --ca", file.display())]
    PinUnreadable {
        /// The file given with `--ca`.
        file: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The pinned certificate file holds no `CERTIFICATE` block.
    #[error("no certificate found in {}; pass the relay's cert.pem (a PEM file with `-----BEGIN CERTIFICATE-----`) to --ca", file.display())]
    PinEmpty {
        /// The file given with `--ca`.
        file: PathBuf,
    },
    /// The platform has no usable CA roots.
    #[error("no trusted CA certificates found on this system ({reason}); pin the relay's certificate with --ca FILE or trust it on first use")]
    NoRoots {
        /// What the platform loader reported.
        reason: String,
    },
    /// rustls refused the configuration (a bug, not an input problem).
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The crypto provider lacks QUIC's initial cipher suite (a bug).
    #[error("QUIC configuration failed: {0}")]
    Quic(#[from] NoInitialCipherSuite),
}

/// A QUIC client configuration for connecting to `server` (`host:port` as
/// the user typed it; the key of the known-relays file in TOFU mode), with
/// ALPN `confab/1`, TLS 1.3 only, keep-alive [`KEEP_ALIVE`] and idle timeout
/// [`IDLE_TIMEOUT`], and the [`TrustCheck`] its verifier reports to.
///
/// Connect with [`server_host`]`(server)` as the server name: in `Roots`
/// mode, and for a private CA in `Pinned` mode, the certificate must be
/// valid for it.
pub fn client_config(
    mode: &TrustMode,
    server: &str,
) -> Result<(quinn::ClientConfig, TrustCheck), TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let policy = match mode {
        TrustMode::Roots => Policy::Roots(verifier::web_pki(platform_roots()?, &provider)?),
        TrustMode::Pinned(file) => {
            let certs = read_pinned(file)?;
            let mut roots = RootCertStore::empty();
            // A pinned self-signed leaf may not make a usable anchor; the
            // exact-match check covers it, so unusable ones are skipped.
            roots.add_parsable_certificates(certs.iter().cloned());
            let ca = match roots.is_empty() {
                true => None,
                false => Some(verifier::web_pki(roots, &provider)?),
            };
            Policy::Pinned {
                file: file.clone(),
                certs,
                ca,
            }
        }
        TrustMode::Tofu { file, accept_new } => Policy::Tofu {
            file: file.clone(),
            server: server.trim().to_owned(),
            accept_new: *accept_new,
        },
    };
    let check = TrustCheck::default();
    let verifier = Arc::new(RelayVerifier::new(
        policy,
        check.clone(),
        provider.signature_verification_algorithms,
    ));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous() // our verifier still verifies: see `verifier`
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];

    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(idle_timeout()));
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport));
    Ok((config, check))
}

/// [`IDLE_TIMEOUT`] as QUIC encodes it (milliseconds in a varint).
pub fn idle_timeout() -> quinn::IdleTimeout {
    let millis = u32::try_from(IDLE_TIMEOUT.as_millis()).unwrap_or(u32::MAX);
    quinn::IdleTimeout::from(quinn::VarInt::from_u32(millis))
}

/// The platform's CA roots; certificates it cannot parse are skipped, as
/// browsers do, but none at all is an error.
fn platform_roots() -> Result<RootCertStore, TrustError> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(loaded.certs);
    if roots.is_empty() {
        let reason = match loaded.errors.first() {
            Some(e) => e.to_string(),
            None => "the platform store is empty".to_owned(),
        };
        return Err(TrustError::NoRoots { reason });
    }
    Ok(roots)
}

/// Every certificate in a pinned PEM file.
fn read_pinned(file: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let unreadable = |reason: String| TrustError::PinUnreadable {
        file: file.to_owned(),
        reason,
    };
    let pem = std::fs::read(file).map_err(|e| unreadable(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(e.to_string()))?;
    if certs.is_empty() {
        return Err(TrustError::PinEmpty {
            file: file.to_owned(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_uppercase_hex_with_colons() {
        let fp = fingerprint(b"");
        assert_eq!(
            fp,
            "SHA256:E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:\
             27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
        assert_eq!(fingerprint(b"x").len(), 7 + 32 * 3 - 1);
    }

    #[test]
    fn server_host_strips_port_and_brackets() {
        assert_eq!(server_host("relay.example.com:4433"), "relay.example.com");
        assert_eq!(server_host("127.0.0.1:4433"), "127.0.0.1");
        assert_eq!(server_host("[::1]:4433"), "::1");
        assert_eq!(server_host("::1"), "::1");
        assert_eq!(server_host("localhost"), "localhost");
    }

    #[test]
    fn pinned_file_missing_or_empty_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = client_config(&TrustMode::Pinned(missing.clone()), "h:1").unwrap_err();
        assert!(matches!(err, TrustError::PinUnreadable { .. }), "{err}");
        assert!(err.to_string().contains("nope.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = client_config(&TrustMode::Pinned(empty), "h:1").unwrap_err();
        assert!(matches!(err, TrustError::PinEmpty { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }

    #[test]
    fn tofu_config_builds_without_touching_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/known_relays");
        let mode = TrustMode::Tofu {
            file: file.clone(),
            accept_new: false,
        };
        let (_config, check) = client_config(&mode, "127.0.0.1:4433").unwrap();
        assert_eq!(check.outcome(), None);
        assert!(!file.exists());
    }

    #[test]
    fn changed_message_says_what_happened_and_what_to_do() {
        let failure = TrustFailure::Changed {
            server: "127.0.0.1:4433".into(),
            known: "SHA256:AA".into(),
            presented: "SHA256:BB".into(),
            file: PathBuf::from("/home/u/.config/confab/known_relays"),
        };
        let text = failure.to_string();
        assert!(text.starts_with(
            "the relay at 127.0.0.1:4433 presented a different certificate than the one \
             remembered in /home/u/.config/confab/known_relays\n"
        ));
        assert!(text.contains("  remembered: SHA256:AA\n  presented:  SHA256:BB\n"));
        assert!(text.contains("remove the line for 127.0.0.1:4433"));
    }
}
