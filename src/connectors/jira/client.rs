//! The Jira API client: gouqi for the site's URLs and the credentials on
//! each request, its reqwest client for transport, every request through
//! [`Polite`] (see `connectors/http.rs`: `Retry-After` on 429 and on the
//! 503s Jira sends with one, backoff on 5xx and broken connections).
//!
//! Credentials come from the environment: `JIRA_EMAIL` and
//! `JIRA_API_TOKEN` (Jira Cloud, basic authentication), or
//! `JIRA_BEARER_TOKEN` (a Data Center personal access token). The site is
//! the source's `url`, else `JIRA_BASE_URL`.
//!
//! Cloud and Data Center search differently: Cloud's REST v3
//! `POST /search/jql` pages by `nextPageToken` (its older `/search`
//! answers 410), Data Center's REST v2 `POST /search` by `startAt` against
//! `total`. [`JiraClient::search`] hides the difference.

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

/// Which Jira the site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// Atlassian's cloud: REST v3, search by `nextPageToken`.
    Cloud,
    /// Self-hosted Data Center (or Server): REST v2, search by `startAt`.
    DataCenter,
}

impl Deployment {
    /// Told by the site and credentials when the configuration does not
    /// say: Atlassian's hosts are Cloud; elsewhere a personal access
    /// token means Data Center, an email and API token Cloud (a custom
    /// domain in front of Atlassian's cloud).
    pub fn detect(env: &JiraEnv) -> Deployment {
        let host = env
            .base
            .split("://")
            .nth(1)
            .unwrap_or_default()
            .split(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if host.ends_with(".atlassian.net") || host.ends_with(".jira.com") {
            return Deployment::Cloud;
        }
        match env.auth {
            JiraAuth::Bearer(_) => Deployment::DataCenter,
            JiraAuth::Basic { .. } => Deployment::Cloud,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Deployment::Cloud => "cloud",
            Deployment::DataCenter => "data-center",
        }
    }
}

/// One page of a search: the issues, and what asks for the next page.
pub struct SearchPage {
    pub issues: Vec<Value>,
    /// Cloud's `nextPageToken`, or Data Center's next `startAt`.
    pub next: Option<String>,
    /// The number of matches, where Jira says (Data Center).
    pub total: Option<u64>,
}

pub struct JiraClient {
    http: reqwest::Client,
    core: gouqi::core::ClientCore,
    pub polite: Polite,
    pub deployment: Deployment,
}

impl JiraClient {
    /// `deployment`: as configured, else [`Deployment::detect`].
    pub fn new(
        env: &JiraEnv,
        deployment: Option<Deployment>,
        rules: Politeness,
    ) -> Result<JiraClient, ConnectorError> {
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
            deployment: deployment.unwrap_or_else(|| Deployment::detect(env)),
        })
    }

    /// The URL of a REST path: v3 on Cloud, v2 on Data Center.
    pub fn url(&self, path: &str) -> String {
        let v = match self.deployment {
            Deployment::Cloud => "3",
            Deployment::DataCenter => "2",
        };
        self.core
            .build_versioned_url("api", Some(v), path)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| format!("{}rest/api/{v}{path}", self.core.host))
    }

    /// The search endpoint, for error messages and the completeness
    /// record.
    pub fn search_url(&self) -> String {
        match self.deployment {
            Deployment::Cloud => self.url("/search/jql"),
            Deployment::DataCenter => self.url("/search"),
        }
    }

    /// One page of issues matching `jql`, `next` from the previous page
    /// (none: the first).
    pub async fn search(
        &self,
        jql: &str,
        fields: &[String],
        changelog: bool,
        max: u64,
        next: Option<&str>,
    ) -> Result<SearchPage, ConnectorError> {
        let mut body = serde_json::json!({
            "jql": jql,
            "maxResults": max,
            "fields": fields,
        });
        match self.deployment {
            Deployment::Cloud => {
                if changelog {
                    body["expand"] = "changelog".into();
                }
                if let Some(t) = next {
                    body["nextPageToken"] = t.into();
                }
                let answer = self.post(&self.search_url(), &body).await?;
                let next = answer["nextPageToken"]
                    .as_str()
                    .filter(|_| answer["isLast"].as_bool() != Some(true))
                    .map(str::to_string);
                Ok(SearchPage {
                    issues: answer["issues"].as_array().cloned().unwrap_or_default(),
                    next,
                    total: None,
                })
            }
            Deployment::DataCenter => {
                let start: u64 = next.and_then(|n| n.parse().ok()).unwrap_or(0);
                body["startAt"] = start.into();
                if changelog {
                    body["expand"] = serde_json::json!(["changelog"]);
                }
                let answer = self.post(&self.search_url(), &body).await?;
                let issues = answer["issues"].as_array().cloned().unwrap_or_default();
                let total = answer["total"].as_u64();
                // The server may cap `maxResults` below what was asked:
                // the next page starts after what came back. An empty
                // page ends the walk whatever `total` says.
                let after = start + issues.len() as u64;
                let next = (!issues.is_empty() && total.is_some_and(|t| after < t))
                    .then(|| after.to_string());
                Ok(SearchPage {
                    issues,
                    next,
                    total,
                })
            }
        }
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
