//! The rustls certificate verifier behind every [`TrustMode`](super::TrustMode).
//!
//! It replaces only the decision "is this certificate the relay's?"; the
//! handshake signature is always checked with the provider's algorithms, so
//! a peer that merely copies a trusted certificate cannot finish the
//! handshake.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme,
};

use super::{fingerprint, known, TrustCheck, TrustError, TrustFailure};

/// What a certificate is checked against.
#[derive(Debug)]
pub(super) enum Policy {
    /// Web PKI against the platform's roots.
    Roots(Arc<WebPkiServerVerifier>),
    /// Exact match with one of `certs`, else web PKI with them as roots.
    Pinned {
        file: PathBuf,
        certs: Vec<CertificateDer<'static>>,
        /// `None` when no pinned certificate can serve as a trust anchor.
        ca: Option<Arc<WebPkiServerVerifier>>,
    },
    /// The known-relays file, read at each check so that a [`known::remember`]
    /// between two connects with the same configuration takes effect.
    Tofu {
        file: PathBuf,
        server: String,
        accept_new: bool,
    },
}

/// A standard web PKI verifier over `roots`.
pub(super) fn web_pki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TrustError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TrustError::Tls(Error::General(e.to_string())))
}

#[derive(Debug)]
pub(super) struct RelayVerifier {
    policy: Policy,
    check: TrustCheck,
    algorithms: WebPkiSupportedAlgorithms,
    /// Fingerprints of new relays accepted under `accept_new`, written to the
    /// known-relays file only once the handshake signature proves the relay
    /// holds the key: a peer replaying someone else's certificate must not
    /// get it remembered.
    pending: Mutex<HashSet<String>>,
}

impl RelayVerifier {
    pub(super) fn new(
        policy: Policy,
        check: TrustCheck,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Self {
        Self {
            policy,
            check,
            algorithms,
            pending: Mutex::new(HashSet::new()),
        }
    }

    /// The verdict of the policy, before the handshake signature.
    fn judge(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), TrustFailure> {
        let presented = fingerprint(end_entity);
        match &self.policy {
            Policy::Roots(webpki) => webpki
                .verify_server_cert(end_entity, intermediates, server_name, &[], now)
                .map(|_| ())
                .map_err(|e| {
                    let reason = match e {
                        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                            "it is not signed by a CA this system trusts".to_owned()
                        }
                        other => other.to_string(),
                    };
                    TrustFailure::Invalid(format!(
                        "{reason}\n  presented: {presented}\n\
                         If the relay uses a self-signed certificate, pin it with --ca (its \
                         cert.pem) or trust it on first use."
                    ))
                }),
            Policy::Pinned { file, certs, ca } => {
                // The exact certificate is the identity: host name and
                // validity dates add nothing to a byte-for-byte match.
                if certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
                    return Ok(());
                }
                let mismatch = || TrustFailure::PinMismatch {
                    file: file.clone(),
                    expected: certs.iter().map(|c| fingerprint(c)).collect(),
                    presented: presented.clone(),
                };
                let Some(ca) = ca else {
                    return Err(mismatch());
                };
                match ca.verify_server_cert(end_entity, intermediates, server_name, &[], now) {
                    Ok(_) => Ok(()),
                    // Wrong name or dates: say that rather than "mismatch",
                    // it is what the operator has to fix.
                    Err(Error::InvalidCertificate(why)) if wrong_name_or_dates(&why) => {
                        Err(TrustFailure::Invalid(format!(
                            "{} (checked against the CA certificates in {})",
                            Error::InvalidCertificate(why),
                            file.display()
                        )))
                    }
                    // Any other failure means the chain does not lead to a
                    // pinned certificate (unknown issuer, or an issuer with
                    // the same name but another key: every `gen-cert`
                    // certificate is named "confab relay").
                    Err(_) => Err(mismatch()),
                }
            }
            Policy::Tofu {
                file,
                server,
                accept_new,
            } => {
                let known = known::lookup(file, server).map_err(|e| {
                    TrustFailure::Invalid(format!(
                        "cannot read the known-relays file {}: {e}",
                        file.display()
                    ))
                })?;
                // Like ssh: the remembered key is the identity, so host name
                // and validity dates are not checked.
                if known.contains(&presented) {
                    Ok(())
                } else if !known.is_empty() {
                    Err(TrustFailure::Changed {
                        server: server.clone(),
                        known: known.join(", "),
                        presented,
                        file: file.clone(),
                    })
                } else if *accept_new {
                    self.pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(presented);
                    Ok(())
                } else {
                    Err(TrustFailure::Unknown {
                        server: server.clone(),
                        fingerprint: presented,
                        file: file.clone(),
                    })
                }
            }
        }
    }

    /// Record a relay accepted under `accept_new`, now that it proved it
    /// holds the key.
    fn record_pending(&self, cert: &CertificateDer<'_>) {
        let Policy::Tofu { file, server, .. } = &self.policy else {
            return;
        };
        let fp = fingerprint(cert);
        let was_pending = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&fp);
        if !was_pending {
            return;
        }
        match known::remember(file, server, &fp) {
            Ok(()) => {
                tracing::info!(%server, fingerprint = %fp, file = %file.display(), "remembered new relay")
            }
            // The relay is still the one the user chose to accept; failing
            // to remember it only means being asked again next time.
            Err(e) => {
                tracing::warn!(%server, file = %file.display(), error = %e, "cannot remember relay")
            }
        }
    }
}

/// Failures of a certificate that may well chain to the pinned CA but is
/// not valid for this name or at this time.
fn wrong_name_or_dates(why: &CertificateError) -> bool {
    matches!(
        why,
        CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. }
            | CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. }
    )
}

/// A [`TrustFailure`] as rustls carries it. rustls formats the error it
/// wraps with `Debug`, so `Debug` here is the first line of the message
/// (a derived `Debug` would show struct syntax to the user).
struct Refusal(TrustFailure);

impl std::fmt::Debug for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.to_string();
        f.write_str(text.lines().next().unwrap_or_default())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refusal {}

impl ServerCertVerifier for RelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.judge(end_entity, intermediates, server_name, now) {
            Ok(()) => {
                self.check.record(None);
                Ok(ServerCertVerified::assertion())
            }
            Err(failure) => {
                self.check.record(Some(failure.clone()));
                // The first line travels inside the connection error too,
                // for callers that never look at the `TrustCheck`.
                Err(Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(Refusal(failure))),
                )))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // The configuration offers TLS 1.3 only (QUIC requires it), so
        // this is never reached; refuse rather than half-verify.
        Err(Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms) {
            Ok(valid) => {
                self.record_pending(cert);
                Ok(valid)
            }
            Err(e) => {
                self.check.record(Some(TrustFailure::Invalid(format!(
                    "the handshake signature does not verify with the certificate ({e}): \
                     the peer does not hold the certificate's key"
                ))));
                Err(e)
            }
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    //! The policy decisions, without a handshake. End-to-end tests with real
    //! certificates and a QUIC server live in the relay's `cert` module,
    //! which can generate certificates.

    use super::*;
    use std::path::Path;

    fn tofu(file: &Path, accept_new: bool) -> (RelayVerifier, TrustCheck) {
        let check = TrustCheck::default();
        let policy = Policy::Tofu {
            file: file.to_owned(),
            server: "127.0.0.1:4433".into(),
            accept_new,
        };
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        (RelayVerifier::new(policy, check.clone(), algorithms), check)
    }

    fn verify(v: &RelayVerifier, cert: &[u8]) -> Result<ServerCertVerified, Error> {
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let cert = CertificateDer::from(cert.to_vec());
        v.verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
    }

    #[test]
    fn tofu_unknown_is_refused_then_accepted_after_remember() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_relays");
        let (v, check) = tofu(&file, false);
        let err = verify(&v, b"cert one").unwrap_err();
        assert!(err.to_string().contains("is not known yet"), "{err}");
        let Some(TrustFailure::Unknown {
            server,
            fingerprint: fp,
            ..
        }) = check.outcome()
        else {
            panic!("expected Unknown, got {:?}", check.outcome());
        };
        assert_eq!(fp, fingerprint(b"cert one"));
        assert!(!file.exists(), "refusing must not write");

        known::remember(&file, &server, &fp).unwrap();
        verify(&v, b"cert one").unwrap();
        assert_eq!(check.outcome(), None);
    }

    #[test]
    fn tofu_changed_is_refused_and_the_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_relays");
        known::remember(&file, "127.0.0.1:4433", &fingerprint(b"cert one")).unwrap();
        let before = std::fs::read(&file).unwrap();
        for accept_new in [false, true] {
            let (v, check) = tofu(&file, accept_new);
            let err = verify(&v, b"cert two").unwrap_err();
            assert!(err
                .to_string()
                .contains("presented a different certificate"));
            assert!(matches!(
                check.outcome(),
                Some(TrustFailure::Changed { known, presented, .. })
                    if known == fingerprint(b"cert one") && presented == fingerprint(b"cert two")
            ));
            v.record_pending(&CertificateDer::from(b"cert two".to_vec()));
            assert_eq!(std::fs::read(&file).unwrap(), before);
        }
    }

    #[test]
    fn tofu_accept_new_records_only_after_the_signature() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_relays");
        let (v, check) = tofu(&file, true);
        verify(&v, b"cert one").unwrap();
        assert_eq!(check.outcome(), None);
        assert!(!file.exists(), "recorded before the key was proven");
        v.record_pending(&CertificateDer::from(b"cert one".to_vec()));
        assert_eq!(
            known::lookup(&file, "127.0.0.1:4433").unwrap(),
            vec![fingerprint(b"cert one")]
        );
    }
}
