//! Progress of a collection, which for a large organization takes
//! minutes: on a terminal, one line per source and query that redraws
//! (pages, objects, requests left in the rate budget), on stderr; in
//! GitHub Actions, one log group per source with a line every few hundred
//! objects and one as each query ends. Off with `-q`, and when stderr is
//! neither a terminal nor an Actions log. Never on stdout, which carries
//! data.
//!
//! Sources are collected at the same time, but an Actions log group
//! cannot interleave with another: the first source to report holds the
//! open group, and the others' lines wait (in order) until it closes.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Objects between two progress lines of a query in an Actions log.
pub const LINE_EVERY: u64 = 500;

pub struct Progress {
    mode: Mode,
}

enum Mode {
    Off,
    Bars {
        multi: MultiProgress,
        bars: Mutex<BTreeMap<String, ProgressBar>>,
    },
    Lines(Mutex<Lines>),
}

/// The Actions log: who holds the open group, and what others wait with.
struct Lines {
    out: Box<dyn Write + Send>,
    every: u64,
    open: Option<String>,
    /// Sources waiting for the group, in the order they first reported:
    /// their lines, and whether they are done.
    waiting: VecDeque<(String, Vec<String>, bool)>,
    /// Per query label, the object count last reported.
    reported: BTreeMap<String, u64>,
}

impl Lines {
    fn emit(&mut self, source: &str, line: String) {
        match &self.open {
            Some(open) if open == source => {
                let _ = writeln!(self.out, "{line}");
            }
            None => {
                self.open = Some(source.to_string());
                let _ = writeln!(self.out, "::group::Collecting {source}");
                let _ = writeln!(self.out, "{line}");
            }
            Some(_) => match self.waiting.iter_mut().find(|w| w.0 == source) {
                Some(w) => w.1.push(line),
                None => self
                    .waiting
                    .push_back((source.to_string(), vec![line], false)),
            },
        }
    }

    fn close(&mut self, source: &str, line: String) {
        if self.open.as_deref() != Some(source) {
            self.emit(source, line);
            if let Some(w) = self.waiting.iter_mut().find(|w| w.0 == source) {
                w.2 = true;
            }
            if self.open.as_deref() != Some(source) {
                return;
            }
        } else {
            let _ = writeln!(self.out, "{line}");
        }
        let _ = writeln!(self.out, "::endgroup::");
        self.open = None;
        // The next waiting source takes the group, with what it saved up.
        while let Some((next, lines, done)) = self.waiting.pop_front() {
            let _ = writeln!(self.out, "::group::Collecting {next}");
            for l in lines {
                let _ = writeln!(self.out, "{l}");
            }
            if !done {
                self.open = Some(next);
                break;
            }
            let _ = writeln!(self.out, "::endgroup::");
        }
        let _ = self.out.flush();
    }
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn status(pages: u64, objects: u64, remaining: Option<u64>) -> String {
    let mut s = format!(
        "{} objects, {} page{}",
        thousands(objects),
        thousands(pages),
        if pages == 1 { "" } else { "s" }
    );
    if let Some(r) = remaining {
        s.push_str(&format!(
            ", {} requests left in the rate budget",
            thousands(r)
        ));
    }
    s
}

impl Progress {
    pub fn off() -> Progress {
        Progress { mode: Mode::Off }
    }

    /// Redrawn lines on stderr (drawn only when it is a terminal).
    pub fn terminal() -> Progress {
        Progress {
            mode: Mode::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(BTreeMap::new()),
            },
        }
    }

    /// Log lines in Actions' group syntax, written to `out`.
    pub fn lines(out: Box<dyn Write + Send>, every: u64) -> Progress {
        Progress {
            mode: Mode::Lines(Mutex::new(Lines {
                out,
                every: every.max(1),
                open: None,
                waiting: VecDeque::new(),
                reported: BTreeMap::new(),
            })),
        }
    }

    /// What this process should show: nothing with `-q`, log groups in
    /// GitHub Actions, redrawn lines on a terminal, else nothing.
    pub fn detect(quiet: bool) -> Progress {
        if quiet {
            Progress::off()
        } else if crate::actions::in_actions() {
            Progress::lines(Box::new(std::io::stderr()), LINE_EVERY)
        } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Progress::terminal()
        } else {
            Progress::off()
        }
    }

    /// A page of query `query` of source `source` arrived: `pages` and
    /// `objects` so far.
    pub fn page(
        &self,
        source: &str,
        query: &str,
        pages: u64,
        objects: u64,
        remaining: Option<u64>,
    ) {
        if matches!(self.mode, Mode::Off) {
            return;
        }
        let label = format!("{source}/{query}");
        match &self.mode {
            Mode::Off => {}
            Mode::Bars { multi, bars } => {
                let mut bars = bars.lock().unwrap_or_else(|e| e.into_inner());
                let bar = bars.entry(label.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new_spinner());
                    b.set_style(
                        ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    b.set_prefix(label.clone());
                    b.enable_steady_tick(Duration::from_millis(200));
                    b
                });
                bar.set_message(status(pages, objects, remaining));
            }
            Mode::Lines(lines) => {
                let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
                let last = l.reported.get(&label).copied().unwrap_or(0);
                if objects / l.every > last / l.every {
                    l.reported.insert(label.clone(), objects);
                    l.emit(
                        source,
                        format!("{label}: {}", status(pages, objects, remaining)),
                    );
                }
            }
        }
    }

    /// Query `query` of `source` ended with `outcome`.
    pub fn query_done(&self, source: &str, query: &str, pages: u64, objects: u64, outcome: &str) {
        if matches!(self.mode, Mode::Off) {
            return;
        }
        let label = format!("{source}/{query}");
        let line = format!("{label}: {outcome}, {}", status(pages, objects, None));
        match &self.mode {
            Mode::Off => {}
            Mode::Bars { bars, .. } => {
                let bars = bars.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(b) = bars.get(&label) {
                    b.finish_with_message(format!("{outcome}, {}", status(pages, objects, None)));
                }
            }
            Mode::Lines(lines) => {
                let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
                l.emit(source, line);
            }
        }
    }

    /// Source `source` is done (or failed, as `summary` says).
    pub fn source_done(&self, source: &str, summary: &str) {
        match &self.mode {
            Mode::Off | Mode::Bars { .. } => {}
            Mode::Lines(lines) => {
                let mut l = lines.lock().unwrap_or_else(|e| e.into_inner());
                l.close(source, format!("{source}: {summary}"));
            }
        }
    }

    /// Runs `f` (which writes to stderr) with the redrawn lines out of
    /// its way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.mode {
            Mode::Bars { multi, .. } => multi.suspend(f),
            _ => f(),
        }
    }

    /// Takes the redrawn lines off the terminal for good.
    pub fn clear(&self) {
        if let Mode::Bars { multi, bars } = &self.mode {
            let _ = multi.clear();
            bars.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

static GLOBAL: OnceLock<Progress> = OnceLock::new();

/// Sets the process's progress display (once, at start; later calls are
/// ignored).
pub fn install(p: Progress) {
    let _ = GLOBAL.set(p);
}

/// The process's progress display (off unless installed).
pub fn get() -> &'static Progress {
    GLOBAL.get_or_init(Progress::off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A shared buffer the lines are written to.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn actions_lines_come_every_few_hundred_objects_in_one_group_per_source() {
        let buf = Buf::default();
        let p = Progress::lines(Box::new(buf.clone()), 500);
        p.page("gh", "pull-requests", 1, 100, Some(4990));
        p.page("gh", "pull-requests", 5, 499, Some(4986));
        p.page("gh", "pull-requests", 6, 600, Some(4985));
        // Another source reports while the group of `gh` is open: it waits.
        p.query_done("docs", "documents", 1, 12, "complete");
        p.source_done("docs", "12 artifacts");
        p.page("gh", "pull-requests", 12, 1200, Some(4979));
        p.query_done("gh", "pull-requests", 12, 1200, "complete");
        p.source_done("gh", "1,200 artifacts in 3.0 s");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "::group::Collecting gh\n\
             gh/pull-requests: 600 objects, 6 pages, 4,985 requests left in the rate budget\n\
             gh/pull-requests: 1,200 objects, 12 pages, 4,979 requests left in the rate budget\n\
             gh/pull-requests: complete, 1,200 objects, 12 pages\n\
             gh: 1,200 artifacts in 3.0 s\n\
             ::endgroup::\n\
             ::group::Collecting docs\n\
             docs/documents: complete, 12 objects, 1 page\n\
             docs: 12 artifacts\n\
             ::endgroup::\n"
        );
    }

    #[test]
    fn a_waiting_source_takes_the_group_when_it_closes() {
        let buf = Buf::default();
        let p = Progress::lines(Box::new(buf.clone()), 10);
        p.page("a", "q", 1, 10, None);
        p.page("b", "q", 1, 10, None);
        p.source_done("a", "done");
        p.page("b", "q", 2, 20, None);
        p.source_done("b", "done");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "::group::Collecting a\na/q: 10 objects, 1 page\na: done\n::endgroup::\n\
             ::group::Collecting b\nb/q: 10 objects, 1 page\nb/q: 20 objects, 2 pages\nb: done\n::endgroup::\n"
        );
    }

    #[test]
    fn off_writes_nothing_and_numbers_read_well() {
        Progress::off().page("a", "q", 1, 10_000, None);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
