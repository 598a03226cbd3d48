//! Source locations for configuration values.
//!
//! serde_yaml reports where a *parse* error happened, but keeps no positions
//! once a value is deserialized. Validation needs them to point at the
//! offending value, so the same text is walked once more with an
//! event-level YAML parser that records where every key and value starts,
//! by path (`sources.app.path`, `exclude[2]`).

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

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
}

impl Locations {
    pub fn parse(text: &str) -> Self {
        let mut rec = Recorder::default();
        let mut parser = Parser::new_from_str(text);
        // A syntax error is reported by serde_yaml with its own position;
        // here whatever was recorded before it is enough.
        let _ = parser.load(&mut rec, false);
        rec.locs
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
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Recorder {
    locs: Locations,
    stack: Vec<Frame>,
    path: Vec<String>,
}

impl Recorder {
    fn join(&self) -> String {
        let mut s = String::new();
        for p in &self.path {
            if p.starts_with('[') || s.is_empty() {
                s.push_str(p);
            } else {
                s.push('.');
                s.push_str(p);
            }
        }
        s
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
            Some(Frame::Map { key }) => {
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

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map { key }) = self.stack.last_mut()
                    && key.is_none()
                {
                    *key = Some(text.clone());
                    self.path.push(text);
                    let p = self.join();
                    self.path.pop();
                    self.locs.keys.insert(p, Self::pos(mark));
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
                self.stack.push(Frame::Map { key: None });
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
    }
}
