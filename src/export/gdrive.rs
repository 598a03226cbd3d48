//! A packet exported to Google Drive, and read back for `verify
//! --against-drive`. Every call goes through the Drive client's hub and
//! politeness rules (`connectors::gdrive::client`).
//!
//! Export is idempotent: each file ClearTrail uploads carries its packet
//! path and SHA-256 in `appProperties`; a file whose digest (Drive's own
//! `sha256Checksum` where Drive has computed one) already matches is left
//! alone, a changed one gets a new revision of the same Drive file (its id
//! and links stay), a new one is created, and a file the packet no longer
//! has is moved to `superseded/`, renamed to its old packet path. Nothing
//! is ever deleted. Files up to `resumable_over` bytes go in one multipart
//! request, larger ones by resumable upload in chunks. The export record
//! is uploaded last, so a failed export never leaves a record that
//! claims more than was uploaded.

use super::{Copy, ExportRecord, ExportedFile, Held, RECORD_FILE, RECORD_SCHEMA, SUPERSEDED};
use crate::artifact::canonical;
use crate::connectors::ConnectorError;
use crate::connectors::gdrive::client::{GdriveClient, json_reply, quoted};
use crate::packet::PacketFile;
use google_drive3::api::File;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

pub const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
const LIST_FIELDS: &str = "nextPageToken,incompleteSearch,files(id,name,mimeType,parents,size,sha256Checksum,appProperties)";
const FILE_FIELDS: &str = "id,name,mimeType,size,sha256Checksum,appProperties";
/// `appProperties` keys: private to this app, invisible in Drive's UI.
const P_PERIOD: &str = "cleartrail_period";
const P_PATH: &str = "cleartrail_path";
const P_SHA: &str = "cleartrail_sha256";
const P_SUPERSEDED: &str = "cleartrail_superseded";

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Files larger than this go by resumable upload.
    pub resumable_over: u64,
    /// Bytes per request of a resumable upload: a power of two, at least
    /// 256 KiB (the API's rule).
    pub chunk_size: u64,
}

impl Default for Options {
    fn default() -> Self {
        // Google's guidance: multipart for small files, resumable from
        // about 5 MB; chunks in multiples of 256 KiB.
        Options {
            resumable_over: 5 << 20,
            chunk_size: 8 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "Drive folder {folder} was not found: it must exist and be shared with the account of GOOGLE_APPLICATION_CREDENTIALS ({role}): {source}"
    )]
    FolderNotFound {
        folder: String,
        role: &'static str,
        #[source]
        source: ConnectorError,
    },
    #[error("the Drive folder of {period} holds {what}; refusing to guess which is the export")]
    Ambiguous { period: String, what: String },
    #[error(
        "Drive answered {endpoint} with an incomplete listing (`incompleteSearch`); refusing to act on part of the folder"
    )]
    Incomplete { endpoint: String },
    #[error(
        "{endpoint}: Drive created no file id; refusing to record an export it cannot point to"
    )]
    NoId { endpoint: String },
    #[error(transparent)]
    Api(#[from] ConnectorError),
}

/// A file found under the period folder.
#[derive(Debug, Clone)]
pub struct Remote {
    pub id: String,
    /// Its path from the period folder.
    pub path: String,
    /// The folder it was found in.
    pub parent: String,
    pub mime: String,
    /// Computed by Drive for content it stores.
    pub drive_sha256: Option<String>,
    /// What ClearTrail recorded when it uploaded the file.
    pub our_sha256: Option<String>,
}

/// The period folder as found.
#[derive(Debug, Default)]
pub struct Tree {
    /// Folders by path from the period folder ("" is the period folder);
    /// the first found where several share a path.
    pub folders: BTreeMap<String, String>,
    /// Folders at a path another folder already has: what they hold is
    /// never the export's, and an export moves them to `superseded/`.
    pub doubled: Vec<Remote>,
    pub files: Vec<Remote>,
    /// `superseded/`, when it exists.
    pub superseded: Option<String>,
}

/// What an export did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Outcome {
    pub period_folder: String,
    pub created: Vec<String>,
    pub revised: Vec<String>,
    pub superseded: Vec<String>,
    pub unchanged: usize,
    pub record: Option<ExportRecord>,
}

/// Resumable uploads in chunks of the configured size.
struct Chunks(u64);

impl google_drive3::Delegate for Chunks {
    fn chunk_size(&mut self) -> u64 {
        self.0
    }
}

/// Drive as the export and its verification see it.
pub struct Drive<'a> {
    client: &'a GdriveClient,
    scope: &'static str,
    opts: Options,
    /// Ids from `files.generateIds` not used yet.
    ids: std::sync::Mutex<Vec<String>>,
}

fn media_type(path: &str) -> mime::Mime {
    let t = match path.rsplit('.').next() {
        Some("md") => "text/markdown; charset=utf-8",
        Some("json") => "application/json",
        Some("html") => "text/html; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        _ => "application/octet-stream",
    };
    t.parse().unwrap_or(mime::APPLICATION_OCTET_STREAM)
}

impl<'a> Drive<'a> {
    /// `scope`: `client::FILE` to export, `client::READONLY` to verify.
    pub fn new(client: &'a GdriveClient, scope: &'static str, opts: Options) -> Drive<'a> {
        Drive {
            client,
            scope,
            opts,
            ids: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn endpoint(&self, method: &str, what: &str) -> String {
        format!("{method} {}drive/v3/{what}", self.client.api)
    }

    /// Children of a folder, `extra` narrowing the query. A listing Drive
    /// says is incomplete is refused: acting on part of a folder would
    /// upload twice or miss a file.
    async fn children(&self, folder: &str, extra: &str) -> Result<Vec<Value>, ExportError> {
        let (found, incomplete) = self
            .client
            .children(folder, extra, LIST_FIELDS, 1000, self.scope)
            .await?;
        if incomplete {
            return Err(ExportError::Incomplete {
                endpoint: self.endpoint("GET", &format!("files?q={} in parents", quoted(folder))),
            });
        }
        Ok(found)
    }

    /// The folder given, read first: Drive lists the children of a
    /// folder one may not see as nothing at all, which must not pass for
    /// an empty export.
    async fn check_top(&self, top: &str) -> Result<(), ExportError> {
        let endpoint = self.endpoint("GET", &format!("files/{top}"));
        self.client
            .call(&endpoint, || async {
                let (_, f) = self
                    .client
                    .hub
                    .files()
                    .get(top)
                    .supports_all_drives(true)
                    .param("fields", "id,mimeType")
                    .add_scope(self.scope)
                    .doit()
                    .await?;
                Ok(json_reply(&f))
            })
            .await
            .map_err(|e| self.not_found(top, e))?;
        Ok(())
    }

    fn not_found(&self, folder: &str, e: ConnectorError) -> ExportError {
        match e {
            ConnectorError::Http { status: 404, .. } => ExportError::FolderNotFound {
                folder: folder.to_string(),
                role: match self.scope {
                    crate::connectors::gdrive::client::READONLY => "as Viewer, to verify",
                    // drive.file reaches only what the app made or opened:
                    // a folder a person made and shared is not that.
                    crate::connectors::gdrive::client::FILE => {
                        "as Editor, to export; with the default `--scope file` (drive.file) Drive shows only folders ClearTrail created or opened, so a folder someone else made needs `--scope full`"
                    }
                    _ => "as Editor, to export",
                },
                source: e,
            },
            e => ExportError::Api(e),
        }
    }

    /// The folder of `period` inside `top`, when there is one.
    pub async fn period_folder(
        &self,
        top: &str,
        period: &str,
    ) -> Result<Option<String>, ExportError> {
        self.check_top(top).await?;
        let found = self
            .children(
                top,
                &format!(
                    " and mimeType = {} and name = {}",
                    quoted(FOLDER_MIME),
                    quoted(period)
                ),
            )
            .await?;
        let ours: Vec<&Value> = found
            .iter()
            .filter(|f| f["appProperties"][P_PERIOD] == period)
            .collect();
        let pick = match (ours.as_slice(), found.as_slice()) {
            ([one], _) => Some(*one),
            ([], []) => None,
            ([], [one]) => Some(one),
            _ => {
                return Err(ExportError::Ambiguous {
                    period: period.to_string(),
                    what: format!("{} folders named `{period}`", found.len()),
                });
            }
        };
        Ok(pick.and_then(|f| f["id"].as_str()).map(str::to_string))
    }

    /// Everything under the period folder but `superseded/`. Every folder
    /// is walked, also one whose path another already has: what it holds
    /// must not escape a comparison.
    pub async fn walk(&self, period_folder: &str) -> Result<Tree, ExportError> {
        let mut tree = Tree::default();
        tree.folders
            .insert(String::new(), period_folder.to_string());
        let mut pending = vec![(period_folder.to_string(), String::new())];
        let mut ours = std::collections::HashSet::new();
        let mut folder_rows: HashMap<String, Remote> = HashMap::new();
        while let Some((folder, prefix)) = pending.pop() {
            for f in self.children(&folder, "").await? {
                let (Some(id), Some(name)) = (f["id"].as_str(), f["name"].as_str()) else {
                    continue;
                };
                let path = if prefix.is_empty() {
                    name.to_string()
                } else {
                    format!("{prefix}/{name}")
                };
                let mime = f["mimeType"].as_str().unwrap_or_default();
                if mime == FOLDER_MIME {
                    if prefix.is_empty() && name == SUPERSEDED {
                        tree.superseded.get_or_insert_with(|| id.to_string());
                        continue;
                    }
                    let this = Remote {
                        id: id.to_string(),
                        path: path.clone(),
                        parent: folder.clone(),
                        mime: mime.to_string(),
                        drive_sha256: None,
                        our_sha256: None,
                    };
                    // Of two folders at one path, the one ClearTrail made
                    // is the export's, whatever order Drive lists them in.
                    let mine = f["appProperties"][P_PATH] == path.as_str();
                    match tree.folders.get(&path).cloned() {
                        None => {
                            tree.folders.insert(path.clone(), id.to_string());
                            folder_rows.insert(id.to_string(), this);
                        }
                        Some(held) if mine && !ours.contains(&held) => {
                            tree.folders.insert(path.clone(), id.to_string());
                            if let Some(old) = folder_rows.remove(&held) {
                                tree.doubled.push(old);
                            }
                            folder_rows.insert(id.to_string(), this);
                        }
                        Some(_) => tree.doubled.push(this),
                    }
                    if mine {
                        ours.insert(id.to_string());
                    }
                    pending.push((id.to_string(), path));
                    continue;
                }
                tree.files.push(Remote {
                    id: id.to_string(),
                    path,
                    parent: folder.clone(),
                    mime: mime.to_string(),
                    drive_sha256: f["sha256Checksum"].as_str().map(str::to_string),
                    our_sha256: f["appProperties"][P_SHA].as_str().map(str::to_string),
                });
            }
        }
        tree.files
            .sort_by(|a, b| (&a.path, &a.id).cmp(&(&b.path, &b.id)));
        Ok(tree)
    }

    /// A file id of our own for the next create. Drive refuses a second
    /// create with the same id (409), so a create retried after its answer
    /// was lost never makes a second file.
    async fn next_id(&self) -> Result<String, ConnectorError> {
        if let Some(id) = self.ids.lock().expect("not poisoned").pop() {
            return Ok(id);
        }
        let endpoint = self.endpoint("GET", "files/generateIds");
        let reply = self
            .client
            .call(&endpoint, || async {
                let (_, ids) = self
                    .client
                    .hub
                    .files()
                    .generate_ids()
                    .count(100)
                    .space("drive")
                    .type_("files")
                    .add_scope(self.scope)
                    .doit()
                    .await?;
                Ok(json_reply(&ids))
            })
            .await?;
        let got: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let mut ids: Vec<String> = got["ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        ids.reverse();
        let first = ids.pop().ok_or_else(|| ConnectorError::Http {
            endpoint,
            status: reply.status,
            message: "no ids in the answer".into(),
        })?;
        *self.ids.lock().expect("not poisoned") = ids;
        Ok(first)
    }

    /// A create's answer: the file, or (409) the one an earlier attempt
    /// of this very create made.
    fn created(id: &str, r: Result<Value, ConnectorError>) -> Result<Value, ConnectorError> {
        match r {
            Err(ConnectorError::Http { status: 409, .. }) => Ok(json!({ "id": id })),
            r => r,
        }
    }

    async fn create_folder(
        &self,
        parent: &str,
        name: &str,
        props: Value,
    ) -> Result<String, ExportError> {
        let id = self.next_id().await?;
        let made = self
            .client
            .create_metadata_only(
                &json!({
                    "id": id,
                    "name": name,
                    "mimeType": FOLDER_MIME,
                    "parents": [parent],
                    "appProperties": props,
                }),
                self.scope,
            )
            .await;
        Self::created(&id, made)?;
        Ok(id)
    }

    /// Uploads `bytes` as a new file under `parent` or a new revision of
    /// `existing`; returns the file's id.
    async fn upload(
        &self,
        existing: Option<&str>,
        parent: &str,
        path: &str,
        bytes: &[u8],
        props: HashMap<String, String>,
    ) -> Result<String, ExportError> {
        let resumable = bytes.len() as u64 > self.opts.resumable_over;
        let kind = if resumable { "resumable" } else { "multipart" };
        let endpoint = match existing {
            Some(id) => format!(
                "PATCH {}upload/drive/v3/files/{id}?uploadType={kind} ({path})",
                self.client.api
            ),
            None => format!(
                "POST {}upload/drive/v3/files?uploadType={kind} ({path})",
                self.client.api
            ),
        };
        let new_id = match existing {
            Some(_) => None,
            None => Some(self.next_id().await?),
        };
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        let media = media_type(path);
        let answer = self
            .client
            .call(&endpoint, || {
                let media = media.clone();
                let props = props.clone();
                let name = name.clone();
                let new_id = new_id.clone();
                let attempt = async move {
                    let reader = std::io::Cursor::new(bytes.to_vec());
                    let mut chunks = Chunks(self.opts.chunk_size);
                    let files = self.client.hub.files();
                    // Create and update are two call types with the same
                    // two ways to send the bytes.
                    macro_rules! send {
                        ($call:expr) => {
                            if resumable {
                                $call.delegate(&mut chunks).upload_resumable(reader, media).await?
                            } else {
                                $call.upload(reader, media).await?
                            }
                        };
                    }
                    let (_, file) = match existing {
                        None => {
                            let meta = File {
                                id: new_id,
                                name: Some(name),
                                parents: Some(vec![parent.to_string()]),
                                app_properties: Some(props),
                                ..File::default()
                            };
                            send!(files
                                .create(meta)
                                .supports_all_drives(true)
                                .param("fields", FILE_FIELDS)
                                .add_scope(self.scope))
                        }
                        Some(id) => {
                            let meta = File {
                                app_properties: Some(props),
                                ..File::default()
                            };
                            send!(files
                                .update(meta, id)
                                .supports_all_drives(true)
                                .param("fields", FILE_FIELDS)
                                .add_scope(self.scope))
                        }
                    };
                    Ok(json_reply(&file))
                };
                // google-drive3 panics on an upload answer that breaks the
                // protocol (a session with no `Location`): that is the
                // server's failure, reported as one, not a crash.
                async move {
                    use futures_util::FutureExt as _;
                    match std::panic::AssertUnwindSafe(attempt).catch_unwind().await {
                        Ok(r) => r,
                        Err(_) => Ok(crate::connectors::http::Reply {
                            status: 502,
                            headers: http::HeaderMap::new(),
                            body: br#"{"error":{"message":"the answer broke Google's upload protocol (a resumable session without a Location header)"}}"#.to_vec(),
                        }),
                    }
                }
            })
            .await;
        let file = match &new_id {
            Some(id) => Self::created(
                id,
                answer.map(|r| serde_json::from_slice(&r.body).unwrap_or_default()),
            )?,
            None => serde_json::from_slice(&answer?.body).unwrap_or_default(),
        };
        match file["id"].as_str().or(existing) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(ExportError::NoId { endpoint }),
        }
    }

    /// Moves a file out of the packet into `superseded/`, renamed to the
    /// packet path it had, so it stays findable.
    async fn supersede(&self, f: &Remote, into: &str) -> Result<(), ConnectorError> {
        let endpoint = format!(
            "PATCH {}drive/v3/files/{}?addParents={into} ({})",
            self.client.api, f.id, f.path
        );
        self.client
            .call(&endpoint, || async {
                let meta = File {
                    name: Some(f.path.clone()),
                    app_properties: Some(HashMap::from([
                        (P_SUPERSEDED.to_string(), f.path.clone()),
                        (P_PATH.to_string(), String::new()),
                    ])),
                    ..File::default()
                };
                let mut call = self
                    .client
                    .hub
                    .files()
                    .update(meta, &f.id)
                    .add_parents(into)
                    .supports_all_drives(true)
                    .param("fields", "id")
                    .add_scope(self.scope);
                if !f.parent.is_empty() && f.parent != into {
                    call = call.remove_parents(&f.parent);
                }
                let (_, file) = call.doit_without_upload().await?;
                Ok(json_reply(&file))
            })
            .await?;
        Ok(())
    }

    /// A file's content.
    pub async fn download(&self, id: &str) -> Result<Vec<u8>, ConnectorError> {
        self.client.download(id, self.scope).await
    }

    /// The folder at `path` under the period folder, made as needed.
    async fn folder_at(
        &self,
        tree: &mut Tree,
        path: &str,
        period: &str,
    ) -> Result<String, ExportError> {
        if let Some(id) = tree.folders.get(path) {
            return Ok(id.clone());
        }
        let (parent_path, name) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = Box::pin(self.folder_at(tree, parent_path, period)).await?;
        let id = self
            .create_folder(&parent, name, json!({ P_PERIOD: period, P_PATH: path }))
            .await?;
        tree.folders.insert(path.to_string(), id.clone());
        Ok(id)
    }

    /// Exports `files` (a packet, its `manifest.json` included) into the
    /// folder of `period` inside `top`.
    pub async fn export(
        &self,
        top: &str,
        period: &str,
        evidence_commit: &str,
        files: &[PacketFile],
    ) -> Result<Outcome, ExportError> {
        let folder = match self.period_folder(top, period).await? {
            Some(id) => id,
            None => {
                self.create_folder(top, period, json!({ P_PERIOD: period }))
                    .await?
            }
        };
        let mut tree = self.walk(&folder).await?;
        let mut out = Outcome {
            period_folder: folder.clone(),
            ..Outcome::default()
        };
        // Candidates at a path: files in the one folder of that path (a
        // file in a doubled folder is never kept).
        let mut by_path: BTreeMap<&str, Vec<&Remote>> = BTreeMap::new();
        let found = tree.files.clone();
        for f in &found {
            let dir = f.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            if tree.folders.get(dir) == Some(&f.parent) {
                by_path.entry(f.path.as_str()).or_default().push(f);
            }
        }
        let manifest = files
            .iter()
            .find(|f| f.path == "manifest.json")
            .map(|f| canonical::sha256_hex(&f.bytes))
            .unwrap_or_default();
        let mut record = ExportRecord {
            schema: RECORD_SCHEMA.into(),
            period: period.to_string(),
            folder: top.to_string(),
            period_folder: folder.clone(),
            evidence_commit: evidence_commit.to_string(),
            packet_manifest_sha256: manifest,
            files: Vec::new(),
        };
        let mut keep = std::collections::HashSet::new();
        let record_file = PacketFile {
            path: RECORD_FILE.into(),
            bytes: Vec::new(),
        };
        for (i, f) in files.iter().chain([&record_file]).enumerate() {
            let is_record = i == files.len();
            let bytes = if is_record {
                record.files.sort_by(|a, b| a.path.cmp(&b.path));
                record.to_bytes()
            } else {
                f.bytes.clone()
            };
            let sha = canonical::sha256_hex(&bytes);
            let held = by_path.get(f.path.as_str()).cloned().unwrap_or_default();
            // The one to keep: one already right, else the first found.
            let current = held
                .iter()
                .find(|r| r.drive_sha256.as_ref().or(r.our_sha256.as_ref()) == Some(&sha))
                .or(held.first())
                .copied();
            let props = HashMap::from([
                (P_PERIOD.to_string(), period.to_string()),
                (P_PATH.to_string(), f.path.clone()),
                (P_SHA.to_string(), sha.clone()),
            ]);
            let id = match current {
                Some(r) if r.drive_sha256.as_ref().or(r.our_sha256.as_ref()) == Some(&sha) => {
                    out.unchanged += 1;
                    r.id.clone()
                }
                Some(r) => {
                    let id = self.upload(Some(&r.id), "", &f.path, &bytes, props).await?;
                    out.revised.push(f.path.clone());
                    id
                }
                None => {
                    let parent_path = f.path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                    let parent = self.folder_at(&mut tree, parent_path, period).await?;
                    let id = self.upload(None, &parent, &f.path, &bytes, props).await?;
                    out.created.push(f.path.clone());
                    id
                }
            };
            keep.insert(id.clone());
            if !is_record {
                record.files.push(ExportedFile {
                    path: f.path.clone(),
                    id,
                    sha256: sha,
                    size: bytes.len() as u64,
                });
            }
        }
        // Only now, with every file of the packet in place, does anything
        // leave it.
        let leaving = found.iter().filter(|r| !keep.contains(&r.id));
        // Doubled folders go after the files they held, emptied.
        let doubled = std::mem::take(&mut tree.doubled);
        for r in leaving.chain(doubled.iter()) {
            let into = match tree.superseded.clone() {
                Some(id) => id,
                None => {
                    let id = self
                        .create_folder(&folder, SUPERSEDED, json!({ P_PERIOD: period }))
                        .await?;
                    tree.superseded = Some(id.clone());
                    id
                }
            };
            self.supersede(r, &into).await?;
            out.superseded.push(r.path.clone());
        }
        out.record = Some(record);
        Ok(out)
    }

    /// The period folder as a [`Copy`] to compare with the packet: each
    /// file's digest is Drive's own `sha256Checksum`, or the content's
    /// when Drive has none. ClearTrail's `appProperties` are never
    /// believed: anyone with edit rights can write them.
    pub async fn read_copy(&self, top: &str, period: &str) -> Result<Copy, ExportError> {
        let Some(folder) = self.period_folder(top, period).await? else {
            return Ok(Copy::default());
        };
        let tree = self.walk(&folder).await?;
        let mut copy = Copy::default();
        for d in &tree.doubled {
            copy.held
                .entry(d.path.clone())
                .or_default()
                .push(Held::Other("a second folder of this name".into()));
        }
        for f in &tree.files {
            if f.path == RECORD_FILE {
                copy.records.push(self.download(&f.id).await?);
                continue;
            }
            let held = if f.mime.starts_with("application/vnd.google-apps.") {
                Held::Other(format!("a native `{}` file", f.mime))
            } else {
                let sha256 = match &f.drive_sha256 {
                    Some(s) => s.clone(),
                    None => canonical::sha256_hex(&self.download(&f.id).await?),
                };
                Held::File {
                    sha256,
                    id: Some(f.id.clone()),
                }
            };
            copy.held.entry(f.path.clone()).or_default().push(held);
        }
        Ok(copy)
    }
}
