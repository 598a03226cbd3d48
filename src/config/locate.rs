//! Source locations for configuration values.
//!
//! serde_yaml reports where a *parse* error happened, but keeps no positions
//! once a value is deserialized. Validation needs them to point at the
//! offending value, so the same text is walked once more with an
//! event-level YAML parser that records where every key and value starts,
//! by path (`sources.app.path`, `exclude[2]`), and which keys of a mapping
//! are written twice (serde would silently keep the last).
//!
//! The walk pulls events one at a time: yaml-rust2's own `load` recurses
//! once per nesting level, which hostile input turns into a stack overflow.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// Deepest nesting whose positions are recorded (above every bound of
/// [`crate::yaml::Bounds`]).
const MAX_DEPTH: usize = 256;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Where each key and value of a YAML document starts.
#[derive(Debug, Default)]
pub struct Locations {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
    /// Every key as path segments (`["sources", "app", "type"]`), in order.
    key_list: Vec<(Vec<String>, Pos)>,
    duplicates: Vec<Duplicate>,
}

/// A key written twice in the same mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// Path of the key (`sources.app`).
    pub path: String,
    /// Where it is first written.
    pub first: Pos,
    /// Where it is written again.
    pub again: Pos,
}

impl Locations {
    pub fn parse(text: &str) -> Self {
        let mut rec = Recorder::default();
        let mut parser = Parser::new_from_str(text);
        // A syntax error is reported by serde_yaml with its own position;
        // here whatever was recorded before it is enough. Only the first
        // document is read, as serde_yaml reads only one.
        // Past a depth no bounded parse accepts, positions would only be
        // paid for (each path is rebuilt per event) and never asked for.
        while let Ok((ev, mark)) = parser.next_token() {
            match ev {
                Event::StreamEnd | Event::DocumentEnd => break,
                _ if rec.stack.len() > MAX_DEPTH => break,
                ev => rec.on_event(ev, mark),
            }
        }
        rec.locs
    }

    /// Every key written, as path segments (a sequence index is a
    /// segment `[i]`), with its position, in the order written.
    pub fn keys(&self) -> impl Iterator<Item = (&[String], Pos)> {
        self.key_list.iter().map(|(k, p)| (k.as_slice(), *p))
    }

    /// Keys written twice in one mapping, in the order found.
    pub fn duplicates(&self) -> &[Duplicate] {
        &self.duplicates
    }

    /// Position of the value at `path`, falling back to its key, then to
    /// the nearest parent that has a position.
    pub fn value(&self, path: &str) -> Pos {
        self.values
            .get(path)
            .or_else(|| self.keys.get(path))
            .copied()
            .unwrap_or_else(|| self.parent(path))
    }

    /// Position of the key at `path` (falls back like [`Locations::value`]).
    pub fn key(&self, path: &str) -> Pos {
        self.keys
            .get(path)
            .or_else(|| self.values.get(path))
            .copied()
            .unwrap_or_else(|| self.parent(path))
    }

    fn parent(&self, path: &str) -> Pos {
        match path.rfind(['.', '[']) {
            Some(i) => self.key(&path[..i]),
            None => Pos { line: 1, col: 1 },
        }
    }
}

enum Frame {
    Map {
        key: Option<String>,
        seen: HashMap<String, Pos>,
    },
    Seq {
        index: usize,
    },
}

#[derive(Default)]
struct Recorder {
    locs: Locations,
    stack: Vec<Frame>,
    path: Vec<String>,
}

/// Path segments as written in messages: `sources.app.exclude[2]`.
pub fn join_path(segments: &[String]) -> String {
    let mut s = String::new();
    for p in segments {
        if p.starts_with('[') || s.is_empty() {
            s.push_str(p);
        } else {
            s.push('.');
            s.push_str(p);
        }
    }
    s
}

impl Recorder {
    fn join(&self) -> String {
        join_path(&self.path)
    }

    fn pos(mark: Marker) -> Pos {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: mark.line(),
            col: mark.col() + 1,
        }
    }

    /// Called when a value (scalar or container start) is seen.
    fn value_start(&mut self, mark: Marker) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => {
                if let Some(k) = key.take() {
                    self.path.push(k);
                    let p = self.join();
                    self.locs.values.insert(p, Self::pos(mark));
                }
            }
            Some(Frame::Seq { index }) => {
                self.path.push(format!("[{index}]"));
                *index += 1;
                let p = self.join();
                self.locs.values.insert(p, Self::pos(mark));
            }
            None => {}
        }
    }

    fn value_end(&mut self) {
        if !self.stack.is_empty() {
            self.path.pop();
        }
    }
}

impl Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map { key, seen }) = self.stack.last_mut()
                    && key.is_none()
                {
                    *key = Some(text.clone());
                    let first = seen.get(&text).copied();
                    seen.entry(text.clone()).or_insert(Self::pos(mark));
                    self.path.push(text);
                    let p = self.join();
                    let segments = self.path.clone();
                    self.path.pop();
                    if let Some(first) = first {
                        self.locs.duplicates.push(Duplicate {
                            path: p,
                            first,
                            again: Self::pos(mark),
                        });
                        return;
                    }
                    self.locs.keys.insert(p, Self::pos(mark));
                    self.locs.key_list.push((segments, Self::pos(mark)));
                    return;
                }
                self.value_start(mark);
                self.value_end();
            }
            Event::Alias(_) => {
                self.value_start(mark);
                self.value_end();
            }
            Event::MappingStart(..) => {
                self.value_start(mark);
                self.stack.push(Frame::Map {
                    key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceStart(..) => {
                self.value_start(mark);
                self.stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_end();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keys_and_values_by_path() {
        let text = "version: 1\nsources:\n  app:\n    type: git\n    path: ../x\n  docs:\n    exclude: [a, b]\n";
        let l = Locations::parse(text);
        assert_eq!(l.key("version"), Pos { line: 1, col: 1 });
        assert_eq!(l.value("version"), Pos { line: 1, col: 10 });
        assert_eq!(l.key("sources.app"), Pos { line: 3, col: 3 });
        assert_eq!(l.value("sources.app.path"), Pos { line: 5, col: 11 });
        assert_eq!(l.value("sources.docs.exclude[1]"), Pos { line: 7, col: 18 });
        // Unknown paths fall back to the nearest known parent.
        assert_eq!(l.value("sources.app.branch"), Pos { line: 3, col: 3 });
        assert_eq!(l.value("nothing.here"), Pos { line: 1, col: 1 });
        assert!(l.duplicates().is_empty());
    }

    #[test]
    fn keys_written_twice_in_one_mapping_are_found() {
        let text = "sources:\n  app:\n    type: git\n  docs:\n    type: files\n  app:\n    type: files\n    type: git\nother:\n  app: 1\n";
        let l = Locations::parse(text);
        assert_eq!(
            l.duplicates(),
            [
                Duplicate {
                    path: "sources.app".into(),
                    first: Pos { line: 2, col: 3 },
                    again: Pos { line: 6, col: 3 },
                },
                Duplicate {
                    path: "sources.app.type".into(),
                    first: Pos { line: 7, col: 5 },
                    again: Pos { line: 8, col: 5 },
                },
            ]
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        crate::yaml::in_child_process(
            "config::locate::tests::deep_nesting_does_not_overflow_the_stack",
            || {
                let text = format!("a:\n{}x\n", "- ".repeat(100_000));
                let l = Locations::parse(&text);
                assert_eq!(l.key("a"), Pos { line: 1, col: 1 });
                assert_eq!(l.value("a[0][0]"), Pos { line: 2, col: 5 });
            },
        );
    }
}
