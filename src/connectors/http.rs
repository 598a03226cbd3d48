//! Politeness towards an API, in one place for every API source: bounded
//! concurrency shared by all queries of one token, the rate budget the
//! server reports read and respected before it is spent, `Retry-After` on
//! 429 and on secondary-limit 403s, capped exponential backoff with jitter
//! on 5xx and on broken connections, and then a clear failure naming the
//! endpoint. Also the one type tokens live in ([`Secret`]).
//!
//! Each client (octocrab for GitHub, and the Jira and Drive clients) makes
//! one attempt at a time and hands back a [`Reply`]; [`Polite::call`]
//! decides whether to wait, retry or give up. Waits for a rate limit are
//! measured against the wall clock (the reset time is the server's), never
//! against `SOURCE_DATE_EPOCH`, which pins only what is recorded.

use super::ConnectorError;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// A token or key. It never prints: `Debug` and `Display` show a mask, and
/// only [`Secret::expose`] gives the text, to the code that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The variable's value, when set and not empty. In GitHub Actions the
    /// value is masked in the job's log from here on (`::add-mask::`), so
    /// that no later line of any step can show it. The command goes to
    /// stderr, which the runner reads for commands too: stdout carries
    /// data a caller may redirect to a file.
    pub fn from_env(var: &str) -> Option<Secret> {
        let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty())?;
        if crate::actions::in_actions() {
            for line in v.lines().filter(|l| !l.trim().is_empty()) {
                eprintln!("::add-mask::{line}");
            }
        }
        Some(Secret(v))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Whether credentials may be sent to `url`: over HTTPS, or in the clear
/// only to this machine (a local proxy or a test server).
pub fn safe_for_credentials(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1")
}

/// One answer from the server, whatever its status.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The server's own explanation, for an error message: the `message`
    /// (GitHub), `errorMessages` (Jira) or `error.message` (Google) of a
    /// JSON body, else the start of the body.
    pub fn message(&self) -> String {
        let doc: Option<serde_json::Value> = serde_json::from_slice(&self.body).ok();
        let from_json = doc.as_ref().and_then(|d| {
            d["message"]
                .as_str()
                .map(|m| {
                    // GitHub's validation failures say what failed in
                    // `errors` ("A pull request already exists for ...").
                    let details: Vec<&str> = d["errors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e["message"].as_str().or_else(|| e["code"].as_str()))
                        .collect();
                    if details.is_empty() {
                        m.to_string()
                    } else {
                        format!("{m}: {}", details.join("; "))
                    }
                })
                .or_else(|| d["error"]["message"].as_str().map(str::to_string))
                .or_else(|| {
                    // Jira's ErrorCollection: messages, and per field.
                    let mut parts: Vec<String> = d["errorMessages"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|m| m.as_str().map(str::to_string))
                        .collect();
                    if let Some(fields) = d["errors"].as_object() {
                        parts.extend(
                            fields
                                .iter()
                                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default())),
                        );
                    }
                    (!parts.is_empty()).then(|| parts.join("; "))
                })
        });
        match from_json {
            Some(m) if !m.is_empty() => m,
            _ => {
                let text = String::from_utf8_lossy(&self.body);
                let text = text.trim();
                match text.char_indices().nth(200) {
                    Some((cut, _)) => format!("{}...", &text[..cut]),
                    None if text.is_empty() => "(empty body)".into(),
                    None => text.to_string(),
                }
            }
        }
    }
}

/// How polite to be. The defaults suit GitHub's documented limits; tests
/// shrink the waits.
#[derive(Debug, Clone, Copy)]
pub struct Politeness {
    /// Requests in flight at once, across all queries sharing the token.
    pub concurrency: usize,
    /// Attempts of one request before its failure is the run's.
    pub max_attempts: u32,
    /// First backoff after a 5xx or a broken connection; doubled each
    /// time, up to `backoff_cap`, and drawn at random below that (jitter).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// The longest this run may wait for a rate limit before failing.
    pub max_wait: Duration,
    /// Wait after a secondary-limit answer that says neither how long nor
    /// when the budget resets (GitHub asks for at least a minute).
    pub secondary_wait: Duration,
    /// Requests left in the budget that are kept back: below this the
    /// caller waits for the reset instead of spending the last of it.
    pub reserve: u64,
}

impl Default for Politeness {
    fn default() -> Self {
        Politeness {
            concurrency: 8,
            max_attempts: 6,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_wait: Duration::from_secs(15 * 60),
            secondary_wait: Duration::from_secs(60),
            reserve: 0,
        }
    }
}

/// What the server last said about the rate budget.
#[derive(Debug, Clone, Copy)]
struct Budget {
    remaining: u64,
    reset_at: SystemTime,
}

/// Requests made, for progress lines and for the tests and benchmark that
/// count them.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub not_modified: AtomicU64,
}

/// The shared politeness state of one token.
pub struct Polite {
    rules: Politeness,
    permits: tokio::sync::Semaphore,
    budget: Mutex<Option<Budget>>,
    pub counts: Counts,
}

/// Why one attempt got no answer at all (connection refused or reset, a
/// body cut short, a timeout): always worth another attempt.
#[derive(Debug, Clone)]
pub struct Broken(pub String);

impl Polite {
    pub fn new(rules: Politeness) -> Polite {
        Polite {
            rules,
            permits: tokio::sync::Semaphore::new(rules.concurrency.max(1)),
            budget: Mutex::new(None),
            counts: Counts::default(),
        }
    }

    pub fn rules(&self) -> &Politeness {
        &self.rules
    }

    /// Requests left in the budget, as last reported.
    pub fn remaining(&self) -> Option<u64> {
        self.budget
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|b| b.remaining)
    }

    /// Makes `attempt` until it gives an answer worth keeping: a success,
    /// a 304, or a client error that another attempt would not change
    /// (returned as [`ConnectorError::Http`]). `endpoint` names the
    /// request in logs and errors (method and URL, never a credential).
    pub async fn call<F, Fut>(&self, endpoint: &str, attempt: F) -> Result<Reply, ConnectorError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Reply, Broken>>,
    {
        let mut failures = 0u32;
        let mut limited = 0u32;
        loop {
            self.wait_for_budget(endpoint).await?;
            let answer = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|e| ConnectorError::Task(e.to_string()))?;
                self.counts.requests.fetch_add(1, Ordering::Relaxed);
                attempt().await
            };
            let reply = match answer {
                Ok(r) => r,
                Err(Broken(why)) => {
                    failures += 1;
                    if failures >= self.rules.max_attempts {
                        return Err(ConnectorError::Transport {
                            endpoint: endpoint.to_string(),
                            attempts: failures,
                            message: why,
                        });
                    }
                    self.retry_after(endpoint, self.backoff(failures), &why)
                        .await;
                    continue;
                }
            };
            self.note_budget(&reply);
            match reply.status {
                200..=299 => return Ok(reply),
                304 => {
                    self.counts.not_modified.fetch_add(1, Ordering::Relaxed);
                    return Ok(reply);
                }
                429 | 403 if self.is_rate_limit(&reply) => {
                    limited += 1;
                    let wait = self.limit_wait(&reply, limited);
                    if wait > self.rules.max_wait || limited >= self.rules.max_attempts * 2 {
                        return Err(ConnectorError::RateLimited {
                            endpoint: endpoint.to_string(),
                            reset_at: chrono::DateTime::<chrono::Utc>::from(
                                SystemTime::now() + wait,
                            ),
                            max_wait_secs: self.rules.max_wait.as_secs(),
                        });
                    }
                    self.retry_after(
                        endpoint,
                        wait,
                        &format!("HTTP {} (rate limit)", reply.status),
                    )
                    .await;
                }
                500..=599 => {
                    failures += 1;
                    // A 503 that says when to come back (Jira does) is
                    // waited out as asked, within the run's limit.
                    let asked = reply
                        .header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs)
                        .filter(|w| *w <= self.rules.max_wait);
                    if failures >= self.rules.max_attempts {
                        return Err(ConnectorError::Http {
                            endpoint: endpoint.to_string(),
                            status: reply.status,
                            message: format!("{} (after {failures} attempts)", reply.message()),
                        });
                    }
                    self.retry_after(
                        endpoint,
                        asked.unwrap_or_else(|| self.backoff(failures)),
                        &format!("HTTP {}", reply.status),
                    )
                    .await;
                }
                status => {
                    return Err(ConnectorError::Http {
                        endpoint: endpoint.to_string(),
                        status,
                        message: reply.message(),
                    });
                }
            }
        }
    }

    async fn retry_after(&self, endpoint: &str, wait: Duration, why: &str) {
        self.counts.retries.fetch_add(1, Ordering::Relaxed);
        tracing::info!("{endpoint}: {why}; retrying in {:.1} s", wait.as_secs_f64());
        tokio::time::sleep(wait).await;
    }

    /// A 429 is always a rate limit; a 403 is one when the server says so
    /// (a `Retry-After`, a spent budget, or GitHub's secondary-limit
    /// message), and otherwise a permission the token lacks.
    fn is_rate_limit(&self, r: &Reply) -> bool {
        r.status == 429
            || r.header("retry-after").is_some()
            || r.header("x-ratelimit-remaining") == Some("0")
            || r.message().to_ascii_lowercase().contains("rate limit")
    }

    /// How long to wait after the `n`th rate-limit answer in a row.
    fn limit_wait(&self, r: &Reply, n: u32) -> Duration {
        if let Some(secs) = r
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Duration::from_secs(secs);
        }
        if r.header("x-ratelimit-remaining") == Some("0")
            && let Some(reset) = reset_time(r)
        {
            return reset.duration_since(SystemTime::now()).unwrap_or_default()
                + Duration::from_secs(1);
        }
        // Secondary limit with no hint: a minute, then longer each time.
        self.rules.secondary_wait * 2u32.saturating_pow(n.saturating_sub(1)).min(8)
    }

    fn note_budget(&self, r: &Reply) {
        let remaining = r
            .header("x-ratelimit-remaining")
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(remaining), Some(reset_at)) = (remaining, reset_time(r)) {
            *self.budget.lock().unwrap_or_else(|e| e.into_inner()) = Some(Budget {
                remaining,
                reset_at,
            });
        }
    }

    /// Waits for the reset when the budget is (nearly) spent, rather than
    /// spending its last requests and being refused.
    async fn wait_for_budget(&self, endpoint: &str) -> Result<(), ConnectorError> {
        let budget = *self.budget.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = budget else { return Ok(()) };
        if b.remaining > self.rules.reserve {
            return Ok(());
        }
        let Ok(wait) = b.reset_at.duration_since(SystemTime::now()) else {
            return Ok(());
        };
        let wait = wait + Duration::from_secs(1);
        if wait > self.rules.max_wait {
            return Err(ConnectorError::RateLimited {
                endpoint: endpoint.to_string(),
                reset_at: chrono::DateTime::<chrono::Utc>::from(b.reset_at),
                max_wait_secs: self.rules.max_wait.as_secs(),
            });
        }
        tracing::info!(
            "{endpoint}: {} requests left in the rate budget; waiting {} s for its reset",
            b.remaining,
            wait.as_secs()
        );
        tokio::time::sleep(wait).await;
        // The next answer reports the new budget; until then, go on.
        let mut held = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_some_and(|h| h.reset_at == b.reset_at) {
            *held = None;
        }
        Ok(())
    }

    /// Capped exponential backoff with full jitter.
    fn backoff(&self, failures: u32) -> Duration {
        let cap = self
            .rules
            .backoff_base
            .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
            .min(self.rules.backoff_cap);
        // Half fixed, half random: never a burst of zero waits.
        let half = cap / 2;
        half + half.mul_f64(random_unit())
    }
}

fn reset_time(r: &Reply) -> Option<SystemTime> {
    let secs = r.header("x-ratelimit-reset")?.trim().parse::<u64>().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// A number in [0, 1) that differs between calls and processes (the
/// standard library's per-instance random hash keys): jitter needs no
/// more than that.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The `rel="next"` target of a `Link` header (RFC 8288), as GitHub pages
/// its lists.
pub fn next_link(r: &Reply) -> Option<String> {
    r.header("link")?.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let target = target.trim();
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_go_over_https_or_to_this_machine_only() {
        assert!(safe_for_credentials("https://acme.atlassian.net"));
        assert!(safe_for_credentials("http://127.0.0.1:8080/"));
        assert!(safe_for_credentials("http://localhost/jira"));
        assert!(safe_for_credentials("http://[::1]:9/"));
        assert!(!safe_for_credentials("http://jira.acme.example"));
        assert!(!safe_for_credentials("http://localhost.evil.example/"));
        assert!(!safe_for_credentials("ftp://x"));
    }
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Reply {
            status,
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    fn quick() -> Politeness {
        Politeness {
            backoff_base: Duration::from_millis(1),
            backoff_cap: Duration::from_millis(4),
            secondary_wait: Duration::from_millis(5),
            max_attempts: 4,
            ..Politeness::default()
        }
    }

    /// Answers with `script` in order, then 200.
    async fn run(
        polite: &Polite,
        script: Vec<Result<Reply, Broken>>,
    ) -> (Result<Reply, ConnectorError>, u32) {
        let n = Arc::new(AtomicU32::new(0));
        let script = Arc::new(script);
        let out = polite
            .call("GET /x", || {
                let i = n.fetch_add(1, Ordering::SeqCst) as usize;
                let script = script.clone();
                async move {
                    script
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| Ok(reply(200, &[], "{}")))
                }
            })
            .await;
        (out, n.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn retries_a_502_burst_and_a_broken_connection_then_succeeds() {
        let p = Polite::new(quick());
        let (out, tries) = run(
            &p,
            vec![
                Ok(reply(502, &[], "bad gateway")),
                Err(Broken("connection reset".into())),
                Ok(reply(503, &[], "")),
            ],
        )
        .await;
        assert_eq!(out.unwrap().status, 200);
        assert_eq!(tries, 4);
        assert_eq!(p.counts.retries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt_naming_endpoint_and_status() {
        let p = Polite::new(quick());
        let (out, tries) = run(&p, vec![Ok(reply(502, &[], "{\"message\":\"down\"}")); 10]).await;
        assert_eq!(tries, 4);
        let e = out.unwrap_err().to_string();
        assert_eq!(e, "GET /x: HTTP 502: down (after 4 attempts)");
    }

    #[tokio::test]
    async fn a_permission_403_is_not_retried_but_a_secondary_limit_is() {
        let p = Polite::new(quick());
        let (out, tries) = run(
            &p,
            vec![Ok(reply(
                403,
                &[],
                "{\"message\":\"Resource not accessible by integration\"}",
            ))],
        )
        .await;
        assert_eq!(tries, 1);
        assert!(
            out.unwrap_err()
                .to_string()
                .contains("HTTP 403: Resource not accessible")
        );
        let (out, tries) = run(
            &p,
            vec![Ok(reply(
                403,
                &[],
                "{\"message\":\"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.\"}",
            ))],
        )
        .await;
        assert_eq!(out.unwrap().status, 200);
        assert_eq!(tries, 2);
    }

    #[tokio::test]
    async fn honours_retry_after_and_fails_when_it_exceeds_the_wait_limit() {
        let p = Polite::new(quick());
        let started = std::time::Instant::now();
        let (out, tries) = run(&p, vec![Ok(reply(429, &[("retry-after", "1")], ""))]).await;
        assert_eq!(out.unwrap().status, 200);
        assert_eq!(tries, 2);
        assert!(started.elapsed() >= Duration::from_secs(1));
        let p = Polite::new(Politeness {
            max_wait: Duration::from_secs(30),
            ..quick()
        });
        let (out, tries) = run(&p, vec![Ok(reply(429, &[("retry-after", "3600")], ""))]).await;
        assert_eq!(tries, 1);
        assert!(
            out.unwrap_err()
                .to_string()
                .starts_with("GET /x: rate limit exhausted until")
        );
    }

    #[tokio::test]
    async fn waits_for_the_reset_before_spending_the_last_request() {
        let p = Polite::new(quick());
        let reset = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1;
        let reset = reset.to_string();
        let (out, _) = run(
            &p,
            vec![Ok(reply(
                200,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset),
                ],
                "{}",
            ))],
        )
        .await;
        out.unwrap();
        assert_eq!(p.remaining(), Some(0));
        // The next call waits for the reset (about a second) first.
        let started = std::time::Instant::now();
        let (out, tries) = run(&p, vec![]).await;
        out.unwrap();
        assert_eq!(tries, 1);
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("ghp_abcdef");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "ghp_abcdef");
    }

    #[test]
    fn finds_the_next_link_among_others() {
        let r = reply(
            200,
            &[(
                "link",
                "<http://h/x?page=1>; rel=\"prev\", <http://h/x?page=3>; rel=\"next\", <http://h/x?page=9>; rel=\"last\"",
            )],
            "",
        );
        assert_eq!(next_link(&r).as_deref(), Some("http://h/x?page=3"));
        assert_eq!(next_link(&reply(200, &[], "")), None);
    }

    #[test]
    fn error_messages_come_from_the_body_of_each_api() {
        assert_eq!(
            reply(404, &[], "{\"message\":\"Not Found\"}").message(),
            "Not Found"
        );
        assert_eq!(
            reply(400, &[], "{\"errorMessages\":[\"bad jql\"],\"errors\":{}}").message(),
            "bad jql"
        );
        assert_eq!(
            reply(
                400,
                &[],
                "{\"error\":{\"code\":400,\"message\":\"Invalid Value\"}}"
            )
            .message(),
            "Invalid Value"
        );
        assert_eq!(reply(502, &[], "").message(), "(empty body)");
    }
}
