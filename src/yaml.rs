//! Bounded YAML: every YAML text cleartrail parses (configuration, front
//! matter, catalog overrides, manual mappings) is first walked here, event by
//! event and without building a tree, against limits on its size, its
//! nesting depth and how many nodes its aliases expand to.
//!
//! Why a separate pass: the parsers behind the typed and positional reads
//! are not safe on hostile input by themselves. yaml-rust2 loads documents
//! recursively (10,000 nested sequences overflow the stack and abort the
//! process) and copies an anchored node for every alias (a few hundred bytes
//! of "billion laughs" expand to gigabytes). serde_yaml limits nesting to
//! 128 levels and alias jumps to 100 per event, but only while
//! deserializing, after everything it read is in memory. Walking the
//! events of yaml-rust2's parser (a state machine, no recursion) with a
//! stack of our own bounds all of them before either parser builds
//! anything.
//!
//! Files are also read through [`read_bounded`], which never opens what is
//! not a regular file (a FIFO would block, `/dev/zero` never ends) and
//! reads at most the size bound.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use yaml_rust2::parser::{Event, Parser};

/// Limits for one kind of YAML input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Largest text accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of sequences and mappings, counting what aliases
    /// expand to.
    pub max_depth: usize,
    /// Most nodes that aliases may add by expansion, in total.
    pub max_alias_nodes: u64,
}

impl Bounds {
    /// `cleartrail.yml`, catalog overrides and manual mappings:
    /// hand-written files.
    pub const CONFIG: Bounds = Bounds {
        max_bytes: 1 << 20,
        max_depth: 64,
        max_alias_nodes: 10_000,
    };
    /// Front matter of a collected document: written by anyone who can
    /// commit to the source folder, copied into an artifact.
    pub const FRONT_MATTER: Bounds = Bounds {
        max_bytes: 64 << 10,
        max_depth: 64,
        max_alias_nodes: 1_000,
    };
}

/// Why a YAML text was refused. Positions are 1-based lines and columns of
/// the text given (callers shift them when the text is part of a file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    #[error("YAML of {size} bytes is larger than the {max} bytes allowed")]
    TooLarge { size: u64, max: usize },
    #[error("YAML nested deeper than {max} levels")]
    TooDeep { line: usize, col: usize, max: usize },
    #[error("YAML aliases expand to more than {max} nodes")]
    TooManyAliasNodes { line: usize, col: usize, max: u64 },
    #[error("{message}")]
    Syntax {
        line: usize,
        col: usize,
        message: String,
    },
}

impl BoundError {
    /// Where in the text the bound was broken (`None` for the size).
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            BoundError::TooLarge { .. } => None,
            BoundError::TooDeep { line, col, .. }
            | BoundError::TooManyAliasNodes { line, col, .. }
            | BoundError::Syntax { line, col, .. } => Some((*line, *col)),
        }
    }

    /// True for a broken bound, false for a plain syntax error (which the
    /// caller's own parser reports in its own words).
    pub fn is_bound(&self) -> bool {
        !matches!(self, BoundError::Syntax { .. })
    }
}

struct Frame {
    anchor: usize,
    /// Expanded node count when the container started.
    start: u64,
    /// Deepest level reached inside it, aliases expanded.
    deepest: usize,
}

/// Walks `text` and checks it against `bounds`. Stops at the first syntax
/// error and returns it as [`BoundError::Syntax`]; everything before it
/// was within bounds.
pub fn check(text: &str, bounds: &Bounds) -> Result<(), BoundError> {
    if text.len() > bounds.max_bytes {
        return Err(BoundError::TooLarge {
            size: text.len() as u64,
            max: bounds.max_bytes,
        });
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    // anchor id -> (expanded node count, height in container levels)
    let mut anchors: HashMap<usize, (u64, usize)> = HashMap::new();
    let mut nodes: u64 = 0;
    let mut alias_nodes: u64 = 0;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| BoundError::Syntax {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        let (line, col) = (mark.line(), mark.col() + 1);
        match event {
            Event::StreamEnd => return Ok(()),
            Event::Scalar(_, _, anchor, _) => {
                nodes += 1;
                if anchor > 0 {
                    anchors.insert(anchor, (1, 0));
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let depth = stack.len() + 1;
                if depth > bounds.max_depth {
                    return Err(BoundError::TooDeep {
                        line,
                        col,
                        max: bounds.max_depth,
                    });
                }
                stack.push(Frame {
                    anchor,
                    start: nodes,
                    deepest: depth,
                });
                nodes += 1;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(f) = stack.pop() else { continue };
                let level = stack.len() + 1;
                if f.anchor > 0 {
                    anchors.insert(f.anchor, (nodes - f.start, f.deepest + 1 - level));
                }
                if let Some(parent) = stack.last_mut() {
                    parent.deepest = parent.deepest.max(f.deepest);
                }
            }
            Event::Alias(id) => {
                // An alias to an anchor still open (or unknown) expands to
                // nothing the loaders would copy; count it as one node.
                let (n, height) = anchors.get(&id).copied().unwrap_or((1, 0));
                nodes += n;
                alias_nodes += n;
                if alias_nodes > bounds.max_alias_nodes {
                    return Err(BoundError::TooManyAliasNodes {
                        line,
                        col,
                        max: bounds.max_alias_nodes,
                    });
                }
                let reached = stack.len() + height;
                if reached > bounds.max_depth {
                    return Err(BoundError::TooDeep {
                        line,
                        col,
                        max: bounds.max_depth,
                    });
                }
                if let Some(parent) = stack.last_mut() {
                    parent.deepest = parent.deepest.max(reached);
                }
            }
            _ => {}
        }
    }
}

/// Why a file could not be read as bounded text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("is {0}, not a regular file")]
    NotAFile(&'static str),
    #[error("is in {0}, the machine's own state, not a file to read")]
    System(&'static str),
    #[error("is larger than the {max} bytes allowed")]
    TooLarge { max: usize },
    #[error("is not valid UTF-8 text (byte {offset})")]
    NotUtf8 { offset: usize },
}

impl From<ReadError> for std::io::Error {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io(e) => e,
            ReadError::NotFound => std::io::Error::from(std::io::ErrorKind::NotFound),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

/// [`read_bounded`] within [`Bounds::CONFIG`], as an I/O result: for
/// hand-written YAML files beside the configuration (catalog overrides).
pub fn read_text(path: &Path) -> std::io::Result<String> {
    Ok(read_bounded(path, Bounds::CONFIG.max_bytes)?)
}

/// Pseudo-file systems whose files are the machine's state (a process's
/// environment, memory, devices), not documents: never read as input,
/// wherever a path or link points.
pub const SYSTEM_ROOTS: &[&str] = &["/proc", "/sys", "/dev"];

/// The system root a resolved path lies under, if any.
pub fn system_root(resolved: &Path) -> Option<&'static str> {
    SYSTEM_ROOTS
        .iter()
        .copied()
        .find(|r| resolved.starts_with(r))
}

/// A name for a file type that is not a regular file.
pub fn kind_of(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO";
        }
        if ft.is_socket() {
            return "a socket";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_char_device() {
            return "a character device";
        }
    }
    if ft.is_dir() {
        "a folder"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Opens a file for reading without following a final symbolic link and
/// without blocking (a FIFO swapped in after the type check must not hang
/// the run), then checks on the open handle that it is a regular file.
pub fn open_regular(path: &Path, follow: bool) -> Result<std::fs::File, ReadError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
        opts.custom_flags(libc::O_NONBLOCK | nofollow);
    }
    #[cfg(not(unix))]
    let _ = follow;
    let file = opts.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Io(e),
    })?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        return Err(ReadError::NotAFile(kind_of(&ft)));
    }
    Ok(file)
}

/// Reads at most `max` bytes of a regular file (following a link given as
/// the path itself) as UTF-8 text. Checks the type before opening, so a
/// FIFO, a device or a folder is refused without being opened.
pub fn read_bounded(path: &Path, max: usize) -> Result<String, ReadError> {
    // `/proc/self/environ` is a regular file: refuse it by where it is,
    // or a parse error could echo the environment's tokens.
    if let Ok(resolved) = path.canonicalize()
        && let Some(root) = system_root(&resolved)
    {
        return Err(ReadError::System(root));
    }
    let ft = match std::fs::metadata(path) {
        Ok(m) => m.file_type(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NotFound),
        Err(e) => return Err(ReadError::Io(e)),
    };
    if !ft.is_file() {
        return Err(ReadError::NotAFile(kind_of(&ft)));
    }
    let file = open_regular(path, true)?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > max {
        return Err(ReadError::TooLarge { max });
    }
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

/// Runs `body` in a child process running only the test `name`, so that
/// a stack overflow or abort fails that test instead of killing the whole
/// test harness.
#[cfg(test)]
pub(crate) fn in_child_process(name: &str, body: impl FnOnce()) {
    let Some(out) = child_process(name, body) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {name} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `body` when this process is the child for test `name` (and
/// returns `None`); otherwise starts that child and returns its output.
#[cfg(test)]
fn child_process(name: &str, body: impl FnOnce()) -> Option<std::process::Output> {
    const CHILD: &str = "CLEARTRAIL_TEST_CHILD";
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return None;
    }
    Some(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, name)
            .output()
            .unwrap(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_block(n: usize) -> String {
        // "- - - - x" nests n block sequences on one line.
        let mut s = "- ".repeat(n);
        s.push_str("x\n");
        s
    }

    #[test]
    fn shallow_documents_pass() {
        let text = "a: 1\nb: [1, 2, {c: d}]\nanchored: &x {k: v}\nuse: *x\n";
        assert_eq!(check(text, &Bounds::CONFIG), Ok(()));
        assert_eq!(check(&nested_block(64), &Bounds::CONFIG), Ok(()));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        in_child_process(
            "yaml::tests::deep_nesting_is_refused_without_recursion",
            || {
                for text in [nested_block(100_000), format!("{}x", "[".repeat(100))] {
                    match check(&text, &Bounds::CONFIG) {
                        Err(BoundError::TooDeep {
                            line: 1, max: 64, ..
                        }) => {}
                        other => panic!("{other:?}"),
                    }
                }
            },
        );
        assert!(matches!(
            check(&nested_block(65), &Bounds::CONFIG),
            Err(BoundError::TooDeep { col: 129, .. })
        ));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ('b'..='i').zip('a'..) {
            bomb.push_str(&format!(
                "{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(bomb.len() < 1_000);
        match check(&bomb, &Bounds::CONFIG) {
            Err(e @ BoundError::TooManyAliasNodes { .. }) => {
                assert_eq!(e.position().unwrap().0, 4, "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    fn bomb(levels: char) -> String {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, prev) in ('b'..=levels).zip('a'..) {
            s.push_str(&format!(
                "{i}: &{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        s
    }

    /// What the parsers do without these bounds, checked rather than
    /// assumed: serde_yaml stops deep nesting (128 levels) and alias
    /// bombs (a jump limit) itself, but only after loading every event;
    /// yaml-rust2's loader copies every alias and overflows the stack on
    /// deep nesting (so this runs in a child process, which must crash).
    #[test]
    fn the_parsers_unbounded_behaviour() {
        let deep = format!("a:\n{}x\n", "- ".repeat(10_000));
        let e = serde_yaml::from_str::<serde_yaml::Value>(&deep).unwrap_err();
        assert!(e.to_string().contains("recursion limit exceeded"), "{e}");
        let e = serde_yaml::from_str::<serde_yaml::Value>(&bomb('i')).unwrap_err();
        assert!(e.to_string().contains("repetition limit exceeded"), "{e}");
        // Five levels of ten: 100,000 copies from 300 bytes.
        let docs = yaml_rust2::YamlLoader::load_from_str(&bomb('e')).unwrap();
        let e = &docs[0]["e"];
        let leaves = e.as_vec().unwrap().len()
            * e[0].as_vec().unwrap().len()
            * e[0][0].as_vec().unwrap().len()
            * e[0][0][0].as_vec().unwrap().len();
        assert_eq!(leaves, 10_000);
        let name = "yaml::tests::the_parsers_unbounded_behaviour";
        let crashed = child_process(name, || {
            let deep = format!("a:\n{}x\n", "- ".repeat(200_000));
            let _ = yaml_rust2::YamlLoader::load_from_str(&deep);
        });
        if let Some(out) = crashed {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && stderr.contains("overflowed its stack"),
                "yaml-rust2 now loads 200,000 nested sequences: {stderr}"
            );
        }
    }

    #[test]
    fn aliases_count_toward_depth() {
        // 40 levels anchored, then used 40 levels down: 80 in all.
        let deep = format!("{}x{}", "[".repeat(40), "]".repeat(40));
        let text = format!("a: &a {deep}\nb: {}*a{}\n", "[".repeat(40), "]".repeat(40));
        assert!(matches!(
            check(&text, &Bounds::CONFIG),
            Err(BoundError::TooDeep { line: 2, .. })
        ));
    }

    #[test]
    fn size_and_syntax() {
        let big = "a: b\n".repeat(20_000);
        assert!(matches!(
            check(&big, &Bounds::FRONT_MATTER),
            Err(BoundError::TooLarge {
                size: 100_000,
                max: 65_536
            })
        ));
        let e = check("a: [1, 2\n", &Bounds::CONFIG).unwrap_err();
        assert!(!e.is_bound(), "{e:?}");
    }

    #[test]
    fn read_bounded_refuses_special_files_and_reads_at_most_the_bound() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_bounded(d.path(), 10),
            Err(ReadError::NotAFile("a folder"))
        ));
        #[cfg(target_os = "linux")]
        {
            assert!(matches!(
                read_bounded(Path::new("/dev/zero"), 10),
                Err(ReadError::System("/dev"))
            ));
            let link = d.path().join("env.yml");
            std::os::unix::fs::symlink("/proc/self/environ", &link).unwrap();
            assert!(matches!(
                read_bounded(&link, 1 << 20),
                Err(ReadError::System("/proc"))
            ));
        }
        let f = d.path().join("f");
        std::fs::write(&f, "0123456789abc").unwrap();
        assert!(matches!(
            read_bounded(&f, 10),
            Err(ReadError::TooLarge { max: 10 })
        ));
        std::fs::write(&f, b"ok\xff").unwrap();
        assert!(matches!(
            read_bounded(&f, 10),
            Err(ReadError::NotUtf8 { offset: 2 })
        ));
        assert!(matches!(
            read_bounded(&d.path().join("none"), 10),
            Err(ReadError::NotFound)
        ));
    }
}
