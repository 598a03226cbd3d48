//! Reporting periods: a calendar year (`2026`), a quarter (`2026-Q3`), a
//! month (`2026-09`) or an explicit inclusive range
//! (`2026-07-01..2026-09-30`). All dates are UTC calendar days.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An inclusive range of calendar days, with the label it was written as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Period {
    start: NaiveDate,
    end: NaiveDate,
    label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid period `{input}`: {reason}")]
pub struct PeriodError {
    pub input: String,
    pub reason: String,
}

pub const PERIOD_FORMS: &str = "write a year (2026), a quarter (2026-Q3), a month (2026-09) or a range (2026-07-01..2026-09-30)";

impl Period {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<Self, PeriodError> {
        let label = format!("{start}..{end}");
        if start > end {
            return Err(PeriodError {
                input: label,
                reason: "the start is after the end".into(),
            });
        }
        Ok(Period { start, end, label })
    }

    /// The calendar year containing `now`: the default when none is set.
    pub fn year_of(now: DateTime<Utc>) -> Self {
        let y = now.year();
        Period {
            start: NaiveDate::from_ymd_opt(y, 1, 1).expect("valid date"),
            end: NaiveDate::from_ymd_opt(y, 12, 31).expect("valid date"),
            label: y.to_string(),
        }
    }

    pub fn start(&self) -> NaiveDate {
        self.start
    }

    pub fn end(&self) -> NaiveDate {
        self.end
    }

    /// The label as written (`2026-Q3`); safe as a path segment.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.start <= day && day <= self.end
    }

    pub fn contains_time(&self, t: DateTime<Utc>) -> bool {
        self.contains(t.date_naive())
    }

    /// First instant of the period (inclusive), for APIs taking timestamps.
    pub fn start_time(&self) -> DateTime<Utc> {
        Utc.from_utc_datetime(&self.start.and_hms_opt(0, 0, 0).expect("valid time"))
    }

    /// First instant after the period (exclusive).
    pub fn end_time_exclusive(&self) -> DateTime<Utc> {
        let next = self.end.succ_opt().unwrap_or(self.end);
        Utc.from_utc_datetime(&next.and_hms_opt(0, 0, 0).expect("valid time"))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Period", 3)?;
        st.serialize_field("end", &self.end.to_string())?;
        st.serialize_field("label", &self.label)?;
        st.serialize_field("start", &self.start.to_string())?;
        st.end()
    }
}

fn err(input: &str, reason: impl Into<String>) -> PeriodError {
    PeriodError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

fn parse_year(input: &str, s: &str) -> Result<i32, PeriodError> {
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(
            input,
            format!("`{s}` is not a four-digit year; {PERIOD_FORMS}"),
        ));
    }
    let y: i32 = s.parse().map_err(|_| err(input, "bad year"))?;
    if y < 1970 {
        return Err(err(input, "years before 1970 are not supported"));
    }
    Ok(y)
}

fn parse_day(input: &str, s: &str) -> Result<NaiveDate, PeriodError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|_| s.len() == 10)
        .ok_or_else(|| err(input, format!("`{s}` is not a date (YYYY-MM-DD)")))
}

fn last_day_of_month(y: i32, m: u32) -> NaiveDate {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .expect("valid date")
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let input = raw.trim();
        if input.is_empty() {
            return Err(err(raw, format!("empty; {PERIOD_FORMS}")));
        }
        if let Some((a, b)) = input.split_once("..") {
            let start = parse_day(input, a.trim())?;
            let end = parse_day(input, b.trim())?;
            if start > end {
                return Err(err(input, "the start is after the end"));
            }
            return Ok(Period {
                start,
                end,
                label: format!("{start}..{end}"),
            });
        }
        let (year, rest) = match input.split_once('-') {
            Some((y, r)) => (parse_year(input, y)?, Some(r)),
            None => (parse_year(input, input)?, None),
        };
        let (start, end) = match rest {
            None => (
                NaiveDate::from_ymd_opt(year, 1, 1).expect("valid"),
                NaiveDate::from_ymd_opt(year, 12, 31).expect("valid"),
            ),
            Some(q) if q.starts_with(['Q', 'q']) => {
                let n: u32 = match &q[1..] {
                    "1" => 1,
                    "2" => 2,
                    "3" => 3,
                    "4" => 4,
                    _ => return Err(err(input, "a quarter is Q1, Q2, Q3 or Q4")),
                };
                let first = (n - 1) * 3 + 1;
                (
                    NaiveDate::from_ymd_opt(year, first, 1).expect("valid"),
                    last_day_of_month(year, first + 2),
                )
            }
            Some(m) if m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()) => {
                let month: u32 = m.parse().expect("digits");
                if !(1..=12).contains(&month) {
                    return Err(err(input, format!("month {m} does not exist")));
                }
                (
                    NaiveDate::from_ymd_opt(year, month, 1).expect("valid"),
                    last_day_of_month(year, month),
                )
            }
            Some(_) => {
                return Err(err(input, format!("unrecognized form; {PERIOD_FORMS}")));
            }
        };
        let label = match rest {
            None => format!("{year}"),
            Some(q) if q.starts_with(['Q', 'q']) => format!("{year}-{}", q.to_uppercase()),
            Some(m) => format!("{year}-{m}"),
        };
        Ok(Period { start, end, label })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn parses_every_form() {
        let cases = [
            ("2026", "2026-01-01", "2026-12-31", "2026"),
            ("2026-Q1", "2026-01-01", "2026-03-31", "2026-Q1"),
            ("2026-q3", "2026-07-01", "2026-09-30", "2026-Q3"),
            ("2026-Q4", "2026-10-01", "2026-12-31", "2026-Q4"),
            ("2024-02", "2024-02-01", "2024-02-29", "2024-02"),
            ("2026-02", "2026-02-01", "2026-02-28", "2026-02"),
            ("2026-12", "2026-12-01", "2026-12-31", "2026-12"),
            (
                "2026-07-01..2026-09-30",
                "2026-07-01",
                "2026-09-30",
                "2026-07-01..2026-09-30",
            ),
            (
                " 2026-07-01 .. 2026-07-01 ",
                "2026-07-01",
                "2026-07-01",
                "2026-07-01..2026-07-01",
            ),
        ];
        for (input, start, end, label) in cases {
            let p: Period = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(p.start(), d(start), "{input}");
            assert_eq!(p.end(), d(end), "{input}");
            assert_eq!(p.label(), label, "{input}");
        }
    }

    #[test]
    fn rejects_bad_periods_with_reasons() {
        let cases = [
            ("", "empty"),
            ("26", "four-digit year"),
            ("2026-Q5", "Q1, Q2, Q3 or Q4"),
            ("2026-13", "month 13 does not exist"),
            ("2026-00", "month 00 does not exist"),
            ("2026-9", "unrecognized form"),
            ("2026-09-31..2026-10-01", "`2026-09-31` is not a date"),
            ("2026-10-01..2026-09-01", "start is after the end"),
            ("2026-10-01..", "is not a date"),
            ("1900", "before 1970"),
            ("Q3-2026", "four-digit year"),
        ];
        for (input, want) in cases {
            let e = input.parse::<Period>().expect_err(input);
            assert!(
                e.to_string().contains(want),
                "{input}: got `{e}`, want `{want}`"
            );
        }
    }

    #[test]
    fn containment_is_inclusive_and_times_are_utc_bounds() {
        let p: Period = "2026-Q3".parse().unwrap();
        assert!(p.contains(d("2026-07-01")));
        assert!(p.contains(d("2026-09-30")));
        assert!(!p.contains(d("2026-10-01")));
        assert!(!p.contains(d("2026-06-30")));
        assert_eq!(p.start_time().to_rfc3339(), "2026-07-01T00:00:00+00:00");
        assert_eq!(
            p.end_time_exclusive().to_rfc3339(),
            "2026-10-01T00:00:00+00:00"
        );
    }

    #[test]
    fn default_period_is_the_calendar_year() {
        let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
        let p = Period::year_of(now);
        assert_eq!(p.label(), "2026");
        assert_eq!(p.end(), d("2026-12-31"));
    }
}
