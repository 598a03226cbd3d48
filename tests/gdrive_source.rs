//! The `gdrive` source against a local mock of Google's token endpoint and
//! Drive API v3 (wiremock, started by each test): a service account key
//! signed for the mock's `token_uri`, `files.list` pages by
//! `nextPageToken` with a subfolder, a Doc exported, a file downloaded, a
//! native file that cannot be, permissions with a public link,
//! revisions, a 403 `userRateLimitExceeded` waited out, a 404 that names
//! the endpoint, the re-run that downloads nothing, the policy checks on
//! Drive documents, and credentials that never show.

mod common;

use cleartrail::connectors::gdrive::client::{GdriveClient, GdriveEnv};
use cleartrail::connectors::gdrive::{GdriveSource, GdriveSpec};
use cleartrail::connectors::http::Politeness;
use cleartrail::connectors::{self, Limits, Outcome, QueryResult};
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ACCESS_TOKEN: &str = "ya29.NeverPrintThisDriveAccessToken";

fn quick() -> Politeness {
    Politeness {
        backoff_base: Duration::from_millis(2),
        backoff_cap: Duration::from_millis(10),
        secondary_wait: Duration::from_millis(10),
        max_attempts: 4,
        ..Politeness::default()
    }
}

fn file(id: &str, name: &str, mime: &str, version: &str, extra: Value) -> Value {
    let mut f = json!({
        "id": id, "name": name, "mimeType": mime, "version": version,
        "modifiedTime": "2026-04-01T09:00:00.000Z", "headRevisionId": format!("rev-{id}"),
        "owners": [{"displayName": "Ann", "emailAddress": "ann@acme.example"}],
        "lastModifyingUser": {"displayName": "Bob", "emailAddress": "bob@acme.example"},
        "webViewLink": format!("https://docs.google.com/document/d/{id}/edit"),
    });
    for (k, v) in extra.as_object().unwrap() {
        f[k] = v.clone();
    }
    f
}

const DOC: &str = "application/vnd.google-apps.document";
const FOLDER: &str = "application/vnd.google-apps.folder";

/// The listing: the top folder over two pages (a subfolder on the
/// first), the subfolder in one; every list answers from `versions`
/// (so a test can move a file's version). The first request is told to
/// slow down (Drive's 403 `userRateLimitExceeded`).
struct Listing {
    first: Mutex<bool>,
    version: Mutex<String>,
    /// old.pdf grown past any limit.
    grown: Mutex<bool>,
}

impl Respond for Listing {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        if std::mem::replace(&mut *self.first.lock().unwrap(), false) {
            return ResponseTemplate::new(403).set_body_json(json!({"error": {
                "code": 403, "message": "User Rate Limit Exceeded",
                "errors": [{"domain": "usageLimits", "reason": "userRateLimitExceeded", "message": "User Rate Limit Exceeded"}]}}));
        }
        let q = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "q")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let token = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "pageToken")
            .map(|(_, v)| v.to_string());
        let v = self.version.lock().unwrap().clone();
        let body = if q.starts_with("'top' in parents") {
            match token.as_deref() {
                None => json!({"nextPageToken": "top-2", "files": [
                    file("d-access", "Access Control Policy", DOC, &v, json!({})),
                    file("f-archive", "Archive", FOLDER, "1", json!({})),
                ]}),
                _ => json!({"files": [
                    file("d-ir", "Incident Response", DOC, "3", json!({})),
                    file("s-budget", "Budget", "application/vnd.google-apps.spreadsheet", "2", json!({})),
                    file("d-vendor", "Vendor Policy", DOC, "4", json!({"properties": {"owner": "cy@acme.example", "last_reviewed": "2026-02-01"}})),
                ]}),
            }
        } else if q.starts_with("'f-archive' in parents") {
            let (version, size) = if *self.grown.lock().unwrap() {
                ("2", "999999999999")
            } else {
                ("1", "12")
            };
            json!({"files": [file("p-old", "old.pdf", "application/pdf", version, json!({"size": size}))]})
        } else {
            return ResponseTemplate::new(404).set_body_json(
                json!({"error": {"code": 404, "message": format!("File not found: {q}.")}}),
            );
        };
        ResponseTemplate::new(200).set_body_json(body)
    }
}

struct Shared(&'static Listing);
impl Respond for Shared {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.respond(req)
    }
}

async fn mount(server: &MockServer) -> &'static Listing {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}),
        ))
        .mount(server)
        .await;
    let listing: &'static Listing = Box::leak(Box::new(Listing {
        first: Mutex::new(true),
        version: Mutex::new("5".into()),
        grown: Mutex::new(false),
    }));
    Mock::given(method("GET"))
        .and(path("/drive/v3/files"))
        .respond_with(Shared(listing))
        .mount(server)
        .await;
    for (id, text) in [
        (
            "d-access",
            "---\nowner: ann@acme.example\nlast_reviewed: 2026-03-01\ntopics: [access-control]\n---\n# Access Control Policy\n",
        ),
        // No owner, reviewed long ago.
        (
            "d-ir",
            "---\nlast_reviewed: 2024-01-15\n---\n# Incident Response\n",
        ),
        (
            "d-vendor",
            "# Vendor Policy\n\nNo front matter: Drive properties say who owns it.\n",
        ),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/drive/v3/files/{id}/export")))
            .and(query_param("mimeType", "text/markdown"))
            .respond_with(ResponseTemplate::new(200).set_body_string(text))
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/drive/v3/files/p-old"))
        .and(query_param("alt", "media"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"%PDF-1.4 old".to_vec()))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(r"^/drive/v3/files/[^/]+/permissions$"))
        .respond_with(|req: &Request| {
            let public = req.url.path().contains("d-vendor");
            let mut perms = vec![json!({"id": "1", "type": "user", "role": "owner", "emailAddress": "ann@acme.example"})];
            if public {
                perms.push(json!({"id": "anyoneWithLink", "type": "anyone", "role": "reader", "allowFileDiscovery": false}));
            }
            ResponseTemplate::new(200).set_body_json(json!({"permissions": perms}))
        })
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(r"^/drive/v3/files/[^/]+/revisions$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"revisions": [
            {"id": "1", "modifiedTime": "2026-01-01T00:00:00.000Z", "lastModifyingUser": {"emailAddress": "ann@acme.example"}},
            {"id": "2", "modifiedTime": "2026-04-01T09:00:00.000Z", "lastModifyingUser": {"emailAddress": "bob@acme.example"}}
        ]})))
        .mount(server)
        .await;
    listing
}

fn spec(folders: &[&str]) -> GdriveSpec {
    GdriveSpec {
        folders: folders.iter().map(|s| s.to_string()).collect(),
        ..GdriveSpec::default()
    }
}

async fn source(server: &MockServer, key: &std::path::Path, folders: &[&str]) -> GdriveSource {
    let env = GdriveEnv {
        credentials: key.to_path_buf(),
        api: format!("{}/", server.uri()),
    };
    let mut spec = spec(folders);
    spec.api_url = Some(server.uri());
    GdriveSource::new(
        "policies-drive".into(),
        spec,
        GdriveClient::connect(&env, quick()).await.unwrap(),
    )
}

fn ids(r: &QueryResult) -> Vec<String> {
    let mut v: Vec<String> = r.items.iter().map(|a| a.object_id.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn documents_of_every_folder_with_content_permissions_and_revisions() {
    let server = MockServer::start().await;
    let listing = mount(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), &server.uri());
    // Two documents a page: five documents over three pages, the listing
    // read once.
    let src = source(&server, &key, &["top"]).await.with_docs_per_page(2);
    let r = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap();
    let docs = &r[0];
    assert_eq!(docs.outcome, Outcome::Complete);
    assert_eq!(docs.pages, 3);
    assert_eq!(
        ids(docs),
        [
            "policies-drive/d-access",
            "policies-drive/d-ir",
            "policies-drive/d-vendor",
            "policies-drive/p-old",
            "policies-drive/s-budget"
        ]
    );
    // The rate-limit answer was waited out, once.
    assert_eq!(src.client().polite.counts.retries.load(Ordering::SeqCst), 1);
    let by = |id: &str| {
        docs.items
            .iter()
            .find(|a| a.object_id.ends_with(id))
            .unwrap()
    };
    let access = by("d-access");
    assert_eq!(access.title, "Access Control Policy");
    assert_eq!(access.content["front_matter"]["owner"], "ann@acme.example");
    assert_eq!(access.content["media_type"], "text/markdown");
    assert_eq!(access.content["public_link"], false);
    assert_eq!(access.content["revisions"].as_array().unwrap().len(), 2);
    assert!(
        access
            .captured
            .as_ref()
            .unwrap()
            .bytes
            .starts_with(b"---\nowner: ann@acme.example")
    );
    let vendor = by("d-vendor");
    assert_eq!(vendor.content["public_link"], true);
    assert_eq!(vendor.content["front_matter"]["owner"], "cy@acme.example");
    let old = by("p-old");
    assert_eq!(old.title, "Archive/old.pdf");
    assert_eq!(old.captured.as_ref().unwrap().bytes, b"%PDF-1.4 old");
    let budget = by("s-budget");
    assert!(budget.captured.is_none());
    assert_eq!(docs.skipped.len(), 1);
    assert_eq!(docs.skipped[0].path, "Budget");
    assert!(
        docs.skipped[0]
            .reason
            .contains("only Google Docs are exported")
    );
    // The access token went to Drive; the key never left the machine.
    let reqs = server.received_requests().await.unwrap();
    for q in reqs.iter().filter(|q| q.url.path().starts_with("/drive/")) {
        assert_eq!(
            q.headers.get("authorization").unwrap().to_str().unwrap(),
            format!("Bearer {ACCESS_TOKEN}")
        );
    }
    assert!(!format!("{r:?}").contains("PRIVATE KEY") && !format!("{r:?}").contains(ACCESS_TOKEN));

    // Nothing changed: only the listing is read again, and it is not
    // modified.
    let states: BTreeMap<String, String> = r
        .iter()
        .filter_map(|q| Some((q.label(), q.state.clone()?)))
        .collect();
    let before = server.received_requests().await.unwrap().len();
    let again = connectors::collect(&src, Limits::default(), chrono::Utc::now, &states)
        .await
        .unwrap();
    assert_eq!(again[0].outcome, Outcome::NotModified);
    let reqs = server.received_requests().await.unwrap();
    assert!(
        reqs[before..]
            .iter()
            .all(|q| q.url.path() == "/drive/v3/files"),
        "{:?}",
        reqs[before..]
            .iter()
            .map(|q| q.url.to_string())
            .collect::<Vec<_>>()
    );
    // One document changed: everything is read again, completely.
    *listing.version.lock().unwrap() = "6".into();
    let third = connectors::collect(&src, Limits::default(), chrono::Utc::now, &states)
        .await
        .unwrap();
    assert_eq!(third[0].outcome, Outcome::Complete);
    assert_eq!(third[0].items.len(), 5);
}

#[tokio::test]
async fn a_folder_that_is_not_there_names_the_endpoint() {
    let server = MockServer::start().await;
    let listing = mount(&server).await;
    *listing.first.lock().unwrap() = false;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), &server.uri());
    let src = source(&server, &key, &["gone"]).await;
    let err = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "GET {}/drive/v3/files?q='gone' in parents and trashed = false: HTTP 404: File not found",
            server.uri()
        )),
        "{err}"
    );
}

/// The whole command: Drive documents are committed with their captured
/// content, the policy checks judge them, a re-run downloads nothing and
/// commits nothing, and neither the key nor the token shows anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn run_commits_drive_policies_and_the_checks_judge_them() {
    let server = MockServer::start().await;
    let listing = mount(&server).await;
    let f = Fixture::new();
    let key = key_file(f.root.path(), &server.uri());
    let cfg = f.config(&format!(
        "version: 1\nperiod: 2026\nsources:\n  policies-drive:\n    type: gdrive\n    folders: [top]\n    api_url: {}\n",
        server.uri()
    ));
    let key_s = key.to_str().unwrap().to_string();
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", key_s.as_str())];
    let run = || run_env(&cfg, &f.evidence(), &env);
    let first = run();
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    let docs: Vec<&String> = files
        .keys()
        .filter(|k| k.starts_with("evidence/gdrive/document/") && k.ends_with(".json"))
        .collect();
    assert_eq!(docs.len(), 5, "{docs:?}");
    let owner: Value = serde_json::from_slice(&files["checks/policy-missing-owner.json"]).unwrap();
    let text = owner.to_string();
    assert!(text.contains("policies-drive/d-ir"), "{text}");
    let review: Value =
        serde_json::from_slice(&files["checks/policy-review-overdue.json"]).unwrap();
    assert!(
        review.to_string().contains("last reviewed 2024-01-15"),
        "{review}"
    );
    let before = server.received_requests().await.unwrap().len();
    let second = run();
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    assert!(
        stdout(&second).contains("nothing new: no commit"),
        "{}",
        stdout(&second)
    );
    let reqs = server.received_requests().await.unwrap();
    assert!(
        !reqs[before..]
            .iter()
            .any(|q| q.url.path().ends_with("/export")
                || q.url.query().unwrap_or("").contains("alt=media"))
    );
    // old.pdf grew past the limit: kept without content, and the content
    // captured before goes.
    let captured = |files: &BTreeMap<String, Vec<u8>>| {
        files
            .keys()
            .filter(|k| {
                k.starts_with("evidence/gdrive/document/")
                    && k.contains("p-old")
                    && !k.ends_with(".json")
            })
            .count()
    };
    assert_eq!(captured(&files), 1);
    *listing.grown.lock().unwrap() = true;
    let third = run();
    assert_eq!(code(&third), 0, "{}", stderr(&third));
    let files = tree_files(&f.evidence(), "cleartrail/evidence");
    assert_eq!(captured(&files), 0);
    let verify = cleartrail_guarded(&["verify", "--repo", f.evidence().to_str().unwrap()], &[]);
    assert_eq!(code(&verify), 0, "{}", stdout(&verify));
    let pem = std::fs::read_to_string(f.root.path().join("sa")).unwrap();
    let secret_line = pem.lines().nth(1).unwrap();
    for o in [&first, &second] {
        for text in [stdout(o), stderr(o)] {
            assert!(!text.contains(ACCESS_TOKEN) && !text.contains(secret_line));
        }
    }
    for (p, bytes) in tree_files(&f.evidence(), "cleartrail/evidence") {
        let t = String::from_utf8_lossy(&bytes);
        assert!(!t.contains(ACCESS_TOKEN) && !t.contains(secret_line), "{p}");
    }
}

#[test]
fn missing_credentials_are_a_usage_error_naming_what_to_set() {
    let f = Fixture::new();
    let cfg = f.config("version: 1\nsources:\n  d:\n    type: gdrive\n    folders: [top]\n");
    let out = run_env(
        &cfg,
        &f.evidence(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", "")],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("set GOOGLE_APPLICATION_CREDENTIALS"),
        "{}",
        stderr(&out)
    );
}

/// The field masks name fields Drive's own discovery document has, and
/// Drive's example error body reaches the error (both read in place when
/// `CLEARTRAIL_API_FIXTURES` points at the contract fixtures).
#[tokio::test]
async fn field_masks_and_errors_match_the_discovery_document() {
    let Some(dir) = std::env::var_os("CLEARTRAIL_API_FIXTURES") else {
        return;
    };
    let read = |name: &str| -> Value {
        let p = std::path::Path::new(&dir).join("gdrive").join(name);
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (CLEARTRAIL_API_FIXTURES is set, the data must be there)",
                p.display()
            )
        }))
        .unwrap()
    };
    let schemas = read("discovery-schemas.json");
    /// `a, b(c, d), e` -> [(a, []), (b, [c, d]), (e, [])]
    fn mask(m: &str) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        let (mut depth, mut cur, mut inner) = (0, String::new(), String::new());
        for ch in m.chars().chain([',']) {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    let subs = inner
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    out.push((cur.trim().to_string(), subs));
                    cur.clear();
                    inner.clear();
                }
                c if depth > 0 => inner.push(c),
                c => cur.push(c),
            }
        }
        out
    }
    use cleartrail::connectors::gdrive::{FILE_FIELDS, PERMISSION_FIELDS, REVISION_FIELDS};
    for (m, list, item, nested) in [
        (FILE_FIELDS, "FileList", "File", "User"),
        (PERMISSION_FIELDS, "PermissionList", "Permission", ""),
        (REVISION_FIELDS, "RevisionList", "Revision", "User"),
    ] {
        for (field, subs) in mask(m) {
            assert!(
                schemas[list]["properties"][&field].is_object(),
                "{list}.{field}"
            );
            let inner = m[m.find('(').unwrap() + 1..m.rfind(')').unwrap()].to_string();
            if subs.is_empty() {
                continue;
            }
            for (f, deeper) in mask(&inner) {
                assert!(schemas[item]["properties"][&f].is_object(), "{item}.{f}");
                for d in deeper {
                    assert!(
                        schemas[nested]["properties"][&d].is_object(),
                        "{nested}.{d}"
                    );
                }
            }
        }
    }
    let server = MockServer::start().await;
    mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/drive/v3/files"))
        .respond_with(ResponseTemplate::new(400).set_body_json(read("error-400-bad-request.json")))
        .with_priority(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), &server.uri());
    let src = source(&server, &key, &["top"]).await;
    let err = connectors::collect(&src, Limits::default(), chrono::Utc::now, &BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("HTTP 400: Sorting is not supported for queries with fullText terms. Results are always in descending relevance order."),
        "{err}"
    );
}
