//! The Google Drive client: google-drive3's hub for every call, yup-oauth2
//! for the token, and [`Polite`] around each call, since the hub does not
//! retry (DESIGN, "Dependency notes"): `Retry-After`, Drive's 403
//! `userRateLimitExceeded` and 429 are waited out, 5xx and broken
//! connections retried with backoff.
//!
//! Credentials: the JSON file `GOOGLE_APPLICATION_CREDENTIALS` names, a
//! service account key or the workload identity federation configuration
//! that `google-github-actions/auth` writes. Tokens are fetched from the
//! file's own `token_uri`. The API is `api_url` (default
//! `https://www.googleapis.com/`): the hub's base and root URLs both
//! follow it, uploads included.

use crate::connectors::ConnectorError;
use crate::connectors::http::{Broken, Polite, Politeness, Reply};
use google_drive3::hyper_rustls::HttpsConnector;
use google_drive3::hyper_util::client::legacy::connect::HttpConnector;
use google_drive3::{DriveHub, hyper_rustls, hyper_util, yup_oauth2};
use http_body_util::BodyExt as _;
use std::path::PathBuf;

pub const CREDENTIALS_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";
pub const DEFAULT_API: &str = "https://www.googleapis.com/";

/// Where and as whom to reach Drive.
#[derive(Debug, Clone)]
pub struct GdriveEnv {
    pub credentials: PathBuf,
    /// Ends with `/`.
    pub api: String,
}

impl GdriveEnv {
    pub fn from_env(api: Option<&str>) -> Result<GdriveEnv, ConnectorError> {
        let credentials = std::env::var_os(CREDENTIALS_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| ConnectorError::Setup {
                message: format!(
                    "no Google credentials: set {CREDENTIALS_VAR} to a service account key file, or to the credentials file google-github-actions/auth writes (workload identity federation)"
                ),
            })?;
        let api = format!("{}/", api.unwrap_or(DEFAULT_API).trim_end_matches('/'));
        Ok(GdriveEnv { credentials, api })
    }
}

pub type Hub = DriveHub<HttpsConnector<HttpConnector>>;

pub struct GdriveClient {
    pub hub: Hub,
    pub polite: Polite,
    /// The API root, ending with `/`.
    pub api: String,
}

/// Google asks for exponential backoff from about a second on
/// `userRateLimitExceeded` (GitHub's secondary limits want a minute): two
/// seconds, doubling.
pub fn politeness() -> Politeness {
    Politeness {
        secondary_wait: std::time::Duration::from_secs(2),
        ..Politeness::default()
    }
}

/// The scope the source (and `verify --against-drive`) reads with.
pub const READONLY: &str = "https://www.googleapis.com/auth/drive.readonly";
/// The scope `export` writes with by default: only files this app created.
pub const FILE: &str = "https://www.googleapis.com/auth/drive.file";
/// The scope `export --scope full` writes with: all of the account's Drive.
pub const FULL: &str = "https://www.googleapis.com/auth/drive";

impl GdriveClient {
    pub async fn connect(
        env: &GdriveEnv,
        rules: Politeness,
    ) -> Result<GdriveClient, ConnectorError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let setup = |m: String| ConnectorError::Setup { message: m };
        let path = env.credentials.display().to_string();
        let text = crate::yaml::read_text(&env.credentials)
            .map_err(|e| setup(format!("{CREDENTIALS_VAR} ({path}): {e}")))?;
        let kind: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| setup(format!("{CREDENTIALS_VAR} ({path}) is not JSON: {e}")))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| setup(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let executor = hyper_util::rt::TokioExecutor::new();
        let token_client = hyper_util::client::legacy::Client::builder(executor.clone())
            .build::<_, String>(connector.clone());
        let custom = yup_oauth2::CustomHyperClientBuilder::from(token_client);
        let built = match kind["type"].as_str() {
            Some("service_account") => {
                let key = yup_oauth2::parse_service_account_key(&text)
                    .map_err(|e| setup(format!("{CREDENTIALS_VAR} ({path}): {e}")))?;
                yup_oauth2::ServiceAccountAuthenticator::with_client(key, custom)
                    .build()
                    .await
            }
            Some("external_account") => {
                let secret: yup_oauth2::external_account::ExternalAccountSecret =
                    serde_json::from_str(&text)
                        .map_err(|e| setup(format!("{CREDENTIALS_VAR} ({path}): {e}")))?;
                yup_oauth2::ExternalAccountAuthenticator::with_client(secret, custom)
                    .build()
                    .await
            }
            other => {
                return Err(setup(format!(
                    "{CREDENTIALS_VAR} ({path}) is a `{}` credential; a service account key (`service_account`) or workload identity federation (`external_account`) is needed",
                    other.unwrap_or("unknown")
                )));
            }
        };
        let auth = built.map_err(|e| setup(format!("{CREDENTIALS_VAR} ({path}): {e}")))?;
        let client = hyper_util::client::legacy::Client::builder(executor).build(connector);
        let mut hub = DriveHub::new(client, auth);
        hub.base_url(format!("{}drive/v3/", env.api));
        hub.root_url(env.api.clone());
        Ok(GdriveClient {
            hub,
            polite: Polite::new(rules),
            api: env.api.clone(),
        })
    }

    /// Runs one hub call through the politeness rules: `call` makes the
    /// request (again, on a retry); its answer comes back as a [`Reply`]
    /// whose body is the JSON (or bytes) it gave.
    pub async fn call<F, Fut>(&self, endpoint: &str, call: F) -> Result<Reply, ConnectorError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = google_drive3::Result<Reply>>,
    {
        self.polite
            .call(endpoint, || async {
                match call().await {
                    Ok(r) => Ok(r),
                    Err(e) => failure(e).await,
                }
            })
            .await
    }
}

impl GdriveClient {
    /// Every item under `key` of a list Drive pages by `nextPageToken`;
    /// `call` makes the request for a page token (none: the first).
    pub async fn paged<F, Fut>(
        &self,
        endpoint: &str,
        key: &str,
        call: F,
    ) -> Result<Vec<serde_json::Value>, ConnectorError>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: std::future::Future<Output = google_drive3::Result<Reply>>,
    {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let reply = self.call(endpoint, || call(token.clone())).await?;
            let page: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
            out.extend(page[key].as_array().cloned().unwrap_or_default());
            token = page["nextPageToken"].as_str().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// The children of a folder (not trashed), `extra` narrowing the
    /// query, with `fields` for each page; and whether Drive said any page
    /// was incomplete (`incompleteSearch`).
    pub async fn children(
        &self,
        folder: &str,
        extra: &str,
        fields: &str,
        page_size: i32,
        scope: &str,
    ) -> Result<(Vec<serde_json::Value>, bool), ConnectorError> {
        let q = format!("{} in parents and trashed = false{extra}", quoted(folder));
        let endpoint = format!("GET {}drive/v3/files?q={q}", self.api);
        let q = &q;
        let incomplete = std::sync::atomic::AtomicBool::new(false);
        let incomplete = &incomplete;
        let found = self
            .paged(&endpoint, "files", |token| async move {
                let mut call = self
                    .hub
                    .files()
                    .list()
                    .q(q)
                    .page_size(page_size)
                    .order_by("name")
                    .supports_all_drives(true)
                    .include_items_from_all_drives(true)
                    .param("fields", fields)
                    .add_scope(scope);
                if let Some(t) = &token {
                    call = call.page_token(t);
                }
                let (_, list) = call.doit().await?;
                if list.incomplete_search == Some(true) {
                    incomplete.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(json_reply(&list))
            })
            .await?;
        Ok((found, incomplete.load(std::sync::atomic::Ordering::Relaxed)))
    }

    /// A file's content (`files.get` with `alt=media`), asked for with
    /// `scope`.
    pub async fn download(&self, id: &str, scope: &str) -> Result<Vec<u8>, ConnectorError> {
        let endpoint = format!("GET {}drive/v3/files/{id}?alt=media", self.api);
        let reply = self
            .call(&endpoint, || async {
                let (resp, _) = self
                    .hub
                    .files()
                    .get(id)
                    .param("alt", "media")
                    .supports_all_drives(true)
                    .add_scope(scope)
                    .doit()
                    .await?;
                read_body(resp).await
            })
            .await?;
        Ok(reply.body)
    }

    /// `files.create` without content (a folder): google-drive3 only
    /// creates through its upload endpoints, so this one request is made
    /// with the hub's own client and token.
    pub async fn create_metadata_only(
        &self,
        metadata: &serde_json::Value,
        scope: &str,
    ) -> Result<serde_json::Value, ConnectorError> {
        let url = format!(
            "{}drive/v3/files?supportsAllDrives=true&fields=id%2Cname%2CmimeType%2CappProperties&alt=json",
            self.api
        );
        let endpoint = format!("POST {}drive/v3/files", self.api);
        let body = serde_json::to_string(metadata).unwrap_or_default();
        let reply = self
            .polite
            .call(&endpoint, || async {
                let token = match self.hub.auth.get_token(&[scope]).await {
                    Ok(t) => t,
                    Err(e) => return failure(google_drive3::Error::MissingToken(e)).await,
                };
                let mut req = http::Request::builder()
                    .method(http::Method::POST)
                    .uri(&url)
                    .header(http::header::CONTENT_TYPE, "application/json");
                if let Some(t) = token {
                    req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
                }
                let req = req
                    .body(google_drive3::common::to_body(Some(body.clone())))
                    .map_err(|e| Broken(format!("request: {e}")))?;
                match self.hub.client.request(req).await {
                    Ok(resp) => read_body(resp)
                        .await
                        .map_err(|e| Broken(format!("body cut short: {e}"))),
                    Err(e) => Err(Broken(format!("request failed: {e}"))),
                }
            })
            .await?;
        serde_json::from_slice(&reply.body).map_err(|e| ConnectorError::Http {
            endpoint,
            status: reply.status,
            message: format!("not a Drive file: {e}"),
        })
    }
}

/// A literal inside a Drive query: `'` and `\` escaped.
pub fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A hub answer (already parsed by the hub) as the JSON body it was.
pub fn json_reply<T: serde::Serialize>(v: &T) -> Reply {
    Reply {
        status: 200,
        headers: http::HeaderMap::new(),
        body: serde_json::to_vec(v).unwrap_or_default(),
    }
}

/// The body of a hub response, read whole.
pub async fn read_body<B>(resp: http::Response<B>) -> Result<Reply, google_drive3::Error>
where
    B: google_drive3::hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| google_drive3::Error::Io(std::io::Error::other(e)))?
        .to_bytes()
        .to_vec();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A hub error as the answer it was (a status and body to judge), or a
/// broken attempt.
async fn failure(e: google_drive3::Error) -> Result<Reply, Broken> {
    match e {
        google_drive3::Error::Failure(resp) => read_body(resp)
            .await
            .map_err(|e| Broken(format!("body cut short: {e}"))),
        // The hub parsed a 400's error body itself.
        google_drive3::Error::BadRequest(v) => Ok(Reply {
            status: v["error"]["code"].as_u64().unwrap_or(400) as u16,
            headers: http::HeaderMap::new(),
            body: serde_json::to_vec(&v).unwrap_or_default(),
        }),
        google_drive3::Error::MissingToken(e) => Ok(Reply {
            status: 401,
            headers: http::HeaderMap::new(),
            body: serde_json::to_vec(
                &serde_json::json!({"error": {"message": format!("no access token: {e}")}}),
            )
            .unwrap_or_default(),
        }),
        other => Err(Broken(format!("request failed: {other}"))),
    }
}
