//! The `gdrive` source: the documents in Google Drive folders (or shared
//! drives), subfolders included, each with its owners, last modifying
//! user, modified time, revision, permissions (a link anyone can open is
//! flagged), revision history and captured content: native Google Docs
//! exported (`export_as`, Markdown by default), other files downloaded up
//! to a size limit. Policy metadata comes from the content's front matter,
//! else from the file's Drive properties `owner` and `last_reviewed`, so
//! the policy checks judge Drive documents as they judge local ones.
//!
//! The query lists the folders every run; when no file's `version` moved
//! since the last run (Drive bumps it on any change, sharing included),
//! nothing is downloaded and the answer is *not modified*. Otherwise
//! every document is read again and the answer is complete, so a file
//! removed from the folders is seen to be gone.

pub mod client;

use super::{Connector, ConnectorError, Outcome, Page, PageRequest, Query, Skipped};
use crate::artifact::{Artifact, Captured, DateSpan};
use crate::connectors::files::{FrontMatter, front_matter};

use async_trait::async_trait;
use client::{GdriveClient, READONLY, json_reply, read_body};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What a `gdrive` source is configured to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdriveSpec {
    /// Folder or shared-drive ids.
    pub folders: Vec<String>,
    /// The media type native Google Docs are exported as.
    pub export_as: String,
    /// The API's root (a proxy, or a test server); Google's by default.
    pub api_url: Option<String>,
    /// Files larger than this are recorded without their content.
    pub max_bytes: u64,
}

impl Default for GdriveSpec {
    fn default() -> Self {
        GdriveSpec {
            folders: Vec::new(),
            export_as: "text/markdown".into(),
            api_url: None,
            max_bytes: 10 * 1024 * 1024,
        }
    }
}

const FOLDER: &str = "application/vnd.google-apps.folder";
/// The fields read of each file, of each permission and each revision.
pub const FILE_FIELDS: &str = "nextPageToken, files(id, name, mimeType, modifiedTime, version, headRevisionId, md5Checksum, size, owners(displayName, emailAddress), lastModifyingUser(displayName, emailAddress), webViewLink, properties)";
pub const PERMISSION_FIELDS: &str =
    "nextPageToken, permissions(id, type, role, emailAddress, domain, allowFileDiscovery)";
pub const REVISION_FIELDS: &str =
    "nextPageToken, revisions(id, modifiedTime, lastModifyingUser(displayName, emailAddress))";

/// What the query saves: each file's version and path when it was last
/// read (a folder renamed moves its files without a new version).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Saved {
    scope: String,
    versions: BTreeMap<String, String>,
}

pub struct GdriveSource {
    name: String,
    spec: GdriveSpec,
    client: GdriveClient,
    /// The listing of this run, read on the first page and paged through:
    /// documents are read a page at a time, so that their captured
    /// content is never all in memory at once.
    listing: tokio::sync::Mutex<Vec<(String, Value)>>,
    per_page: usize,
}

/// Documents read a page.
const DOCS_PER_PAGE: usize = 32;

impl GdriveSource {
    pub fn new(name: String, spec: GdriveSpec, client: GdriveClient) -> GdriveSource {
        GdriveSource {
            name,
            spec,
            client,
            listing: tokio::sync::Mutex::new(Vec::new()),
            per_page: DOCS_PER_PAGE,
        }
    }

    /// Reads `n` documents a page instead of 32 (tests).
    pub fn with_docs_per_page(mut self, n: usize) -> Self {
        self.per_page = n.max(1);
        self
    }

    pub fn client(&self) -> &GdriveClient {
        &self.client
    }

    fn scope(&self) -> String {
        format!(
            "folders={};export_as={};max_bytes={}",
            self.spec.folders.join(","),
            self.spec.export_as,
            self.spec.max_bytes
        )
    }

    fn endpoint(&self, what: &str) -> String {
        format!("GET {}drive/v3/{what}", self.api())
    }

    fn api(&self) -> String {
        format!(
            "{}/",
            self.spec
                .api_url
                .as_deref()
                .unwrap_or(client::DEFAULT_API)
                .trim_end_matches('/')
        )
    }

    /// Every file under the folders (not folders themselves), with its
    /// path of names from its top folder, in a stable order.
    async fn list_all(&self) -> Result<Vec<(String, Value)>, ConnectorError> {
        let mut out = Vec::new();
        let mut pending: Vec<(String, String)> = self
            .spec
            .folders
            .iter()
            .map(|f| (f.clone(), String::new()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        while let Some((folder, prefix)) = pending.pop() {
            // A folder reachable twice (shortcuts, several parents) is
            // read once.
            if !seen.insert(folder.clone()) {
                continue;
            }
            let (found, incomplete) = self
                .client
                .children(&folder, "", FILE_FIELDS, 100, READONLY)
                .await?;
            // A complete answer removes what it does not hold: part of a
            // folder must not pass for all of it.
            if incomplete {
                return Err(ConnectorError::Http {
                    endpoint: self.endpoint(&format!("files?q='{folder}' in parents")),
                    status: 200,
                    message: "Drive marked the listing incomplete (`incompleteSearch`); refusing to record part of the folder as all of it".into(),
                });
            }
            for f in found {
                let name = f["name"].as_str().unwrap_or_default();
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                };
                if f["mimeType"] == FOLDER {
                    if let Some(id) = f["id"].as_str() {
                        pending.push((id.to_string(), path));
                    }
                } else {
                    out.push((path, f));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, a.1["id"].as_str()).cmp(&(&b.0, b.1["id"].as_str())));
        Ok(out)
    }

    /// The file's content: a native Google Doc exported, another native
    /// type (no single export) or a file over the limit not at all (with
    /// why), anything else downloaded.
    async fn content(
        &self,
        f: &Value,
    ) -> Result<Result<(Vec<u8>, String), String>, ConnectorError> {
        let id = f["id"].as_str().unwrap_or_default();
        let mime = f["mimeType"].as_str().unwrap_or_default();
        if mime == "application/vnd.google-apps.document" {
            let endpoint = self.endpoint(&format!("files/{id}/export"));
            let reply = self
                .client
                .call(&endpoint, || async {
                    let resp = self
                        .client
                        .hub
                        .files()
                        .export(id, &self.spec.export_as)
                        .add_scope(READONLY)
                        .doit()
                        .await?;
                    read_body(resp).await
                })
                .await?;
            return Ok(Ok((reply.body, self.spec.export_as.clone())));
        }
        if mime.starts_with("application/vnd.google-apps.") {
            return Ok(Err(format!(
                "a native `{mime}` file: only Google Docs are exported"
            )));
        }
        let size: u64 = f["size"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        if size > self.spec.max_bytes {
            return Ok(Err(format!(
                "{size} bytes, over the {} byte limit",
                self.spec.max_bytes
            )));
        }
        let bytes = self.client.download(id, READONLY).await?;
        Ok(Ok((bytes, mime.to_string())))
    }

    /// Who can open the file, one entry per permission.
    async fn permissions(&self, id: &str) -> Result<Vec<Value>, ConnectorError> {
        let endpoint = self.endpoint(&format!("files/{id}/permissions"));
        let found = self
            .client
            .paged(&endpoint, "permissions", |token| async move {
                let mut call = self
                    .client
                    .hub
                    .permissions()
                    .list(id)
                    .supports_all_drives(true)
                    .page_size(100)
                    .param("fields", PERMISSION_FIELDS)
                    .add_scope(READONLY);
                if let Some(t) = &token {
                    call = call.page_token(t);
                }
                let (_, list) = call.doit().await?;
                Ok(json_reply(&list))
            })
            .await?;
        let mut out: Vec<Value> = found
            .iter()
            .map(|p| {
                json!({
                    "type": p["type"],
                    "role": p["role"],
                    "email": p["emailAddress"],
                    "domain": p["domain"],
                    "discoverable": p["allowFileDiscovery"],
                })
            })
            .collect();
        out.sort_by_key(|v| v.to_string());
        Ok(out)
    }

    /// The file's revisions, oldest first; `Err` with why when Drive keeps
    /// none the service account may read (403/404: some files keep no
    /// revisions, and a viewer may not list them).
    async fn revisions(&self, id: &str) -> Result<Result<Vec<Value>, String>, ConnectorError> {
        let endpoint = self.endpoint(&format!("files/{id}/revisions"));
        let found = self
            .client
            .paged(&endpoint, "revisions", |token| async move {
                let mut call = self
                    .client
                    .hub
                    .revisions()
                    .list(id)
                    .page_size(200)
                    .param("fields", REVISION_FIELDS)
                    .add_scope(READONLY);
                if let Some(t) = &token {
                    call = call.page_token(t);
                }
                let (_, list) = call.doit().await?;
                Ok(json_reply(&list))
            })
            .await;
        match found {
            Ok(list) => Ok(Ok(list
                .iter()
                .map(|r| {
                    json!({
                        "id": r["id"],
                        "modified": r["modifiedTime"],
                        "by": r["lastModifyingUser"]["emailAddress"],
                    })
                })
                .collect())),
            Err(ConnectorError::Http {
                status: status @ (403 | 404),
                message,
                ..
            }) => Ok(Err(format!("HTTP {status}: {message}"))),
            Err(e) => Err(e),
        }
    }

    async fn document(
        &self,
        path: &str,
        f: &Value,
    ) -> Result<(Artifact, Vec<Skipped>), ConnectorError> {
        let id = f["id"].as_str().unwrap_or_default();
        // A file Drive will not hand over (a Doc over its export limit,
        // one flagged as abuse) is kept without content, said why; the
        // other files are read.
        let content = match self.content(f).await {
            Err(ConnectorError::Http {
                status: status @ (400..=499),
                message,
                ..
            }) if status != 401 && status != 429 => Err(format!("HTTP {status}: {message}")),
            other => other?,
        };
        let permissions = self.permissions(id).await?;
        let revisions = self.revisions(id).await?;
        let mut skipped = Vec::new();
        let (bytes, media_type) = match content {
            Ok((b, m)) => (Some(b), Some(m)),
            Err(why) => {
                skipped.push(Skipped {
                    path: path.to_string(),
                    reason: format!("content not captured: {why}"),
                });
                (None, None)
            }
        };
        let not_captured = skipped.first().map(|s| s.reason.clone());
        let (revisions, revisions_not_read) = match revisions {
            Ok(r) => (r, None),
            Err(why) => {
                skipped.push(Skipped {
                    path: path.to_string(),
                    reason: format!("revisions not read: {why}"),
                });
                (Vec::new(), Some(why))
            }
        };
        let text = bytes.as_deref().and_then(|b| std::str::from_utf8(b).ok());
        let (mut fm, fm_error) = match text.map(front_matter) {
            Some(FrontMatter::Parsed(v)) => (Some(v), None),
            Some(FrontMatter::Invalid(e)) => (None, Some(e)),
            _ => (None, None),
        };
        // No front matter: the Drive properties convention.
        if fm.is_none() && fm_error.is_none() {
            let props = &f["properties"];
            if props["owner"].is_string() || props["last_reviewed"].is_string() {
                let mut m = serde_json::Map::new();
                for k in ["owner", "last_reviewed", "title", "topics"] {
                    if let Some(v) = props[k].as_str() {
                        let v = if k == "topics" {
                            json!(v.split(',').map(str::trim).collect::<Vec<_>>())
                        } else {
                            json!(v)
                        };
                        m.insert(k.to_string(), v);
                    }
                }
                fm = Some(Value::Object(m));
            }
        }
        let modified = f["modifiedTime"].as_str().and_then(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        });
        let reviewed = fm
            .as_ref()
            .and_then(|v| v["last_reviewed"].as_str())
            .and_then(|s| chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok());
        let mut observed = BTreeMap::new();
        if let Some(t) = modified {
            observed.insert(
                "modified".to_string(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
        if let Some(d) = reviewed {
            observed.insert("last_reviewed".to_string(), d.to_string());
        }
        let public = permissions.iter().any(|p| p["type"] == "anyone");
        let artifact = Artifact {
            source: "gdrive".into(),
            kind: "document".into(),
            object_id: format!("{}/{id}", self.name),
            url: f["webViewLink"].as_str().unwrap_or_default().to_string(),
            title: path.to_string(),
            period: reviewed
                .or(modified.map(|t| t.date_naive()))
                .map(DateSpan::day),
            observed,
            content: json!({
                "file_id": id,
                "path": path,
                "mime_type": f["mimeType"],
                "media_type": media_type,
                "owners": f["owners"].as_array().map(|o| o.iter().map(|u| u["emailAddress"].clone()).collect::<Vec<_>>()),
                "last_modifying_user": f["lastModifyingUser"]["emailAddress"],
                "modified_time": f["modifiedTime"],
                "version": f["version"],
                "head_revision_id": f["headRevisionId"],
                "md5_checksum": f["md5Checksum"],
                "size": f["size"],
                "permissions": permissions,
                "public_link": public,
                "revisions": revisions,
                "revisions_not_read": revisions_not_read,
                "front_matter": fm,
                "front_matter_error": fm_error,
                "content_not_captured": not_captured,
            }),
            query: String::new(),
            shard: None,
            captured: bytes.map(|bytes| Captured { bytes }),
        };
        Ok((artifact, skipped))
    }
}

#[async_trait]
impl Connector for GdriveSource {
    fn source_type(&self) -> &'static str {
        "gdrive"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn queries(&self) -> Vec<Query> {
        vec![Query {
            id: "documents".into(),
            kinds: vec!["document".into()],
            description: "documents in the Drive folders, subfolders included".into(),
            filters: [
                ("folders".to_string(), self.spec.folders.join(",")),
                ("export_as".to_string(), self.spec.export_as.clone()),
            ]
            .into(),
            period_scoped: false,
        }]
    }

    fn rate_remaining(&self) -> Option<u64> {
        self.client.polite.remaining()
    }

    async fn fetch(&self, query: &Query, page: PageRequest) -> Result<Page, ConnectorError> {
        use futures_util::StreamExt as _;
        if query.id != "documents" {
            return Err(ConnectorError::UnknownQuery {
                source_name: self.name.clone(),
                query: query.id.clone(),
            });
        }
        // The cursor: the index of the next document of the listing.
        let start: usize = match &page.cursor {
            Some(c) => c.parse().map_err(|_| {
                ConnectorError::Task(format!("{}: unreadable cursor `{c}`", self.name))
            })?,
            None => {
                let scope = self.scope();
                let saved = page
                    .state
                    .as_deref()
                    .and_then(|s| serde_json::from_str::<Saved>(s).ok())
                    .filter(|s| s.scope == scope);
                let files = self.list_all().await?;
                if saved.is_some_and(|s| s.versions == versions_of(&files)) {
                    return Ok(Page {
                        outcome: Outcome::NotModified,
                        state: Some(state_of(scope, &files)),
                        ..Page::default()
                    });
                }
                *self.listing.lock().await = files;
                0
            }
        };
        let (batch, total) = {
            let all = self.listing.lock().await;
            let end = (start + self.per_page).min(all.len());
            (all[start.min(end)..end].to_vec(), all.len())
        };
        let end = start + batch.len();
        let in_flight = self.client.polite.rules().concurrency.max(1);
        let docs: Vec<_> = futures_util::stream::iter(0..batch.len())
            .map(|i| self.document(&batch[i].0, &batch[i].1))
            .buffered(in_flight)
            .collect()
            .await;
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        for d in docs {
            let (a, s) = d?;
            items.push(a);
            skipped.extend(s);
        }
        skipped.sort();
        if end < total {
            return Ok(Page {
                items,
                skipped,
                next: Some(end.to_string()),
                ..Page::default()
            });
        }
        Ok(Page {
            items,
            skipped,
            state: Some(state_of(self.scope(), &self.listing.lock().await)),
            ..Page::default()
        })
    }
}

/// Each file's version and path, by id.
fn versions_of(files: &[(String, Value)]) -> BTreeMap<String, String> {
    files
        .iter()
        .filter_map(|(path, f)| {
            Some((
                f["id"].as_str()?.to_string(),
                format!("{} {path}", f["version"].as_str().unwrap_or_default()),
            ))
        })
        .collect()
}

fn state_of(scope: String, files: &[(String, Value)]) -> String {
    serde_json::to_string(&Saved {
        scope,
        versions: versions_of(files),
    })
    .expect("state serializes")
}
