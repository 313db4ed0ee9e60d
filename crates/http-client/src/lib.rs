//! The one outbound HTTP client of serin: webhooks, metric providers, alerts and the
//! load tester all build their `reqwest::Client` here, so TLS, timeouts and proxies
//! behave the same everywhere.
//!
//! rustls runs on the `ring` provider (the one kube-rs already links), so no second
//! crypto library is built.
//!
//! Proxies: an explicit proxy URL wins; otherwise the standard `HTTPS_PROXY`,
//! `HTTP_PROXY` and `NO_PROXY` variables (or their lower-case forms) apply as in Go
//! programs such as Flagger, and loopback addresses and `localhost` always go
//! direct, as Go does.

use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid proxy URL {url}: {source}")]
    Proxy { url: String, source: reqwest::Error },
    #[error("cannot build HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] rustls::Error),
}

/// How a client should behave. `Default` gives a 10 s timeout, certificate
/// verification on, and the environment's proxies.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub timeout: Duration,
    pub insecure_skip_verify: bool,
    pub proxy: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            insecure_skip_verify: false,
            proxy: None,
        }
    }
}

/// The proxy settings of the environment, as Go's `http.ProxyFromEnvironment`
/// reads them: upper case first, then lower case; `ALL_PROXY` is not read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `HTTP_PROXY`: for `http://` URLs.
    pub http: Option<String>,
    /// `HTTPS_PROXY`: for `https://` URLs.
    pub https: Option<String>,
    /// `NO_PROXY`: comma-separated hosts and domains (with their subdomains), IPs
    /// and CIDRs; `*` for all.
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// The settings of this process's environment.
    pub fn from_env() -> Self {
        let var = |upper: &str, lower: &str| {
            [upper, lower]
                .into_iter()
                .filter_map(|k| std::env::var(k).ok())
                .find(|v| !v.trim().is_empty())
        };
        Self {
            http: var("HTTP_PROXY", "http_proxy"),
            https: var("HTTPS_PROXY", "https_proxy"),
            no_proxy: var("NO_PROXY", "no_proxy"),
        }
    }

    /// The hosts that never go through a proxy: `NO_PROXY`, plus loopback and
    /// `localhost`, which Go never proxies.
    fn no_proxy_list(&self) -> String {
        let mut list = String::from("localhost,127.0.0.0/8,::1");
        if let Some(n) = self.no_proxy.as_deref().filter(|n| !n.trim().is_empty()) {
            list.push(',');
            list.push_str(n);
        }
        list
    }
}

/// Builds a client with the given options; without `options.proxy`, the
/// environment's proxies apply (see [`ProxyEnv`]).
pub fn client(options: &ClientOptions) -> Result<reqwest::Client, ClientError> {
    client_with_env(options, Some(&ProxyEnv::from_env()))
}

/// [`client`] that ignores the environment's proxies (the load tester's `hey`,
/// which never reads them either).
pub fn client_without_env_proxy(options: &ClientOptions) -> Result<reqwest::Client, ClientError> {
    client_with_env(options, None)
}

/// [`client`] with the given proxy environment (`None`: no proxy unless
/// `options.proxy` names one).
pub fn client_with_env(
    options: &ClientOptions,
    env: Option<&ProxyEnv>,
) -> Result<reqwest::Client, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?;
    let tls = if options.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        .user_agent(concat!("serin/", env!("CARGO_PKG_VERSION")));
    b = match &options.proxy {
        Some(url) if !url.is_empty() => {
            let proxy = reqwest::Proxy::all(url).map_err(|source| ClientError::Proxy {
                url: url.clone(),
                source,
            })?;
            b.proxy(proxy)
        }
        _ => {
            // reqwest's own environment lookup is turned off: the variables are
            // read once, with Go's rules, so every client behaves the same.
            b = b.no_proxy();
            if let Some(env) = env {
                let no_proxy = reqwest::NoProxy::from_string(&env.no_proxy_list());
                for (url, scheme_http) in [(&env.http, true), (&env.https, false)] {
                    let Some(url) = url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
                        continue;
                    };
                    let proxy = if scheme_http {
                        reqwest::Proxy::http(url)
                    } else {
                        reqwest::Proxy::https(url)
                    }
                    .map_err(|source| ClientError::Proxy {
                        url: url.to_string(),
                        source,
                    })?
                    .no_proxy(no_proxy.clone());
                    b = b.proxy(proxy);
                }
            }
            b
        }
    };
    b.build().map_err(ClientError::Build)
}

/// The most serin reads of a webhook's answer (only its start is shown in a message).
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;
/// The most serin reads of a metric provider's answer (an instant query's result).
pub const MAX_METRICS_BODY: usize = 4 * 1024 * 1024;
/// The most serin reads of an alert receiver's answer.
pub const MAX_ALERT_BODY: usize = 64 * 1024;

/// The start of a response body, read up to a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitedBody {
    pub bytes: Vec<u8>,
    /// The body went on past the limit; the rest was not read.
    pub truncated: bool,
}

/// Reads at most `limit` bytes of `response`'s body and stops there: the connection is
/// dropped rather than drained, so a hostile or broken server answering with gigabytes
/// costs `limit` bytes of memory. Slow bodies are bounded in time by the client's
/// timeout ([`ClientOptions::timeout`]), which covers reading the body.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<LimitedBody, reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(LimitedBody {
                bytes,
                truncated: true,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(LimitedBody {
        bytes,
        truncated: false,
    })
}

/// Verifier used only when a user sets `insecureSkipVerify: true`.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
