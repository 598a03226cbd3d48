//! Security alerts: Dependabot, code scanning and secret scanning, in
//! every state, with when and by whom each was fixed, dismissed or
//! resolved, and its severity, for `alert-past-sla`.
//!
//! An organization's alerts come from its organization-wide list (one
//! paged list, not one per repository); repositories named outside it
//! are read one by one, where a 404 means the feature is off there. All
//! pages are revalidated next run: when none changed the query is not
//! modified, else every list is read again, so a closed repository's
//! alerts are seen to be gone. A secret-scanning alert's secret is never
//! read into the evidence.

use super::{GithubSource, PagesSaved, blank, pages};
use crate::artifact::Artifact;
use crate::connectors::{ConnectorError, Outcome, Page, PageRequest};
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alerts {
    Dependabot,
    CodeScanning,
    SecretScanning,
}

impl Alerts {
    /// The path segment of its endpoints.
    fn segment(self) -> &'static str {
        match self {
            Alerts::Dependabot => "dependabot",
            Alerts::CodeScanning => "code-scanning",
            Alerts::SecretScanning => "secret-scanning",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Alerts::Dependabot => "dependabot-alert",
            Alerts::CodeScanning => "code-scanning-alert",
            Alerts::SecretScanning => "secret-scanning-alert",
        }
    }
}

impl GithubSource {
    pub(super) async fn alerts(
        &self,
        which: Alerts,
        req: PageRequest,
    ) -> Result<Page, ConnectorError> {
        let seg = which.segment();
        // The secret itself is not even downloaded.
        let extra = if which == Alerts::SecretScanning {
            "&hide_secret=true"
        } else {
            ""
        };
        // (start URL, the repository it is about when it is per repository)
        let mut starts: Vec<(String, Option<&str>)> = Vec::new();
        if let Some(org) = &self.spec.org {
            starts.push((
                self.client
                    .url(&format!("/orgs/{org}/{seg}/alerts?per_page=100{extra}")),
                None,
            ));
        }
        for full in &self.listing.names {
            let owner = full.split('/').next().unwrap_or_default();
            let in_org = self
                .spec
                .org
                .as_deref()
                .is_some_and(|o| o.eq_ignore_ascii_case(owner));
            if !in_org {
                starts.push((
                    self.client
                        .url(&format!("/repos/{full}/{seg}/alerts?per_page=100{extra}")),
                    Some(full.as_str()),
                ));
            }
        }
        let scope = self.listing_scope();
        let saved = req
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str::<PagesSaved>(s).ok())
            .filter(|s| s.scope == scope);
        if let Some(saved) = &saved
            && pages::unchanged(&self.client, &saved.pages).await?
        {
            return Ok(Page {
                outcome: Outcome::NotModified,
                state: Some(serde_json::to_string(saved).expect("state serializes")),
                ..Page::default()
            });
        }
        let mut items = Vec::new();
        let mut saved_pages = Vec::new();
        let mut skipped = Vec::new();
        for (url, repo) in &starts {
            let (bodies, pages) = match pages::fetch_pages(&self.client, url, None).await {
                Ok(found) => found,
                // One repository named outside the organization with the
                // feature off (403 "... disabled", "Advanced Security must
                // be enabled") or out of the token's sight (404) is
                // recorded as skipped; the others are read.
                Err(ConnectorError::Http {
                    endpoint,
                    status: status @ (403 | 404),
                    message,
                }) if repo.is_some() => {
                    skipped.push(crate::connectors::Skipped {
                        path: endpoint,
                        reason: format!("HTTP {status}: {message}"),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            saved_pages.extend(pages);
            for a in bodies
                .iter()
                .flat_map(|b| b.as_array().into_iter().flatten())
            {
                let full = match repo {
                    Some(r) => r.to_string(),
                    None => a["repository"]["full_name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                };
                // The organization's list covers repositories the source
                // leaves out (`include`, `exclude`); names are compared as
                // GitHub does, ignoring case.
                let Some(full) = self.listed(&full) else {
                    continue;
                };
                items.push(alert(which, full, a, url)?);
            }
        }
        let state = PagesSaved {
            scope,
            pages: saved_pages,
        };
        Ok(Page {
            items,
            skipped,
            state: Some(serde_json::to_string(&state).expect("state serializes")),
            ..Page::default()
        })
    }
}

/// The severity an alert is held to: Dependabot's advisory severity;
/// code scanning's security severity, or for a rule with none its own
/// level (`error` high, `warning` medium, `note` low); a leaked secret is
/// always critical.
fn severity(which: Alerts, a: &Value) -> String {
    let s =
        match which {
            Alerts::Dependabot => a["security_advisory"]["severity"]
                .as_str()
                .or(a["security_vulnerability"]["severity"].as_str()),
            Alerts::CodeScanning => a["rule"]["security_severity_level"].as_str().or(
                match a["rule"]["severity"].as_str() {
                    Some("error") => Some("high"),
                    Some("warning") => Some("medium"),
                    Some("note" | "none") => Some("low"),
                    _ => None,
                },
            ),
            Alerts::SecretScanning => Some("critical"),
        };
    s.unwrap_or("unknown").to_ascii_lowercase()
}

/// One alert, reduced to what an auditor asks: where, what, how severe,
/// when it opened, and when, how and by whom it was closed.
fn alert(which: Alerts, full: &str, a: &Value, url: &str) -> Result<Artifact, ConnectorError> {
    let number = a["number"].as_u64().ok_or_else(|| ConnectorError::Http {
        endpoint: format!("GET {url}"),
        status: 200,
        message: format!("an alert of {full} without a `number`"),
    })?;
    let state = a["state"].as_str().unwrap_or("unknown");
    let login = |k: &str| a[k]["login"].clone();
    let open = state == "open";
    // By the state it is in: a reopened and closed again alert keeps the
    // fields of its earlier closing, which must not be taken for this one.
    let dismissed = || {
        (
            a["dismissed_at"].as_str(),
            login("dismissed_by"),
            a["dismissed_reason"].as_str().unwrap_or("dismissed"),
        )
    };
    let (closed_at, closed_by, resolution) = match (which, state) {
        (_, "open") => (None, Value::Null, state),
        (Alerts::SecretScanning, _) => (
            a["resolved_at"].as_str(),
            login("resolved_by"),
            a["resolution"].as_str().unwrap_or(state),
        ),
        (_, "fixed") => (a["fixed_at"].as_str(), Value::Null, "fixed"),
        (_, "dismissed") => dismissed(),
        (Alerts::Dependabot, "auto_dismissed") => (
            a["auto_dismissed_at"].as_str(),
            Value::Null,
            "auto_dismissed",
        ),
        // Code scanning's `closed` (the tool or its configuration went
        // away) and states GitHub may add: when, as far as it says.
        _ => (
            a["fixed_at"]
                .as_str()
                .or(a["dismissed_at"].as_str())
                .or(a["updated_at"].as_str()),
            Value::Null,
            state,
        ),
    };
    let detail = match which {
        Alerts::Dependabot => json!({
            "package": a["dependency"]["package"]["name"],
            "ecosystem": a["dependency"]["package"]["ecosystem"],
            "manifest": a["dependency"]["manifest_path"],
            "ghsa_id": a["security_advisory"]["ghsa_id"],
            "cve_id": a["security_advisory"]["cve_id"],
        }),
        Alerts::CodeScanning => json!({
            "rule": a["rule"]["id"],
            "tool": a["tool"]["name"],
            "path": a["most_recent_instance"]["location"]["path"],
        }),
        // Never `secret`: the evidence repository must not become a copy
        // of every leaked credential.
        Alerts::SecretScanning => json!({
            "secret_type": a["secret_type"],
            "validity": a["validity"],
            "publicly_leaked": a["publicly_leaked"],
            "push_protection_bypassed": a["push_protection_bypassed"],
            "push_protection_bypassed_by": a["push_protection_bypassed_by"]["login"],
        }),
    };
    let summary = match which {
        Alerts::Dependabot => a["security_advisory"]["summary"].as_str(),
        Alerts::CodeScanning => a["rule"]["description"].as_str(),
        Alerts::SecretScanning => a["secret_type_display_name"].as_str(),
    }
    .unwrap_or_default();
    let mut observed = BTreeMap::new();
    if let Some(c) = a["created_at"].as_str() {
        observed.insert("created_at".into(), c.to_string());
    }
    if let (false, Some(c)) = (open, closed_at) {
        observed.insert("closed_at".into(), c.to_string());
    }
    Ok(Artifact {
        kind: which.kind().into(),
        object_id: format!("{full}#{number}"),
        url: a["html_url"].as_str().unwrap_or_default().to_string(),
        title: format!("{full}#{number}: {summary}"),
        observed,
        content: json!({
            "repository": full,
            "number": number,
            "state": state,
            "severity": severity(which, a),
            "summary": summary,
            "created_at": a["created_at"],
            // A reopened alert keeps its old dismissal times: only a
            // closed one has been closed.
            "closed_at": closed_at,
            "closed_by": closed_by,
            "resolution": if open { None } else { Some(resolution) },
            "detail": detail,
        }),
        ..blank()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_falls_back_to_the_rule_level_and_secrets_are_critical() {
        let code = json!({"rule": {"severity": "warning"}});
        assert_eq!(severity(Alerts::CodeScanning, &code), "medium");
        let sec = json!({"rule": {"severity": "warning", "security_severity_level": "high"}});
        assert_eq!(severity(Alerts::CodeScanning, &sec), "high");
        assert_eq!(severity(Alerts::SecretScanning, &json!({})), "critical");
        assert_eq!(severity(Alerts::Dependabot, &json!({})), "unknown");
    }

    #[test]
    fn a_secret_alert_never_carries_the_secret() {
        let a = json!({"number": 3, "state": "open", "secret": "ghp_leaked", "secret_type": "github_pat",
                       "created_at": "2026-03-01T00:00:00Z", "html_url": "https://github.com/a/b/security/secret-scanning/3"});
        let art = alert(Alerts::SecretScanning, "a/b", &a, "u").unwrap();
        let text = art.content.to_string();
        assert!(!text.contains("ghp_leaked"), "{text}");
        assert_eq!(art.content["severity"], "critical");
        assert_eq!(art.content["closed_at"], Value::Null);
    }
}
