//! The Jira API client: gouqi for the site's URLs and the credentials on
//! each request, its reqwest client for transport, every request through
//! [`Polite`] (see `connectors/http.rs`: `Retry-After` on 429 and on the
//! 503s Jira sends with one, backoff on 5xx and broken connections).
//!
//! Credentials come from the environment: `JIRA_EMAIL` and
//! `JIRA_API_TOKEN` (Jira Cloud, basic authentication), or
//! `JIRA_BEARER_TOKEN` (a Data Center personal access token). The site is
//! the source's `url`, else `JIRA_BASE_URL`.

use crate::connectors::ConnectorError;
use crate::connectors::http::{Broken, Polite, Politeness, Reply, Secret};
use serde_json::Value;

pub const BASE_VAR: &str = "JIRA_BASE_URL";
pub const EMAIL_VAR: &str = "JIRA_EMAIL";
pub const TOKEN_VAR: &str = "JIRA_API_TOKEN";
pub const BEARER_VAR: &str = "JIRA_BEARER_TOKEN";

#[derive(Debug, Clone)]
pub enum JiraAuth {
    /// Jira Cloud: an account's email and an API token.
    Basic { email: String, token: Secret },
    /// Jira Data Center: a personal access token.
    Bearer(Secret),
}

/// Where and as whom to reach Jira.
#[derive(Debug, Clone)]
pub struct JiraEnv {
    /// The site, e.g. `https://acme.atlassian.net`.
    pub base: String,
    pub auth: JiraAuth,
}

impl JiraEnv {
    /// Reads the environment; `url` (the source's own) wins over
    /// `JIRA_BASE_URL`. Missing credentials are an error saying what to
    /// set.
    pub fn from_env(url: Option<&str>) -> Result<JiraEnv, ConnectorError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let base = url
            .map(str::to_string)
            .or_else(|| var(BASE_VAR))
            .ok_or_else(|| ConnectorError::Setup {
                message: format!(
                    "no Jira site: set the source's `url` or {BASE_VAR} (e.g. https://acme.atlassian.net)"
                ),
            })?;
        if !crate::connectors::http::safe_for_credentials(&base) {
            return Err(ConnectorError::Setup {
                message: format!(
                    "Jira site `{base}` is not https:// (plain http only to localhost): the credentials would travel unencrypted"
                ),
            });
        }
        let auth = match (
            var(EMAIL_VAR),
            Secret::from_env(TOKEN_VAR),
            Secret::from_env(BEARER_VAR),
        ) {
            (Some(email), Some(token), _) => JiraAuth::Basic { email, token },
            (_, _, Some(token)) => JiraAuth::Bearer(token),
            (None, Some(_), None) => {
                return Err(ConnectorError::Setup {
                    message: format!(
                        "{TOKEN_VAR} is set but {EMAIL_VAR} (the account it belongs to) is not"
                    ),
                });
            }
            _ => {
                return Err(ConnectorError::Setup {
                    message: format!(
                        "no Jira credentials: set {EMAIL_VAR} and {TOKEN_VAR} (Jira Cloud), or {BEARER_VAR} (a Data Center personal access token)"
                    ),
                });
            }
        };
        Ok(JiraEnv { base, auth })
    }
}

pub struct JiraClient {
    http: reqwest::Client,
    core: gouqi::core::ClientCore,
    pub polite: Polite,
}

impl JiraClient {
    pub fn new(env: &JiraEnv, rules: Politeness) -> Result<JiraClient, ConnectorError> {
        // One TLS provider, chosen here (see DESIGN: two panic).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let credentials = match &env.auth {
            JiraAuth::Basic { email, token } => {
                gouqi::Credentials::Basic(email.clone(), token.expose().to_string())
            }
            JiraAuth::Bearer(token) => gouqi::Credentials::Bearer(token.expose().to_string()),
        };
        // A site under a path (`https://host/jira`) keeps it: URLs are
        // joined to the base, which must end with a slash.
        let base = format!("{}/", env.base.trim_end_matches('/'));
        let core = gouqi::core::ClientCore::new(base.as_str(), credentials).map_err(|e| {
            ConnectorError::Setup {
                message: format!("Jira site `{}`: {e}", env.base),
            }
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(20))
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| ConnectorError::Setup {
                message: format!("Jira client: {e}"),
            })?;
        Ok(JiraClient {
            http,
            core,
            polite: Polite::new(rules),
        })
    }

    /// The URL of a REST v3 path (`/search/jql`).
    pub fn url(&self, path: &str) -> String {
        self.core
            .build_versioned_url("api", Some("3"), path)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| format!("{}rest/api/3{path}", self.core.host))
    }

    /// The site, as URLs are made from it.
    pub fn site(&self) -> String {
        self.core.host.to_string()
    }

    /// Who reads (the account's email, or a digest of a bearer token):
    /// another account may see other issues.
    pub fn identity(&self) -> String {
        use sha2::Digest as _;
        match &self.core.credentials {
            gouqi::Credentials::Basic(user, _) => format!("basic:{user}"),
            gouqi::Credentials::Bearer(t) => {
                let d = sha2::Sha256::digest(t.as_bytes());
                format!(
                    "bearer:{}",
                    d.iter()
                        .take(8)
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                )
            }
            _ => "anonymous".into(),
        }
    }

    /// The browser address of an issue.
    pub fn browse(&self, key: &str) -> String {
        format!("{}browse/{key}", self.core.host)
    }

    pub async fn get(&self, url: &str) -> Result<Value, ConnectorError> {
        self.send(reqwest::Method::GET, url, None).await
    }

    pub async fn post(&self, url: &str, body: &Value) -> Result<Value, ConnectorError> {
        self.send(reqwest::Method::POST, url, Some(body)).await
    }

    /// One request, retried as [`Polite`] decides; the JSON answer.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let endpoint = format!("{method} {url}");
        let reply = self
            .polite
            .call(&endpoint, || async {
                let mut req = self
                    .core
                    .apply_credentials_async(self.http.request(method.clone(), url))
                    .header(reqwest::header::ACCEPT, "application/json");
                if let Some(b) = body {
                    req = req.json(b);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| Broken(format!("request failed: {}", without_url(&e))))?;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| Broken(format!("body cut short: {}", without_url(&e))))?
                    .to_vec();
                if (200..300).contains(&status)
                    && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err()
                {
                    return Err(Broken(format!(
                        "HTTP {status} with a body that is not whole JSON ({} bytes)",
                        bytes.len()
                    )));
                }
                Ok(Reply {
                    status,
                    headers,
                    body: bytes,
                })
            })
            .await?;
        serde_json::from_slice(&reply.body).map_err(|e| ConnectorError::Http {
            endpoint,
            status: reply.status,
            message: format!("unexpected body: {e}"),
        })
    }
}

/// A transport error without its URL (the caller names the endpoint).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" ({u})"), "").replace(u.as_str(), "");
    }
    s
}
