//! Building trees: a change set becomes new blobs and the subtrees on the
//! path of each change, spliced into the raw bytes of the base trees.
//!
//! Only the folders a change touches are read and rewritten; every other
//! entry of a base tree is copied byte for byte. Objects go to a [`Sink`]:
//! loose objects for small change sets, one in-memory pack for large ones.

use super::Content;
use super::StoreError;
use super::pack::{ObjKind, PackBuilder, object_id};
use git2::{ObjectType, Oid, Repository};
use std::collections::BTreeMap;
use std::path::Path;

/// Above this many changed files, a change set is written as one packfile
/// (one file, one flush) rather than as loose objects (a file per object,
/// about 1 ms each on an ordinary disk).
pub(super) const PACK_THRESHOLD: usize = 32;

/// Writes the objects for `base` (a tree id) + `changes` and returns the
/// root tree id (`None` for an empty tree). `objects_dir` is the
/// repository's shared `objects` folder (for a linked worktree, the one of
/// the main repository, never `.git/worktrees/<name>/objects`).
pub(super) fn write_tree(
    repo: &Repository,
    base: Option<Oid>,
    changes: &super::ChangeSet,
    objects_dir: &Path,
) -> Result<Option<Oid>, StoreError> {
    let mut root = Dir::default();
    for (path, change) in changes.iter() {
        root.insert(path, change)?;
    }
    let odb = repo
        .odb()
        .map_err(|e| StoreError::git("opening the object database", e))?;
    let mut sink = if changes.len() > PACK_THRESHOLD {
        Sink::Pack(Box::new(PackBuilder::spilling(objects_dir)))
    } else {
        Sink::Loose(
            repo.odb()
                .map_err(|e| StoreError::git("opening the object database", e))?,
        )
    };
    // Blobs first, in path order; then trees, whose rebuild (reading and
    // splicing the base trees) is what grows with the repository and can
    // use a second core.
    root.write_blobs(&mut sink)?;
    let id = build(&odb, repo.commondir(), base, &root, &mut sink, true)?;
    if let Sink::Pack(pb) = sink {
        pb.finish(objects_dir)?;
        odb.refresh()
            .map_err(|e| StoreError::git("refreshing the object database", e))?;
    }
    Ok(id)
}

/// Builds the tree for `dir` on top of `base` (a tree id), writing new
/// trees to `sink`; blobs were written before. `split` allows handing half
/// of the changed subfolders to a second thread once, at the first level
/// where there are two or more.
pub(super) fn build(
    odb: &git2::Odb<'_>,
    repo_path: &Path,
    base: Option<Oid>,
    dir: &Dir<'_>,
    sink: &mut Sink<'_>,
    split: bool,
) -> Result<Option<Oid>, StoreError> {
    // The base tree's raw bytes are spliced, not re-parsed into owned
    // entries: in a folder of thousands of artifacts, a change touches a
    // few entries and the rest are copied as they are.
    let obj = match base {
        Some(b) => Some(
            odb.read(b)
                .map_err(|e| StoreError::git(format!("reading tree {b}"), e))?,
        ),
        None => None,
    };
    let raw: &[u8] = obj.as_ref().map(|o| o.data()).unwrap_or_default();
    let base_entries = parse_tree(raw).ok_or_else(|| StoreError::Corrupt {
        what: format!("tree {}", base.map(|b| b.to_string()).unwrap_or_default()),
    })?;

    // Where each changed name sits in the base (sorted in Git's order, so
    // a binary search finds it whether it was a file or a folder).
    let find_as = |name: &[u8], tree: bool| {
        base_entries
            .binary_search_by(|e| git_order(e.name, e.is_tree, name, tree))
            .ok()
    };
    let find = |name: &[u8]| find_as(name, false).or_else(|| find_as(name, true));
    let mut removed: Vec<usize> = Vec::new();
    let mut inserts: Vec<(Vec<u8>, bool, Oid)> = Vec::with_capacity(dir.children.len());
    let mut subdirs: Vec<(&str, &Dir<'_>, Option<Oid>)> = Vec::new();
    for (name, node) in &dir.children {
        // A deletion removes a file only: a folder of the same name stays.
        // Deleting below a path never removes a file of that name either.
        let existing = match node {
            Node::Blob(None) => find_as(name.as_bytes(), false),
            Node::Dir(d) if d.only_deletions() => find_as(name.as_bytes(), true),
            _ => find(name.as_bytes()),
        };
        removed.extend(existing);
        match node {
            Node::Blob(None) => {}
            Node::Blob(Some(content)) => {
                let oid = sink.write_content(content)?;
                inserts.push((name.as_bytes().to_vec(), false, oid));
            }
            Node::Written(oid) => inserts.push((name.as_bytes().to_vec(), false, *oid)),
            Node::Dir(sub) => {
                let sub_base = existing
                    .map(|i| &base_entries[i])
                    .filter(|e| e.is_tree)
                    .map(|e| e.oid);
                subdirs.push((name, sub, sub_base));
            }
        }
    }
    let parallel = split && subdirs.len() >= 2 && matches!(sink, Sink::Pack(_));
    let built: Vec<(&str, Option<Oid>)> = if parallel {
        build_split(odb, repo_path, &subdirs, sink)?
    } else {
        let mut out = Vec::with_capacity(subdirs.len());
        let pass_on = split && subdirs.len() == 1;
        for (name, sub, sub_base) in &subdirs {
            out.push((*name, build(odb, repo_path, *sub_base, sub, sink, pass_on)?));
        }
        out
    };
    for (name, oid) in built {
        if let Some(oid) = oid {
            inserts.push((name.as_bytes().to_vec(), true, oid));
        }
    }
    inserts.sort_by(|a, b| git_order(&a.0, a.1, &b.0, b.1));
    removed.sort_unstable();

    // Copy the base in runs between the changed entries, placing each new
    // entry at its position in Git's order.
    let mut out = Vec::with_capacity(raw.len() + inserts.len() * 64);
    let mut count = base_entries.len() - removed.len();
    let mut next = 0usize; // first base entry not yet copied
    let mut removed = removed.into_iter().peekable();
    for (n, t, oid) in &inserts {
        let pos = base_entries.partition_point(|e| git_order(e.name, e.is_tree, n, *t).is_lt());
        copy_run(&mut out, &base_entries, next, pos, &mut removed);
        next = next.max(pos);
        push_entry(&mut out, n, *t, *oid);
        count += 1;
    }
    copy_run(
        &mut out,
        &base_entries,
        next,
        base_entries.len(),
        &mut removed,
    );
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(sink.write(ObjKind::Tree, &out)?))
}

/// Subtree ids by position in the list of subfolders.
type Built = Vec<(usize, Option<Oid>)>;

/// Builds every other subfolder on a second thread (with its own handle on
/// the repository and its own pack builder), the rest here, then joins the
/// second thread's objects into `sink`. Results keep the input order.
fn build_split<'d>(
    odb: &git2::Odb<'_>,
    repo_path: &Path,
    subdirs: &[(&'d str, &Dir<'_>, Option<Oid>)],
    sink: &mut Sink<'_>,
) -> Result<Vec<(&'d str, Option<Oid>)>, StoreError> {
    let (mine, theirs): (Vec<_>, Vec<_>) =
        subdirs.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let (mut results, other_pack) = std::thread::scope(|scope| -> Result<_, StoreError> {
        let handle = scope.spawn(|| -> Result<(Built, Sink<'static>), StoreError> {
            let repo = Repository::open(repo_path)
                .map_err(|e| StoreError::git("opening a second handle", e))?;
            let odb = repo
                .odb()
                .map_err(|e| StoreError::git("opening the object database", e))?;
            let mut own = Sink::Pack(Box::default());
            let mut out = Vec::with_capacity(theirs.len());
            for (i, (_, sub, sub_base)) in &theirs {
                out.push((*i, build(&odb, repo_path, *sub_base, sub, &mut own, false)?));
            }
            Ok((out, own))
        });
        let mut out = Vec::with_capacity(subdirs.len());
        for (i, (_, sub, sub_base)) in &mine {
            out.push((*i, build(odb, repo_path, *sub_base, sub, sink, false)?));
        }
        let (theirs_out, own) = handle.join().map_err(|_| StoreError::Corrupt {
            what: "a tree (the second build thread panicked)".into(),
        })??;
        out.extend(theirs_out);
        Ok((out, own))
    })?;
    if let (Sink::Pack(main), Sink::Pack(other)) = (sink, other_pack) {
        main.absorb(*other)?;
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(results
        .into_iter()
        .map(|(i, oid)| (subdirs[i].0, oid))
        .collect())
}

/// Git's tree order: by name bytes, where a subtree sorts as if its name
/// ended in `/`.
fn git_order(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> std::cmp::Ordering {
    let ka = a.iter().copied().chain(a_tree.then_some(b'/'));
    let kb = b.iter().copied().chain(b_tree.then_some(b'/'));
    ka.cmp(kb)
}

/// Copies base entries `from..to` into `out` as one slice per run,
/// skipping the indices in `removed` (sorted).
fn copy_run(
    out: &mut Vec<u8>,
    entries: &[RawEntry<'_>],
    from: usize,
    to: usize,
    removed: &mut std::iter::Peekable<std::vec::IntoIter<usize>>,
) {
    let mut start = from;
    while start < to {
        let stop = match removed.peek() {
            Some(&r) if r < start => {
                removed.next();
                continue;
            }
            Some(&r) if r < to => r,
            _ => to,
        };
        if stop > start {
            let first = entries[start].raw.as_ptr() as usize - entries[0].raw.as_ptr() as usize;
            let last = entries[stop - 1].raw.as_ptr() as usize - entries[0].raw.as_ptr() as usize
                + entries[stop - 1].raw.len();
            out.extend_from_slice(&entries[0].raw_all[first..last]);
        }
        if stop < to {
            removed.next();
            start = stop + 1;
        } else {
            start = to;
        }
    }
}

fn push_entry(out: &mut Vec<u8>, name: &[u8], tree: bool, oid: Oid) {
    out.extend_from_slice(if tree { b"40000 " } else { b"100644 " });
    out.extend_from_slice(name);
    out.push(0);
    out.extend_from_slice(oid.as_bytes());
}

/// One entry of a raw tree object, borrowed from its bytes.
pub(super) struct RawEntry<'a> {
    pub(super) name: &'a [u8],
    /// `40000`, `100644`, `100755`, `120000` or `160000`.
    pub(super) mode: &'a [u8],
    pub(super) is_tree: bool,
    pub(super) oid: Oid,
    /// The whole entry (`<mode> <name>\0<20-byte id>`), copied as is.
    raw: &'a [u8],
    /// The whole tree the entry is part of, to copy runs of entries at once.
    raw_all: &'a [u8],
}

/// Parses a raw tree object; `None` when it is malformed.
pub(super) fn parse_tree(data: &[u8]) -> Option<Vec<RawEntry<'_>>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let start = i;
        let sp = data[i..].iter().position(|&b| b == b' ')? + i;
        let mode = &data[i..sp];
        let nul = data[sp + 1..].iter().position(|&b| b == 0)? + sp + 1;
        let end = nul + 21;
        if end > data.len() {
            return None;
        }
        out.push(RawEntry {
            name: &data[sp + 1..nul],
            mode,
            is_tree: mode == b"40000",
            oid: Oid::from_bytes(&data[nul + 1..end]).ok()?,
            raw: &data[start..end],
            raw_all: data,
        });
        i = end;
    }
    Some(out)
}

pub(super) enum Sink<'r> {
    Loose(git2::Odb<'r>),
    Pack(Box<PackBuilder>),
}

impl Sink<'_> {
    fn write_content(&mut self, content: &Content) -> Result<Oid, StoreError> {
        match (self, content) {
            (Sink::Pack(pb), Content::Packed(p)) => pb.add_packed(p),
            (sink, c) => sink.write(ObjKind::Blob, &c.bytes()),
        }
    }

    pub(super) fn write(&mut self, kind: ObjKind, data: &[u8]) -> Result<Oid, StoreError> {
        match self {
            Sink::Loose(odb) => {
                let t = match kind {
                    ObjKind::Blob => ObjectType::Blob,
                    ObjKind::Tree => ObjectType::Tree,
                    ObjKind::Commit => ObjectType::Commit,
                };
                let id = object_id(kind, data);
                if odb.exists(id) {
                    return Ok(id);
                }
                odb.write(t, data)
                    .map_err(|e| StoreError::git("writing an object", e))
            }
            Sink::Pack(pb) => pb.add(kind, data),
        }
    }
}

#[derive(Default)]
pub(super) struct Dir<'a> {
    children: BTreeMap<&'a str, Node<'a>>,
}

enum Node<'a> {
    /// New contents, or a deletion.
    Blob(Option<&'a Content>),
    /// New bytes already written, as their id.
    Written(Oid),
    Dir(Dir<'a>),
}

impl<'a> Dir<'a> {
    fn only_deletions(&self) -> bool {
        self.children.values().all(|n| match n {
            Node::Blob(c) => c.is_none(),
            Node::Written(_) => false,
            Node::Dir(d) => d.only_deletions(),
        })
    }

    /// Writes every new blob, in path order, and keeps its id.
    pub(super) fn write_blobs(&mut self, sink: &mut Sink<'_>) -> Result<(), StoreError> {
        let mut pending = Vec::new();
        self.pending_blobs(&mut pending);
        match sink {
            Sink::Pack(main) => {
                // Deflating is most of writing a blob: two threads each
                // compress half of a batch into a builder of their own,
                // which the main builder then takes in (in a fixed order).
                // Batches bound what sits in memory before it spills.
                // Contents deflated beforehand are copied as they are.
                for node in pending.iter_mut() {
                    if let Node::Blob(Some(Content::Packed(p))) = **node {
                        **node = Node::Written(main.add_packed(p)?);
                    }
                }
                pending.retain(|n| matches!(n, Node::Blob(Some(Content::Raw(_)))));
                const BATCH: usize = 4096;
                for batch in pending.chunks_mut(BATCH) {
                    let half = batch.len() / 2;
                    let (a, b) = batch.split_at_mut(half);
                    let compress = |part: &mut [&mut Node<'_>]| -> Result<PackBuilder, StoreError> {
                        let mut pb = PackBuilder::new();
                        for node in part.iter_mut() {
                            if let Node::Blob(Some(Content::Raw(bytes))) = **node {
                                **node = Node::Written(pb.add(ObjKind::Blob, bytes)?);
                            }
                        }
                        Ok(pb)
                    };
                    let (pa, pb) = std::thread::scope(|scope| {
                        let other = scope.spawn(|| compress(b));
                        let mine = compress(a);
                        (mine, other.join().expect("a compressing thread panicked"))
                    });
                    main.absorb(pa?)?;
                    main.absorb(pb?)?;
                }
            }
            Sink::Loose(_) => {
                for node in pending {
                    if let Node::Blob(Some(content)) = *node {
                        *node = Node::Written(sink.write_content(content)?);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every node with new bytes, in path order.
    fn pending_blobs<'s>(&'s mut self, out: &mut Vec<&'s mut Node<'a>>) {
        for node in self.children.values_mut() {
            match node {
                Node::Blob(Some(_)) => out.push(node),
                Node::Dir(d) => d.pending_blobs(out),
                Node::Blob(None) | Node::Written(_) => {}
            }
        }
    }

    pub(super) fn insert(
        &mut self,
        path: &'a str,
        change: Option<&'a Content>,
    ) -> Result<(), StoreError> {
        let bad = |reason| StoreError::BadPath {
            path: path.to_string(),
            reason,
        };
        let mut parts = path.split('/').peekable();
        let mut dir = self;
        while let Some(part) = parts.next() {
            if part.is_empty() || part == "." || part == ".." || part == ".git" {
                return Err(bad("empty, `.`, `..` or `.git` segment"));
            }
            if parts.peek().is_none() {
                match (dir.children.get(part), change) {
                    // Deleting a file where the change set builds a folder:
                    // the folder replaces it anyway.
                    (Some(Node::Dir(_)), None) => {}
                    // A file replaces a folder whose contents are all being
                    // deleted.
                    (Some(Node::Dir(d)), Some(_)) if d.only_deletions() => {
                        dir.children.insert(part, Node::Blob(change));
                    }
                    (Some(Node::Dir(_)), Some(_)) => {
                        return Err(bad("a file would replace a folder"));
                    }
                    _ => {
                        dir.children.insert(part, Node::Blob(change));
                    }
                }
                return Ok(());
            }
            let node = dir
                .children
                .entry(part)
                .or_insert_with(|| Node::Dir(Dir::default()));
            match node {
                // A deleted file becomes a folder.
                Node::Blob(None) => *node = Node::Dir(Dir::default()),
                // Deleting below a path that becomes a file is implied.
                Node::Blob(Some(_)) | Node::Written(_) if change.is_none() => return Ok(()),
                Node::Blob(Some(_)) | Node::Written(_) => {
                    return Err(bad("a folder would replace a file"));
                }
                Node::Dir(_) => {}
            }
            dir = match node {
                Node::Dir(d) => d,
                Node::Blob(_) | Node::Written(_) => unreachable!("replaced by a folder above"),
            };
        }
        Err(bad("empty path"))
    }
}
