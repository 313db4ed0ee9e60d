//! The `stackdriver` provider: Google Cloud Monitoring's `timeSeries.query` (MQL),
//! the REST form of the `QueryTimeSeries` call Flagger makes:
//! `POST /v3/projects/PROJECT/timeSeries:query` with `{"query": ...}`; the value is
//! the first value of the first point of the first time series. The Secret holds
//! `project` (required when `provider.secretRef` is set) and, optionally,
//! `serviceAccountKey` (a service account's JSON key, exchanged for an access token
//! with a signed JWT); without a key, the token (and, without a Secret, the project)
//! come from the GKE/GCE metadata server, as Google's default credentials do. The
//! availability check sends an empty query, which Cloud Monitoring refuses as an
//! invalid argument when it is there and the credentials work.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{Answer, Endpoint, join_path, required_secret, secret_value};
use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
};

const PROVIDER: &str = "Stackdriver";
pub const DEFAULT_ADDRESS: &str = "https://monitoring.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/monitoring.read";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const METADATA: &str = "http://metadata.google.internal/computeMetadata/v1";

/// A service account key, the fields serin uses.
#[derive(Deserialize, Clone)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

pub struct StackdriverProvider {
    endpoint: Endpoint,
    base: Url,
    project: Option<String>,
    key: Option<(ServiceAccountKey, ring::signature::RsaKeyPair)>,
    metadata: String,
}

impl StackdriverProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let address = settings
            .address
            .clone()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADDRESS.into());
        let (endpoint, base) = Endpoint::new(
            PROVIDER,
            &address,
            settings.timeout,
            settings.insecure_skip_verify,
        )?;
        let invalid = |reason: String| ProviderConfigError::Invalid {
            provider: PROVIDER.into(),
            reason,
        };
        let (mut project, mut key) = (None, None);
        if settings.secret_name.is_some() {
            project = Some(required_secret(PROVIDER, settings.secret(), "project")?);
            if let Some(text) = secret_value(PROVIDER, settings.secret(), "serviceAccountKey")? {
                let k: ServiceAccountKey = serde_json::from_str(&text).map_err(|e| {
                    invalid(format!(
                        "serviceAccountKey is not a service account key: {e}"
                    ))
                })?;
                let der = pem_private_key(&k.private_key)
                    .map_err(|e| invalid(format!("serviceAccountKey private_key: {e}")))?;
                let pair = ring::signature::RsaKeyPair::from_pkcs8(&der)
                    .map_err(|e| invalid(format!("serviceAccountKey private_key: {e}")))?;
                key = Some((k, pair));
            }
        }
        let metadata = std::env::var("GCE_METADATA_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .map(|h| format!("http://{h}/computeMetadata/v1"))
            .unwrap_or_else(|| METADATA.into());
        Ok(Self {
            endpoint,
            base,
            project,
            key,
            metadata,
        })
    }

    fn failed(&self, query: &str, reason: String) -> ProviderError {
        ProviderError::Request {
            provider: PROVIDER.into(),
            address: self.endpoint.address.clone(),
            query: query.into(),
            reason,
        }
    }

    async fn access_token(&self, query: &str) -> Result<String, ProviderError> {
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
        }
        let request = match &self.key {
            Some((key, pair)) => {
                let token_uri = key
                    .token_uri
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TOKEN_URI.into());
                let assertion = jwt(key, pair, &token_uri).map_err(|e| self.failed(query, e))?;
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                    .append_pair("assertion", &assertion)
                    .finish();
                self.endpoint
                    .client
                    .post(token_uri)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(form)
            }
            None => self
                .endpoint
                .client
                .get(format!(
                    "{}/instance/service-accounts/default/token",
                    self.metadata
                ))
                .header("Metadata-Flavor", "Google"),
        };
        let answer = self.endpoint.send(request, query).await?;
        if !answer.is_success() {
            return Err(self.failed(
                query,
                format!("no access token: HTTP {}: {}", answer.status, answer.text()),
            ));
        }
        let token: Token = serde_json::from_slice(&answer.body)
            .map_err(|e| self.failed(query, format!("no access token: {e}")))?;
        Ok(token.access_token)
    }

    async fn project(&self, query: &str) -> Result<String, ProviderError> {
        if let Some(p) = &self.project {
            return Ok(p.clone());
        }
        let request = self
            .endpoint
            .client
            .get(format!("{}/project/project-id", self.metadata))
            .header("Metadata-Flavor", "Google");
        let answer = self.endpoint.send(request, query).await?;
        let project = String::from_utf8_lossy(&answer.body).trim().to_string();
        if !answer.is_success() || project.is_empty() {
            return Err(self.failed(
                query,
                "no project: set the Secret's project, or run on GKE/GCE".into(),
            ));
        }
        Ok(project)
    }

    async fn call(&self, mql: &str, shown: &str) -> Result<Answer, ProviderError> {
        let project = self.project(shown).await?;
        let token = self.access_token(shown).await?;
        let url = join_path(
            &self.base,
            &format!("/v3/projects/{project}/timeSeries:query"),
        );
        let request = self
            .endpoint
            .client
            .post(url)
            .bearer_auth(token)
            .json(&json!({"query": mql}));
        self.endpoint.send(request, shown).await
    }

    fn api_error(&self, query: &str, answer: &Answer) -> ProviderError {
        #[derive(Deserialize)]
        struct Body {
            error: Detail,
        }
        #[derive(Deserialize)]
        struct Detail {
            #[serde(default)]
            status: Option<String>,
            #[serde(default)]
            message: String,
        }
        match serde_json::from_slice::<Body>(&answer.body) {
            Ok(b) => self.endpoint.query_error(
                query,
                b.error
                    .status
                    .unwrap_or_else(|| format!("HTTP {}", answer.status)),
                b.error.message,
            ),
            Err(_) => self.endpoint.http_error(query, answer),
        }
    }

    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        let shown = crate::provider::collapse_whitespace(query);
        let answer = self.call(query.trim(), &shown).await?;
        if !answer.is_success() {
            return Err(self.api_error(&shown, &answer));
        }
        let body: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            self.endpoint
                .decode(&shown, format!("{e} in {}", answer.text()))
        })?;
        let value = body
            .pointer("/timeSeriesData/0/pointData/0/values/0")
            .cloned();
        let Some(value) = value else {
            return Err(self.endpoint.no_data(&shown));
        };
        let number = if let Some(v) = value.get("doubleValue") {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        } else if let Some(v) = value.get("int64Value") {
            v.as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .or_else(|| v.as_i64())
                .map(|i| i as f64)
        } else {
            None
        };
        match number {
            Some(v) => self.endpoint.finite(&shown, v),
            None => Err(self.endpoint.decode(
                &shown,
                format!("a point value that is not a number: {value}"),
            )),
        }
    }

    pub async fn online(&self) -> Result<(), ProviderError> {
        let what = "timeSeries.query (availability check)";
        let answer = self.call("", what).await?;
        if answer.is_success() || answer.status == 400 {
            Ok(())
        } else {
            Err(self.api_error(what, &answer))
        }
    }
}

/// The DER bytes of a PEM `PRIVATE KEY` (PKCS#8) block.
fn pem_private_key(pem: &str) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map(|k| k.secret_pkcs8_der().to_vec())
        .map_err(|e| format!("not a PEM PKCS#8 private key: {e}"))
}

/// The signed JWT (RS256) a service account trades for an access token.
fn jwt(
    key: &ServiceAccountKey,
    pair: &ring::signature::RsaKeyPair,
    audience: &str,
) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": key.client_email, "scope": SCOPE, "aud": audience,
               "iat": now, "exp": now + 3600})
        .to_string(),
    );
    let message = format!("{header}.{claims}");
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        message.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "cannot sign the token request".to_string())?;
    Ok(format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

impl MetricsProvider for StackdriverProvider {
    fn run_query<'a>(&'a self, query: &'a str) -> ProviderFuture<'a, Result<f64, ProviderError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> ProviderFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }

    fn describe(&self) -> String {
        format!("{PROVIDER} {}", self.endpoint.address)
    }
}
