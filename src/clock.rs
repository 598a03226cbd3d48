//! The one source of "now". Honours `SOURCE_DATE_EPOCH` (seconds since the
//! epoch, the reproducible-builds convention) so tests and reproducible runs
//! can pin the date that decides the default period, freshness and commit
//! times.

use chrono::{DateTime, TimeZone, Utc};

pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

pub fn now() -> DateTime<Utc> {
    if let Ok(raw) = std::env::var(SOURCE_DATE_EPOCH)
        && let Ok(secs) = raw.trim().parse::<i64>()
        && let Some(t) = Utc.timestamp_opt(secs, 0).single()
    {
        return t;
    }
    Utc::now()
}
