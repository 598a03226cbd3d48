//! The GitHub API client: octocrab for transport and authentication (a
//! token, or a GitHub App exchanged for an installation token), every
//! request through [`Polite`] (see `connectors/http.rs`).
//!
//! Where the API is reached comes from the environment, as GitHub Actions
//! sets it: `GITHUB_API_URL` (default `https://api.github.com`), and
//! `GITHUB_GRAPHQL_URL` (default: derived from the API URL, `/api/v3` of a
//! GitHub Enterprise Server becoming `/api/graphql`).

use crate::connectors::ConnectorError;
use crate::connectors::http::{Broken, Polite, Politeness, Reply, Secret};
use http_body_util::BodyExt as _;

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A token (`GITHUB_TOKEN`): a workflow's own token reads only the
    /// repository it runs in.
    Token(Secret),
    /// A GitHub App installation, for reads across an organization.
    App {
        app_id: u64,
        installation_id: u64,
        private_key: Secret,
        /// An installation token lasts an hour: it is exchanged again once
        /// it is this old ([`TOKEN_REFRESH`] unless a test says otherwise).
        refresh_after: std::time::Duration,
    },
}

/// When an installation token (valid for an hour) is replaced.
pub const TOKEN_REFRESH: std::time::Duration = std::time::Duration::from_secs(50 * 60);

/// Where and as whom to reach GitHub.
#[derive(Debug, Clone)]
pub struct GithubEnv {
    pub api: String,
    pub graphql: String,
    pub auth: Auth,
}

/// The environment variables read, named in errors.
pub const TOKEN_VAR: &str = "GITHUB_TOKEN";
pub const APP_ID_VAR: &str = "GITHUB_APP_ID";
pub const INSTALLATION_VAR: &str = "GITHUB_APP_INSTALLATION_ID";
pub const KEY_VAR: &str = "GITHUB_APP_PRIVATE_KEY";

impl GithubEnv {
    /// Reads the environment. An App's three variables win over a token;
    /// neither is an error that says what to set.
    pub fn from_env() -> Result<GithubEnv, ConnectorError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let api = var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
        let api = api.trim_end_matches('/').to_string();
        let graphql = var("GITHUB_GRAPHQL_URL").unwrap_or_else(|| graphql_url(&api));
        let app = (var(APP_ID_VAR), var(INSTALLATION_VAR));
        let auth = match app {
            (Some(id), Some(inst)) => {
                let number = |name: &str, v: &str| {
                    v.trim().parse::<u64>().map_err(|_| ConnectorError::Setup {
                        message: format!("{name} must be a number, not `{v}`"),
                    })
                };
                let private_key = Secret::from_env(KEY_VAR).ok_or_else(|| ConnectorError::Setup {
                    message: format!("{APP_ID_VAR} is set but {KEY_VAR} (the App's PEM private key) is not"),
                })?;
                Auth::App {
                    app_id: number(APP_ID_VAR, &id)?,
                    installation_id: number(INSTALLATION_VAR, &inst)?,
                    private_key,
                    refresh_after: TOKEN_REFRESH,
                }
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConnectorError::Setup {
                    message: format!(
                        "a GitHub App needs both {APP_ID_VAR} and {INSTALLATION_VAR} (and {KEY_VAR})"
                    ),
                });
            }
            (None, None) => Auth::Token(Secret::from_env(TOKEN_VAR).ok_or_else(|| {
                ConnectorError::Setup {
                    message: format!(
                        "no GitHub credentials: set {TOKEN_VAR}, or {APP_ID_VAR}, {INSTALLATION_VAR} and {KEY_VAR} for a GitHub App (a workflow's own token reads only its own repository)"
                    ),
                }
            })?),
        };
        Ok(GithubEnv { api, graphql, auth })
    }
}

/// The GraphQL endpoint that belongs with a REST API base.
pub fn graphql_url(api: &str) -> String {
    match api.strip_suffix("/api/v3") {
        Some(host) => format!("{host}/api/graphql"),
        None => format!("{api}/graphql"),
    }
}

pub struct GithubClient {
    session: tokio::sync::RwLock<Session>,
    env: GithubEnv,
    pub polite: Polite,
    api: String,
    graphql: String,
}

/// The client as authenticated now, and since when.
struct Session {
    octo: octocrab::Octocrab,
    since: std::time::Instant,
}

/// A client of the API base with the given timeouts, not yet
/// authenticated.
fn builder(
    api: &str,
) -> Result<
    octocrab::OctocrabBuilder<
        octocrab::NoSvc,
        octocrab::DefaultOctocrabBuilderConfig,
        octocrab::NoAuth,
        octocrab::NotLayerReady,
    >,
    octocrab::Error,
> {
    Ok(octocrab::Octocrab::builder()
        .base_uri(api)?
        .set_connect_timeout(Some(std::time::Duration::from_secs(20)))
        .set_read_timeout(Some(std::time::Duration::from_secs(60))))
}

/// Exchanges a GitHub App's key for an installation token (a JWT signed
/// with the key proves the App; the token then reads as the installation).
async fn exchange(
    api: &str,
    app_id: u64,
    installation_id: u64,
    private_key: &Secret,
) -> Result<Secret, String> {
    let key = octocrab::jsonwebtoken::EncodingKey::from_rsa_pem(private_key.expose().as_bytes())
        .map_err(|e| format!("{KEY_VAR} is not a PEM RSA private key: {e}"))?;
    let failed = |e: octocrab::Error| {
        format!(
            "POST {api}/app/installations/{installation_id}/access_tokens: exchanging GitHub App {app_id}'s key for an installation token failed: {e}"
        )
    };
    let app = builder(api)
        .map_err(failed)?
        .app(app_id.into(), key)
        .build()
        .map_err(failed)?;
    let (_, token) = app
        .installation_and_token(installation_id.into())
        .await
        .map_err(failed)?;
    use octocrab::secrecy::ExposeSecret as _;
    let token = Secret::new(token.expose_secret().to_string());
    if crate::actions::in_actions() {
        eprintln!("::add-mask::{}", token.expose());
    }
    Ok(token)
}

/// A session as `auth` (a GitHub App's key exchanged for a token).
async fn session(api: &str, auth: &Auth) -> Result<Session, String> {
    let token = match auth {
        Auth::Token(t) => t.clone(),
        Auth::App {
            app_id,
            installation_id,
            private_key,
            ..
        } => exchange(api, *app_id, *installation_id, private_key).await?,
    };
    let octo = builder(api)
        .and_then(|b| b.personal_token(token.expose().to_string()).build())
        .map_err(|e| format!("GitHub client for {api}: {e}"))?;
    Ok(Session {
        octo,
        since: std::time::Instant::now(),
    })
}

impl GithubClient {
    /// A client for `env`. A GitHub App's key is exchanged for an
    /// installation token here, and again whenever the token is near the
    /// end of its hour: every request (REST at the API base, GraphQL at
    /// its own URL, on GitHub Enterprise Server a different path) carries
    /// the current token.
    pub async fn connect(
        env: &GithubEnv,
        rules: Politeness,
    ) -> Result<GithubClient, ConnectorError> {
        // One TLS provider, chosen here: with two compiled in, rustls
        // cannot pick and some clients panic.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let first = session(&env.api, &env.auth)
            .await
            .map_err(|message| ConnectorError::Setup { message })?;
        Ok(GithubClient {
            session: tokio::sync::RwLock::new(first),
            env: env.clone(),
            polite: Polite::new(rules),
            api: env.api.clone(),
            graphql: env.graphql.clone(),
        })
    }

    /// The client to send with, and since when its token is in use: an
    /// App's token is replaced first when it is old (by one request; the
    /// others wait for it). Taken for each attempt, so that a request
    /// retried after a long wait goes out with the current token.
    async fn octo(&self) -> Result<(octocrab::Octocrab, std::time::Instant), ConnectorError> {
        if let Auth::App { refresh_after, .. } = &self.env.auth {
            let stale = |s: &Session| s.since.elapsed() >= *refresh_after;
            if stale(&*self.session.read().await) {
                let mut s = self.session.write().await;
                if stale(&s) {
                    *s = session(&self.env.api, &self.env.auth)
                        .await
                        .map_err(|message| ConnectorError::Transport {
                            endpoint: format!(
                                "POST {}/app/installations/.../access_tokens",
                                self.env.api
                            ),
                            attempts: 1,
                            message,
                        })?;
                    tracing::debug!("GitHub App installation token renewed");
                }
                return Ok((s.octo.clone(), s.since));
            }
        }
        let s = self.session.read().await;
        Ok((s.octo.clone(), s.since))
    }

    /// A 401 to an App's token that has been in use a while (revoked, or
    /// expired early): the token is renewed and the request tried again.
    /// A 401 to a token just obtained is the answer.
    async fn renewed_on_401(
        &self,
        reply: Reply,
        since: std::time::Instant,
    ) -> Result<Reply, Broken> {
        if reply.status != 401 || !matches!(self.env.auth, Auth::App { .. }) {
            return Ok(reply);
        }
        let mut s = self.session.write().await;
        if s.since != since {
            // Renewed meanwhile: try again with the new one.
            return Err(Broken("HTTP 401 to a token renewed since".into()));
        }
        if since.elapsed() < std::time::Duration::from_secs(60) {
            return Ok(reply);
        }
        *s = session(&self.env.api, &self.env.auth)
            .await
            .map_err(Broken)?;
        Err(Broken(
            "HTTP 401: the installation token was refused; renewed it".into(),
        ))
    }

    pub fn graphql_url(&self) -> &str {
        &self.graphql
    }

    /// A GraphQL query; its `data`. Errors in the answer fail the query
    /// with their messages, except a spent rate limit, which is waited
    /// out like a REST one.
    pub async fn graphql(
        &self,
        query: &str,
        variables: serde_json::Value,
    ) -> Result<serde_json::Value, ConnectorError> {
        let endpoint = format!("POST {}", self.graphql);
        let body = serde_json::json!({"query": query, "variables": variables});
        let reply = self
            .polite
            .call(&endpoint, || async {
                let (octo, since) = self.octo().await.map_err(|e| Broken(format!("{e}")))?;
                let resp = octo
                    ._post(self.graphql.as_str(), Some(&body))
                    .await
                    .map_err(|e| Broken(format!("request failed: {e}")))?;
                let mut reply = self.renewed_on_401(read(resp).await?, since).await?;
                if reply.status == 200 {
                    let doc: serde_json::Value =
                        serde_json::from_slice(&reply.body).map_err(|_| {
                            Broken("HTTP 200 with a body that is not whole JSON".into())
                        })?;
                    let limited = doc["errors"]
                        .as_array()
                        .is_some_and(|errs| errs.iter().any(|e| e["type"] == "RATE_LIMITED"));
                    if limited {
                        // Seen as what it is, so that the wait applies.
                        reply.status = 429;
                    }
                }
                Ok(reply)
            })
            .await?;
        let mut doc: serde_json::Value =
            serde_json::from_slice(&reply.body).map_err(|e| ConnectorError::Http {
                endpoint: endpoint.clone(),
                status: reply.status,
                message: format!("unexpected body: {e}"),
            })?;
        if let Some(errors) = doc["errors"].as_array().filter(|e| !e.is_empty()) {
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect();
            // GraphQL answers 200 whatever went wrong; its error types say
            // what REST would have: a permission the token lacks, or a
            // repository it may not see.
            let typed = |t: &str| errors.iter().any(|e| e["type"] == t);
            let status = if typed("FORBIDDEN") {
                403
            } else if typed("NOT_FOUND") {
                404
            } else {
                reply.status
            };
            return Err(ConnectorError::Http {
                endpoint,
                status,
                message: format!("GraphQL: {}", messages.join("; ")),
            });
        }
        Ok(doc["data"].take())
    }

    /// The URL of an API path (`/orgs/x/repos?...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// A GET, conditional when `etag` is given (a 304 comes back as is).
    /// A success whose body is not JSON was cut short: it is retried.
    pub async fn get(&self, url: &str, etag: Option<&str>) -> Result<Reply, ConnectorError> {
        let endpoint = format!("GET {url}");
        self.polite
            .call(&endpoint, || async {
                let (octo, since) = self.octo().await.map_err(|e| Broken(format!("{e}")))?;
                let mut h = http::HeaderMap::new();
                h.insert(
                    http::header::ACCEPT,
                    http::HeaderValue::from_static("application/vnd.github+json"),
                );
                h.insert(
                    "x-github-api-version",
                    http::HeaderValue::from_static("2022-11-28"),
                );
                if let Some(tag) = etag.and_then(|t| http::HeaderValue::from_str(t).ok()) {
                    h.insert(http::header::IF_NONE_MATCH, tag);
                }
                let resp = octo
                    ._get_with_headers(url, Some(h))
                    .await
                    .map_err(|e| Broken(format!("request failed: {e}")))?;
                let Reply {
                    status,
                    headers,
                    body,
                } = self.renewed_on_401(read(resp).await?, since).await?;
                if (200..300).contains(&status)
                    && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err()
                {
                    return Err(Broken(format!(
                        "HTTP {status} with a body that is not whole JSON ({} bytes)",
                        body.len()
                    )));
                }
                Ok(Reply {
                    status,
                    headers,
                    body,
                })
            })
            .await
    }
}

impl GithubClient {
    /// A GET whose answer must be JSON of type `T`: anything else fails
    /// naming the endpoint and status.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, ConnectorError> {
        let reply = self.get(url, None).await?;
        serde_json::from_slice(&reply.body).map_err(|e| ConnectorError::Http {
            endpoint: format!("GET {url}"),
            status: reply.status,
            message: format!("unexpected body: {e}"),
        })
    }

    /// A write (`POST`, `PATCH`) with a JSON body; the answer's JSON. A
    /// client error comes back as [`ConnectorError::Http`] with GitHub's
    /// message, for the caller to tell "already exists" from the rest.
    /// Retried like a read on a broken connection or a 5xx: callers make
    /// their writes safe to repeat (a pull request is created for a branch
    /// at most once, GitHub refuses a second with a 422).
    pub async fn send(
        &self,
        method: http::Method,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ConnectorError> {
        let endpoint = format!("{method} {url}");
        let reply = self
            .polite
            .call(&endpoint, || async {
                let (octo, since) = self.octo().await.map_err(|e| Broken(format!("{e}")))?;
                let req = http::Request::builder()
                    .method(method.clone())
                    .uri(url)
                    .header(http::header::ACCEPT, "application/vnd.github+json")
                    .header("x-github-api-version", "2022-11-28");
                let req = octo
                    .build_request(req, Some(body))
                    .map_err(|e| Broken(format!("building the request: {e}")))?;
                let resp = octo
                    .execute(req)
                    .await
                    .map_err(|e| Broken(format!("request failed: {e}")))?;
                self.renewed_on_401(read(resp).await?, since).await
            })
            .await?;
        serde_json::from_slice(&reply.body).map_err(|e| ConnectorError::Http {
            endpoint,
            status: reply.status,
            message: format!("unexpected body: {e}"),
        })
    }
}

/// The whole answer; a body that breaks off is a broken attempt.
async fn read(
    resp: http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, octocrab::Error>>,
) -> Result<Reply, Broken> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Broken(format!("body cut short: {e}")))?
        .to_bytes()
        .to_vec();
    Ok(Reply {
        status,
        headers,
        body,
    })
}
