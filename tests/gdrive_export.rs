//! `export gdrive` and `verify --against-drive` / `--against-dir` against
//! a local fake of Drive v3 with state (wiremock and one responder): files
//! and folders live in memory, `files.list` answers `q` by parent, name
//! and type in pages of two by `nextPageToken`, multipart uploads are
//! parsed part by part, resumable uploads keep sessions whose chunks must
//! arrive in order (308 until the last), updates make new revisions,
//! moves change parents, and `sha256Checksum` is computed from the bytes
//! held, as Drive does. A DELETE is never answered: nothing may delete.

mod common;

use cleartrail::connectors::gdrive::client::{self, GdriveClient, GdriveEnv};
use cleartrail::connectors::http::Politeness;
use cleartrail::export::gdrive::{Drive, Options};
use cleartrail::packet::PacketFile;
use common::*;
use serde_json::{Value, json};
use sha2::Digest as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ACCESS_TOKEN: &str = "ya29.NeverPrintThisExportAccessToken";
const FOLDER: &str = "application/vnd.google-apps.folder";
const BOUNDARY: &str = "MDuXWGyeE33QFXGchb2VFWc4Z7945d";

#[derive(Debug, Clone)]
struct DFile {
    name: String,
    mime: String,
    parents: Vec<String>,
    app: BTreeMap<String, String>,
    content: Vec<u8>,
    revisions: u32,
}

struct Session {
    target: Option<String>,
    meta: Value,
    mime: String,
    got: Vec<u8>,
}

#[derive(Default)]
struct State {
    files: BTreeMap<String, DFile>,
    next: u64,
    sessions: HashMap<String, Session>,
    /// "METHOD path?uploadType" of every request but the token's.
    log: Vec<String>,
    /// Answer the next upload with Drive's rate-limit 403.
    limit_next_upload: bool,
    /// Answer every list with 401 (a token Drive no longer accepts).
    reject_lists: bool,
    /// The server's address, for session URIs.
    base: String,
    /// Create the next file, then answer 500 as if the reply were lost.
    lose_next_create_reply: bool,
    /// Leave `sha256Checksum` out (Drive has not computed it yet).
    no_checksums: bool,
    /// Mark every listing `incompleteSearch`.
    incomplete: bool,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

fn sha(b: &[u8]) -> String {
    hex(&sha2::Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn query(req: &Request, key: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The quoted literals of a Drive query, in order.
fn literals(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = q.chars();
    while let Some(c) = chars.next() {
        if c == '\'' {
            let mut lit = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => lit.extend(chars.next()),
                    '\'' => break,
                    c => lit.push(c),
                }
            }
            out.push(lit);
        }
    }
    out
}

fn error(code: u16, reason: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({"error": {"code": code, "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}]}}))
}

impl State {
    fn json(&self, id: &str) -> Value {
        let f = &self.files[id];
        let mut v = json!({"kind": "drive#file", "id": id, "name": f.name, "mimeType": f.mime,
            "parents": f.parents, "appProperties": f.app});
        if f.mime != FOLDER {
            v["size"] = json!(f.content.len().to_string());
            if !self.no_checksums {
                v["sha256Checksum"] = json!(sha(&f.content));
            }
        }
        v
    }

    /// Creates a file (with the id the request brings, as Drive allows for
    /// ids from `generateIds`); `None` when that id is taken.
    fn create(&mut self, meta: &Value, mime: &str, content: Vec<u8>) -> Option<String> {
        self.next += 1;
        let id = match meta["id"].as_str() {
            Some(id) if self.files.contains_key(id) => return None,
            Some(id) => id.to_string(),
            None => format!("f{:04}", self.next),
        };
        let file = DFile {
            name: meta["name"].as_str().unwrap_or("Untitled").to_string(),
            mime: meta["mimeType"].as_str().unwrap_or(mime).to_string(),
            parents: meta["parents"]
                .as_array()
                .map(|a| a.iter().map(|p| p.as_str().unwrap().to_string()).collect())
                .unwrap_or_default(),
            app: serde_json::from_value(meta["appProperties"].clone()).unwrap_or_default(),
            content,
            revisions: 1,
        };
        self.files.insert(id.clone(), file);
        Some(id)
    }

    /// The answer to a create: the file, 409 for an id taken, or (once)
    /// a 500 after the file was made.
    fn created(&mut self, id: Option<String>) -> ResponseTemplate {
        match id {
            None => error(
                409,
                "duplicate",
                "A file already exists with the provided ID.",
            ),
            Some(_) if std::mem::take(&mut self.lose_next_create_reply) => {
                error(500, "backendError", "Backend Error")
            }
            Some(id) => ResponseTemplate::new(200).set_body_json(self.json(&id)),
        }
    }

    fn patch(&mut self, id: &str, meta: &Value, content: Option<Vec<u8>>) {
        let f = self.files.get_mut(id).unwrap();
        if let Some(n) = meta["name"].as_str() {
            f.name = n.to_string();
        }
        if let Some(app) = meta["appProperties"].as_object() {
            for (k, v) in app {
                f.app
                    .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        if let Some(c) = content {
            f.content = c;
            f.revisions += 1;
        }
    }

    /// The period folder's files (not superseded) by path.
    fn tree(&self, top: &str, period: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(pf) = self.child(top, period) else {
            return out;
        };
        let mut pending = vec![(pf, String::new())];
        while let Some((folder, prefix)) = pending.pop() {
            for (id, f) in &self.files {
                if !f.parents.contains(&folder) {
                    continue;
                }
                let path = if prefix.is_empty() {
                    f.name.clone()
                } else {
                    format!("{prefix}/{}", f.name)
                };
                if f.mime == FOLDER {
                    if path != "superseded" {
                        pending.push((id.clone(), path));
                    }
                } else {
                    out.insert(path, id.clone());
                }
            }
        }
        out
    }

    fn child(&self, parent: &str, name: &str) -> Option<String> {
        self.files
            .iter()
            .find(|(_, f)| f.parents.iter().any(|p| p == parent) && f.name == name)
            .map(|(id, _)| id.clone())
    }
}

/// The parts of a multipart/related body: (metadata JSON, media).
fn multipart(body: &[u8]) -> (Value, Vec<u8>) {
    let delim = format!("\r\n--{BOUNDARY}").into_bytes();
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(at) = find(rest, &delim) {
        parts.push(&rest[..at]);
        rest = &rest[at + delim.len()..];
    }
    parts.push(rest);
    // parts[0] is empty, then "\r\nheaders\r\n\r\nbody", last "--\r\n".
    let body_of = |p: &[u8]| {
        let at = find(p, b"\r\n\r\n").expect("part headers end");
        p[at + 4..].to_vec()
    };
    assert_eq!(parts.len(), 4, "two parts and the closing delimiter");
    assert!(parts[3].starts_with(b"--"));
    (
        serde_json::from_slice(&body_of(parts[1])).expect("metadata part is JSON"),
        body_of(parts[2]),
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Respond for Fake {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.0.lock().unwrap();
        let p = req.url.path().to_string();
        let m = req.method.as_str().to_string();
        if p == "/token" {
            return ResponseTemplate::new(200).set_body_json(
                json!({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}),
            );
        }
        s.log.push(format!(
            "{m} {p}{}",
            query(req, "uploadType")
                .map(|t| format!("?uploadType={t}"))
                .unwrap_or_default()
        ));
        // Chunks of a resumable session go to the session URI, which is
        // its own authorization.
        if let Some(sid) = p.strip_prefix("/session/") {
            let range = req.headers["content-range"].to_str().unwrap().to_string();
            let (span, total) = range
                .strip_prefix("bytes ")
                .unwrap()
                .split_once('/')
                .unwrap();
            let total: usize = total.parse().unwrap();
            let first: usize = span.split_once('-').unwrap().0.parse().unwrap();
            let sess = s.sessions.get_mut(sid).expect("a known session");
            if first != sess.got.len() {
                return error(400, "badRequest", "chunk out of order");
            }
            sess.got.extend_from_slice(&req.body);
            if sess.got.len() < total {
                return ResponseTemplate::new(308)
                    .insert_header("Range", format!("bytes=0-{}", sess.got.len() - 1));
            }
            let sess = s.sessions.remove(sid).unwrap();
            return match &sess.target {
                Some(id) => {
                    s.patch(id, &sess.meta, Some(sess.got));
                    ResponseTemplate::new(200).set_body_json(s.json(id))
                }
                None => {
                    let id = s.create(&sess.meta, &sess.mime, sess.got);
                    s.created(id)
                }
            };
        }
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if auth != format!("Bearer {ACCESS_TOKEN}") {
            return error(401, "authError", "Invalid Credentials");
        }
        let uploading = p.starts_with("/upload/") || p.starts_with("/resumable/");
        if uploading && std::mem::take(&mut s.limit_next_upload) {
            return error(403, "userRateLimitExceeded", "User Rate Limit Exceeded");
        }
        let file_id = |prefix: &str| p.strip_prefix(prefix).map(str::to_string);
        match (m.as_str(), p.as_str()) {
            ("GET", "/drive/v3/files") => {
                if s.reject_lists {
                    return error(401, "authError", "Invalid Credentials");
                }
                let q = query(req, "q").unwrap_or_default();
                let lits = literals(&q);
                // Drive lists the children of a folder one cannot see as
                // none at all.
                let parent = &lits[0];
                let mut found: Vec<(String, String)> = s
                    .files
                    .iter()
                    .filter(|(_, f)| f.parents.contains(parent))
                    .filter(|(_, f)| !q.contains("mimeType =") || f.mime == lits[1])
                    .filter(|(_, f)| !q.contains("name =") || f.name == lits[2])
                    .map(|(id, f)| (f.name.clone(), id.clone()))
                    .collect();
                found.sort();
                let start: usize = query(req, "pageToken")
                    .map(|t| t.parse().unwrap())
                    .unwrap_or(0);
                let page: Vec<Value> = found
                    .iter()
                    .skip(start)
                    .take(2)
                    .map(|(_, id)| s.json(id))
                    .collect();
                let mut body = json!({"kind": "drive#fileList", "incompleteSearch": s.incomplete, "files": page});
                if start + 2 < found.len() {
                    body["nextPageToken"] = json!((start + 2).to_string());
                }
                ResponseTemplate::new(200).set_body_json(body)
            }
            ("GET", "/drive/v3/files/generateIds") => {
                let n: u64 = query(req, "count").unwrap().parse().unwrap();
                let first = s.next;
                s.next += n;
                let ids: Vec<String> = (first..first + n).map(|i| format!("g{i:04}")).collect();
                ResponseTemplate::new(200).set_body_json(
                    json!({"kind": "drive#generatedIds", "space": "drive", "ids": ids}),
                )
            }
            ("POST", "/drive/v3/files") => {
                let meta: Value = serde_json::from_slice(&req.body).unwrap();
                let id = s.create(&meta, FOLDER, Vec::new());
                s.created(id)
            }
            ("POST", "/upload/drive/v3/files") => {
                assert_eq!(query(req, "uploadType").as_deref(), Some("multipart"));
                let (meta, media) = multipart(&req.body);
                let id = s.create(&meta, "application/octet-stream", media);
                s.created(id)
            }
            ("PATCH", _) if p.starts_with("/upload/drive/v3/files/") => {
                let id = file_id("/upload/drive/v3/files/").unwrap();
                let (meta, media) = multipart(&req.body);
                s.patch(&id, &meta, Some(media));
                ResponseTemplate::new(200).set_body_json(s.json(&id))
            }
            ("POST", "/resumable/upload/drive/v3/files") | ("PATCH", _)
                if p.starts_with("/resumable/upload/drive/v3/files") =>
            {
                let target = file_id("/resumable/upload/drive/v3/files/");
                let sid = format!("s{}", s.sessions.len() + s.next as usize);
                let mime = req.headers["x-upload-content-type"]
                    .to_str()
                    .unwrap()
                    .to_string();
                let meta: Value = serde_json::from_slice(&req.body).unwrap();
                s.sessions.insert(
                    sid.clone(),
                    Session {
                        target,
                        meta,
                        mime,
                        got: Vec::new(),
                    },
                );
                ResponseTemplate::new(200)
                    .insert_header("Location", format!("{}/session/{sid}", s.base))
            }
            ("PATCH", _) if p.starts_with("/drive/v3/files/") => {
                let id = file_id("/drive/v3/files/").unwrap();
                let meta: Value = serde_json::from_slice(&req.body).unwrap();
                s.patch(&id, &meta, None);
                let f = s.files.get_mut(&id).unwrap();
                if let Some(r) = query(req, "removeParents") {
                    f.parents.retain(|p| *p != r);
                }
                if let Some(a) = query(req, "addParents") {
                    f.parents.push(a);
                }
                ResponseTemplate::new(200).set_body_json(s.json(&id))
            }
            ("GET", _) if p.starts_with("/drive/v3/files/") => {
                let id = file_id("/drive/v3/files/").unwrap();
                match s.files.get(&id) {
                    Some(f) if query(req, "alt").as_deref() == Some("media") => {
                        ResponseTemplate::new(200).set_body_bytes(f.content.clone())
                    }
                    Some(_) => ResponseTemplate::new(200).set_body_json(s.json(&id)),
                    None => error(404, "notFound", &format!("File not found: {id}.")),
                }
            }
            _ => error(
                405,
                "methodNotAllowed",
                &format!("{m} {p} is not part of this fake"),
            ),
        }
    }
}

impl Fake {
    async fn start(top: &str) -> (MockServer, Fake) {
        let server = MockServer::start().await;
        let fake = Fake::default();
        fake.0.lock().unwrap().base = server.uri();
        // The folder the user shared with the service account.
        fake.0.lock().unwrap().files.insert(
            top.to_string(),
            DFile {
                name: "Audit 2026".into(),
                mime: FOLDER.into(),
                parents: vec!["root".into()],
                app: BTreeMap::new(),
                content: Vec::new(),
                revisions: 1,
            },
        );
        Mock::given(wiremock::matchers::any())
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        (server, fake)
    }

    fn uploads(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.contains("upload") || l.starts_with("POST /session/"))
            .cloned()
            .collect()
    }

    fn writes(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| !l.starts_with("GET "))
            .cloned()
            .collect()
    }

    fn clear_log(&self) {
        self.0.lock().unwrap().log.clear();
    }
}

/// Writes a downloaded copy of an export: path -> bytes.
fn write_copy(dir: &std::path::Path, files: impl IntoIterator<Item = (String, Vec<u8>)>) {
    for (p, b) in files {
        let at = dir.join(&p);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, b).unwrap();
    }
}

/// An evidence repository synced from the fixture, with credentials for
/// the fake.
struct Setup {
    f: Fixture,
    cfg: std::path::PathBuf,
    key: std::path::PathBuf,
    server: MockServer,
    fake: Fake,
}

async fn setup() -> Setup {
    let f = Fixture::new();
    let cfg = f.default_config();
    let out = sync_into(&f, &cfg, &["--period", "2026"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (server, fake) = Fake::start("top").await;
    let key = key_file(f.root.path(), &server.uri());
    Setup {
        f,
        cfg,
        key,
        server,
        fake,
    }
}

impl Setup {
    /// The binary with the fixture's config and repository (global
    /// options, so they follow the subcommand), the fake's address where
    /// Drive is read, and the key file.
    fn run(&self, args: &[&str]) -> std::process::Output {
        let repo = self.f.evidence();
        let uri = self.server.uri();
        let mut all = args.to_vec();
        all.extend_from_slice(&[
            "--config",
            self.cfg.to_str().unwrap(),
            "--repo",
            repo.to_str().unwrap(),
        ]);
        if args[0] == "export" || args.contains(&"--against-drive") {
            all.extend_from_slice(&["--api-url", &uri]);
        }
        cleartrail_guarded(
            &all,
            &[("GOOGLE_APPLICATION_CREDENTIALS", self.key.to_str().unwrap())],
        )
    }

    fn against_dir(&self, copy: &std::path::Path) -> std::process::Output {
        self.run(&[
            "verify",
            "--period",
            "2026",
            "--against-dir",
            copy.to_str().unwrap(),
        ])
    }

    fn export(&self, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["export", "gdrive", "--period", "2026", "--folder", "top"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// The packet committed on the evidence branch: path -> bytes.
    fn packet(&self) -> BTreeMap<String, Vec<u8>> {
        tree_files(&self.f.evidence(), "cleartrail/evidence")
            .into_iter()
            .filter_map(|(p, b)| p.strip_prefix("packets/2026/").map(|r| (r.to_string(), b)))
            .collect()
    }

    /// What Drive holds in the period folder: path -> bytes.
    fn drive(&self) -> BTreeMap<String, Vec<u8>> {
        let s = self.fake.0.lock().unwrap();
        s.tree("top", "2026")
            .into_iter()
            .map(|(p, id)| (p, s.files[&id].content.clone()))
            .collect()
    }

    fn assert_secret_free(&self, outs: &[&std::process::Output]) {
        let key = std::fs::read_to_string(&self.key).unwrap();
        let key: Value = serde_json::from_str(&key).unwrap();
        let pem_line = key["private_key"]
            .as_str()
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
        for o in outs {
            for text in [stdout(o), stderr(o)] {
                assert!(
                    !text.contains(ACCESS_TOKEN) && !text.contains(&pem_line),
                    "{text}"
                );
            }
        }
        for (p, b) in tree_files(&self.f.evidence(), "cleartrail/evidence") {
            let t = String::from_utf8_lossy(&b);
            assert!(!t.contains(ACCESS_TOKEN) && !t.contains(&pem_line), "{p}");
        }
        for (p, b) in self.drive() {
            let t = String::from_utf8_lossy(&b);
            assert!(!t.contains(ACCESS_TOKEN) && !t.contains(&pem_line), "{p}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn export_uploads_once_then_nothing_then_revisions_and_supersedes() {
    let s = setup().await;
    let first = s.export(&[]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    // Drive holds exactly the committed packet, plus the export record.
    let packet = s.packet();
    assert!(packet.contains_key("manifest.json") && packet.len() > 3);
    let mut drive = s.drive();
    let record: Value =
        serde_json::from_slice(&drive.remove("export-manifest.json").unwrap()).unwrap();
    assert_eq!(
        drive, packet,
        "every packet file exactly once, byte for byte"
    );
    // Every file one multipart upload, the folders metadata-only creates.
    let uploads = s.fake.uploads();
    assert_eq!(uploads.len(), packet.len() + 1, "{uploads:?}");
    assert!(
        uploads
            .iter()
            .all(|u| u == "POST /upload/drive/v3/files?uploadType=multipart")
    );
    // The record names each file's Drive id and digest.
    let ids = s.fake.0.lock().unwrap().tree("top", "2026");
    assert_eq!(record["schema"], "cleartrail.export/v1");
    assert_eq!(record["files"].as_array().unwrap().len(), packet.len());
    for f in record["files"].as_array().unwrap() {
        let p = f["path"].as_str().unwrap();
        assert_eq!(f["id"].as_str(), ids.get(p).map(String::as_str), "{p}");
        assert_eq!(f["sha256"].as_str().unwrap(), sha(&packet[p]), "{p}");
    }
    assert!(
        stdout(&first).contains(&format!(
            "{} created, 0 new revisions, 0 superseded, 0 unchanged",
            packet.len() + 1
        )),
        "{}",
        stdout(&first)
    );

    // Again: nothing uploaded, nothing committed.
    let commits = commit_count(&s.f.evidence(), "cleartrail/evidence");
    s.fake.clear_log();
    let again = s.export(&[]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(s.fake.writes(), Vec::<String>::new());
    assert_eq!(
        commit_count(&s.f.evidence(), "cleartrail/evidence"),
        commits
    );
    assert!(
        stdout(&again).contains("0 created, 0 new revisions, 0 superseded"),
        "{}",
        stdout(&again)
    );

    // The export verifies, through the API and as a downloaded copy.
    let v = s.run(&["verify", "--period", "2026", "--against-drive", "top"]);
    assert_eq!(code(&v), 0, "{}{}", stdout(&v), stderr(&v));
    let copy = s.f.root.path().join("copy");
    write_copy(
        &copy,
        s.drive().into_iter().chain([(
            "export-manifest.json".to_string(),
            serde_json::to_vec(&record).unwrap(),
        )]),
    );
    let d = s.against_dir(&copy);
    assert_eq!(code(&d), 0, "{}{}", stdout(&d), stderr(&d));

    // A narrower packet: the other framework's files leave the packet,
    // moved to superseded/ (never deleted); the changed index and
    // manifest get new revisions of the same files.
    s.fake.clear_log();
    let before = s.fake.0.lock().unwrap().files.len();
    let narrow = s.export(&["--framework", "soc2"]);
    assert_eq!(code(&narrow), 0, "{}", stderr(&narrow));
    let packet = s.packet();
    let mut drive = s.drive();
    drive.remove("export-manifest.json");
    assert_eq!(drive, packet);
    let st = s.fake.0.lock().unwrap();
    assert_eq!(st.files.len(), before + 1, "only superseded/ was added");
    let superseded = st
        .child(&st.child("top", "2026").unwrap(), "superseded")
        .unwrap();
    let moved: Vec<&DFile> = st
        .files
        .values()
        .filter(|f| f.parents.contains(&superseded))
        .collect();
    assert!(!moved.is_empty());
    assert!(
        moved.iter().all(|f| f.name.starts_with("iso27001-2022/")),
        "renamed to their packet path"
    );
    let manifest_id = &ids["manifest.json"];
    assert_eq!(
        st.files[manifest_id].revisions, 2,
        "a new revision, same id"
    );
    drop(st);
    assert!(!s.fake.writes().iter().any(|w| w.starts_with("DELETE")));
    assert!(
        s.fake
            .uploads()
            .iter()
            .any(|u| u.starts_with("PATCH /upload/drive/v3/files/"))
    );
    s.assert_secret_free(&[&first, &again, &narrow, &v, &d]);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_each_tampered_missing_or_extra_exported_file() {
    let s = setup().await;
    let out = s.export(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ids = s.fake.0.lock().unwrap().tree("top", "2026");
    let page = ids
        .keys()
        .find(|p| p.ends_with(".md") && p.contains("controls/"))
        .unwrap()
        .clone();
    // Someone edits a page on Drive (a new revision, Drive's checksum
    // follows; ClearTrail's appProperties are left claiming the old one).
    {
        let mut st = s.fake.0.lock().unwrap();
        st.files
            .get_mut(&ids[&page])
            .unwrap()
            .content
            .extend_from_slice(b"\nAll good.\n");
        let pf = st.child("top", "2026").unwrap();
        st.create(
            &json!({"name": "notes.md", "parents": [pf]}),
            "text/markdown",
            b"x".to_vec(),
        )
        .unwrap();
        let index = ids
            .keys()
            .find(|p| p.ends_with("index.md"))
            .unwrap()
            .clone();
        let id = ids[&index].clone();
        st.files.get_mut(&id).unwrap().parents = vec!["elsewhere".into()];
    }
    let v = s.run(&["verify", "--period", "2026", "--against-drive", "top"]);
    assert_eq!(code(&v), 1, "{}{}", stdout(&v), stderr(&v));
    let text = stdout(&v);
    assert!(
        text.contains(&format!(
            "error[export-mismatch]: drive:top/2026/{page}: hashes to"
        )),
        "{text}"
    );
    assert!(
        text.contains("error[export-extra]: drive:top/2026/notes.md"),
        "{text}"
    );
    let index = ids.keys().find(|p| p.ends_with("index.md")).unwrap();
    assert!(
        text.contains(&format!("error[export-missing]: drive:top/2026/{index}: ")),
        "{text}"
    );
    assert_eq!(text.matches("error[").count(), 3, "{text}");

    // Put right by exporting again; then a second folder of a packet
    // folder's name, holding a page of its own, and the record gone;
    // Drive has no checksums, so the content is what is hashed.
    let again = s.export(&[]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let v = s.run(&["verify", "--period", "2026", "--against-drive", "top"]);
    assert_eq!(code(&v), 0, "{}{}", stdout(&v), stderr(&v));
    let dir = page.split('/').next().unwrap().to_string();
    {
        let mut st = s.fake.0.lock().unwrap();
        st.no_checksums = true;
        let pf = st.child("top", "2026").unwrap();
        let twin = st
            .create(
                &json!({"name": dir, "mimeType": FOLDER, "parents": [pf]}),
                FOLDER,
                vec![],
            )
            .unwrap();
        st.create(
            &json!({"name": "extra.md", "parents": [twin]}),
            "text/markdown",
            b"y".to_vec(),
        );
        let record = st.child(&pf, "export-manifest.json").unwrap();
        st.files.get_mut(&record).unwrap().parents = vec!["elsewhere".into()];
        st.files.get_mut(&ids[&page]).unwrap().content.push(b'!');
    }
    let v = s.run(&["verify", "--period", "2026", "--against-drive", "top"]);
    assert_eq!(code(&v), 1, "{}{}", stdout(&v), stderr(&v));
    let text = stdout(&v);
    for line in [
        format!("error[export-extra]: drive:top/2026/{dir}: a second folder of this name"),
        format!("error[export-extra]: drive:top/2026/{dir}/extra.md: "),
        "error[export-missing]: drive:top/2026/export-manifest.json: ".to_string(),
        format!("error[export-mismatch]: drive:top/2026/{page}: hashes to"),
    ] {
        assert!(text.contains(&line), "{line}\n{text}");
    }
    // Exporting again moves the twin out, emptied, and puts the rest
    // right (by Drive's checksums: without them, the file's own record
    // of its digest is all an export has).
    s.fake.0.lock().unwrap().no_checksums = false;
    let healed = s.export(&[]);
    assert_eq!(code(&healed), 0, "{}", stderr(&healed));
    assert!(
        stdout(&healed).contains(&format!("superseded: {dir}/extra.md")),
        "{}",
        stdout(&healed)
    );
    let v = s.run(&["verify", "--period", "2026", "--against-drive", "top"]);
    assert_eq!(code(&v), 0, "{}{}", stdout(&v), stderr(&v));

    // A downloaded copy: a byte changed, a symlink pointing outside.
    let copy = s.f.root.path().join("copy");
    let record = {
        let st = s.fake.0.lock().unwrap();
        let pf = st.child("top", "2026").unwrap();
        st.files[&st.child(&pf, "export-manifest.json").unwrap()]
            .content
            .clone()
    };
    write_copy(
        &copy,
        s.packet()
            .into_iter()
            .chain([("export-manifest.json".to_string(), record)]),
    );
    let ok = s.against_dir(&copy);
    assert_eq!(code(&ok), 0, "{}", stdout(&ok));
    let mut bytes = std::fs::read(copy.join(&page)).unwrap();
    bytes[0] ^= 1;
    std::fs::write(copy.join(&page), bytes).unwrap();
    std::fs::remove_file(copy.join("manifest.json")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", copy.join("manifest.json")).unwrap();
    let bad = s.against_dir(&copy);
    assert_eq!(code(&bad), 1, "{}", stdout(&bad));
    let text = stdout(&bad);
    assert!(
        text.contains(&format!(
            "error[export-mismatch]: {}: hashes to",
            copy.join(&page).display()
        )),
        "{text}"
    );
    assert!(
        text.contains("manifest.json: is a symlink to /etc/passwd"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_export_writes_nothing_and_says_why() {
    let s = setup().await;
    let before = tree_files(&s.f.evidence(), "cleartrail/evidence");
    let commits = commit_count(&s.f.evidence(), "cleartrail/evidence");

    // Drive refuses the token: exit 3, the endpoint and status named,
    // nothing uploaded, the branch untouched.
    s.fake.0.lock().unwrap().reject_lists = true;
    let out = s.export(&[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("drive/v3/files") && stderr(&out).contains("HTTP 401"),
        "{}",
        stderr(&out)
    );
    assert!(s.fake.uploads().is_empty());
    s.fake.0.lock().unwrap().reject_lists = false;

    // Drive says its listing is incomplete: nothing is acted on.
    s.fake.0.lock().unwrap().incomplete = true;
    let out = s.export(&[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("incomplete listing"),
        "{}",
        stderr(&out)
    );
    assert!(s.fake.writes().is_empty(), "{:?}", s.fake.writes());
    s.fake.0.lock().unwrap().incomplete = false;

    // A folder that is not there (or not shared): exit 2, and how to fix.
    let out = s.run(&["export", "gdrive", "--period", "2026", "--folder", "nope"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Drive folder nope was not found")
            && stderr(&out).contains("shared with"),
        "{}",
        stderr(&out)
    );

    // No credentials: exit 2, naming the variable, before any request.
    s.fake.clear_log();
    let repo = s.f.evidence();
    let out = cleartrail(&[
        "export",
        "gdrive",
        "--period",
        "2026",
        "--folder",
        "top",
        "--config",
        s.cfg.to_str().unwrap(),
        "--repo",
        repo.to_str().unwrap(),
        "--api-url",
        &s.server.uri(),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{}",
        stderr(&out)
    );
    assert!(s.fake.0.lock().unwrap().log.is_empty());

    assert_eq!(tree_files(&s.f.evidence(), "cleartrail/evidence"), before);
    assert_eq!(
        commit_count(&s.f.evidence(), "cleartrail/evidence"),
        commits
    );
    assert_eq!(
        s.fake.0.lock().unwrap().files.len(),
        1,
        "only the shared folder"
    );
}

fn quick() -> Politeness {
    Politeness {
        backoff_base: Duration::from_millis(2),
        backoff_cap: Duration::from_millis(10),
        secondary_wait: Duration::from_millis(10),
        max_attempts: 4,
        ..Politeness::default()
    }
}

/// A Drive client of the fake, with a key file in a folder kept alive by
/// the second value.
async fn client_of(server: &MockServer) -> (GdriveClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let env = GdriveEnv {
        credentials: key_file(dir.path(), &server.uri()),
        api: format!("{}/", server.uri()),
    };
    (GdriveClient::connect(&env, quick()).await.unwrap(), dir)
}

/// Large files go by resumable upload in 256 KiB chunks, each answered
/// 308 until the last; a rate-limited upload is retried; a changed large
/// file becomes a resumable new revision.
#[tokio::test(flavor = "multi_thread")]
async fn large_files_go_by_resumable_upload_in_chunks() {
    let (server, fake) = Fake::start("top").await;
    let (client, _dir) = client_of(&server).await;
    let drive = Drive::new(
        &client,
        client::FILE,
        Options {
            resumable_over: 64 << 10,
            chunk_size: 256 << 10,
        },
    );
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let files = vec![
        PacketFile {
            path: "soc2/controls/CC8.1.md".into(),
            bytes: big.clone(),
        },
        PacketFile {
            path: "manifest.json".into(),
            bytes: b"{}\n".to_vec(),
        },
    ];
    fake.0.lock().unwrap().limit_next_upload = true;
    let out = drive.export("top", "2026", "c0ffee", &files).await.unwrap();
    assert_eq!(
        out.created,
        vec![
            "soc2/controls/CC8.1.md",
            "manifest.json",
            "export-manifest.json"
        ]
    );
    assert_eq!(
        client
            .polite
            .counts
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let chunks = |fake: &Fake| {
        fake.uploads()
            .iter()
            .filter(|u| u.starts_with("POST /session/"))
            .count()
    };
    assert_eq!(
        chunks(&fake),
        3,
        "600,000 bytes in 256 KiB chunks: {:?}",
        fake.uploads()
    );
    let held = fake.0.lock().unwrap().tree("top", "2026");
    let content = |fake: &Fake, p: &str| {
        let st = fake.0.lock().unwrap();
        st.files[&held[p]].content.clone()
    };
    assert_eq!(content(&fake, "soc2/controls/CC8.1.md"), big);

    // Changed: a resumable new revision of the same file.
    let mut changed = big.clone();
    changed[599_999] ^= 0xff;
    let files = vec![
        PacketFile {
            path: "soc2/controls/CC8.1.md".into(),
            bytes: changed.clone(),
        },
        PacketFile {
            path: "manifest.json".into(),
            bytes: b"{}\n".to_vec(),
        },
    ];
    fake.clear_log();
    let out = drive.export("top", "2026", "c0ffee", &files).await.unwrap();
    assert_eq!(
        out.revised,
        vec!["soc2/controls/CC8.1.md", "export-manifest.json"]
    );
    assert!(
        fake.uploads()
            .iter()
            .any(|u| u.starts_with("PATCH /resumable/upload/drive/v3/files/"))
    );
    assert_eq!(chunks(&fake), 3);
    assert_eq!(content(&fake, "soc2/controls/CC8.1.md"), changed);
    assert_eq!(fake.0.lock().unwrap().tree("top", "2026"), held, "same ids");
}

/// A create whose answer is lost (Drive made the file, then a 500) is
/// retried with the same pre-generated id: Drive's 409 says it exists,
/// and there is still one file.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_retried_after_a_lost_answer_makes_one_file() {
    let (server, fake) = Fake::start("top").await;
    let (client, _dir) = client_of(&server).await;
    let drive = Drive::new(&client, client::FILE, Options::default());
    let files = vec![
        PacketFile {
            path: "soc2/index.md".into(),
            bytes: b"# SOC 2\n".to_vec(),
        },
        PacketFile {
            path: "manifest.json".into(),
            bytes: b"{}\n".to_vec(),
        },
    ];
    fake.0.lock().unwrap().lose_next_create_reply = true;
    let out = drive.export("top", "2026", "c0ffee", &files).await.unwrap();
    assert_eq!(
        out.created,
        vec!["soc2/index.md", "manifest.json", "export-manifest.json"]
    );
    assert_eq!(
        client
            .polite
            .counts
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let st = fake.0.lock().unwrap();
    // top, 2026, soc2 and three files: nothing twice.
    assert_eq!(
        st.files.len(),
        6,
        "{:?}",
        st.files.keys().collect::<Vec<_>>()
    );
    let record: Value =
        serde_json::from_slice(&st.files[&st.tree("top", "2026")["export-manifest.json"]].content)
            .unwrap();
    let tree = st.tree("top", "2026");
    for f in record["files"].as_array().unwrap() {
        assert_eq!(
            f["id"].as_str(),
            tree.get(f["path"].as_str().unwrap()).map(String::as_str)
        );
    }
}
