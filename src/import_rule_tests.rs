//! Keeps the module layering of `docs/architecture.md` true: every `crate::<module>` path in
//! `src/**/*.rs` (outside comments and string literals) must be an edge the table below allows,
//! and no source file may grow past [`MAX_FILE_LINES`].
//!
//! The table is the import rule written out: `network → api → {replication, coordinator,
//! controller, metadata} → {log, zk}`, with `protocol` and the small leaf helpers usable from
//! anywhere, and only the composition root (`lib.rs`, `main.rs`, `server.rs`) free to use
//! everything. A module missing from the table fails the test, so adding one forces a decision
//! about where it sits. Only `crate::` paths are checked: `super::` never leaves a top-level
//! module in this code base, and `gregor::` appears only in the binary's `main.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files may not grow past this many lines.
const MAX_FILE_LINES: usize = 800;

/// Files still over [`MAX_FILE_LINES`], as paths relative to `src/`. Only ever shrink this list:
/// a file leaves it when it is split.
const OVER_LIMIT_ALLOWED: &[&str] = &[];

/// Modules that may use any other module: the composition root and this test.
const ROOT: &[&str] = &["lib", "main", "server", "import_rule_tests"];

/// Leaf helpers every module may use; they use no other gregor module themselves.
const LEAVES: &[&str] = &["common", "protocol", "util"];

/// For each non-root, non-leaf module, the other modules it may use besides [`LEAVES`].
const ALLOWED: &[(&str, &[&str])] = &[
    ("cli", &[]),
    ("log", &[]),
    ("zk", &[]),
    // `LogConfig` is the typed form of the topic-level keys.
    ("config", &["log"]),
    ("metadata", &["config", "log", "zk"]),
    ("replication", &["config", "log", "zk", "metadata"]),
    ("controller", &["config", "log", "zk", "metadata"]),
    // The group coordinator stores groups and offsets through the ReplicaManager, as Kafka's
    // GroupMetadataManager does.
    (
        "coordinator",
        &["config", "log", "zk", "metadata", "replication"],
    ),
    (
        "api",
        &[
            "config",
            "log",
            "zk",
            "metadata",
            "replication",
            "controller",
            "coordinator",
        ],
    ),
    ("network", &["config", "api"]),
];

/// `Ok(true)` if `from` may use `to`, `Ok(false)` if not, `Err` if `from` is not in the table.
fn allowed(from: &str, to: &str) -> Result<bool, String> {
    if from == to || ROOT.contains(&from) {
        return Ok(true);
    }
    if LEAVES.contains(&from) {
        return Ok(false);
    }
    if LEAVES.contains(&to) {
        return Ok(true);
    }
    match ALLOWED.iter().find(|(m, _)| *m == from) {
        Some((_, deps)) => Ok(deps.contains(&to)),
        None => Err(format!(
            "module `{from}` is not in the import table of src/import_rule_tests.rs: \
             add it (and its allowed dependencies) there and to docs/architecture.md"
        )),
    }
}

/// Replaces comments and the contents of string and char literals with spaces, keeping every
/// newline, so that what remains is code with its original line numbers.
fn code_only(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && !prev_ident && matches!(next, Some('"') | Some('#')) {
            // Raw string: r"…", r#"…"#, …; a bare `r#ident` is not one.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push(' ');
            i += 2 + hashes;
            while i < chars.len() {
                let closes = chars[i] == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == '#')
                        .count()
                        == hashes;
                if closes {
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if let Some(&ch) = chars.get(i) {
                    out.push(blank(ch));
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\''); anything else after a quote is a lifetime.
            i += 1;
            if chars.get(i) == Some(&'\\') {
                i += 1;
            }
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_at(chars: &[char], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    while let Some(&c) = chars.get(i) {
        if !(c.is_alphanumeric() || c == '_') {
            break;
        }
        name.push(c);
        i += 1;
    }
    (name, i)
}

/// The top-level modules named by `crate::<module>` paths in `code` (already through
/// [`code_only`]), with 1-based line numbers; `crate::{a::X, b}` yields `a` and `b`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let needle: Vec<char> = "crate::".chars().collect();
        for at in 0..chars.len() {
            if !chars[at..].starts_with(&needle) {
                continue;
            }
            if at > 0 && (chars[at - 1].is_alphanumeric() || chars[at - 1] == '_') {
                continue;
            }
            let start = at + needle.len();
            if chars.get(start) == Some(&'{') {
                let mut depth = 0usize;
                let mut expect_name = true;
                let mut i = start;
                while let Some(&c) = chars.get(i) {
                    match c {
                        '{' => {
                            depth += 1;
                            expect_name = depth == 1;
                            i += 1;
                        }
                        '}' => {
                            depth -= 1;
                            i += 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => {
                            expect_name = true;
                            i += 1;
                        }
                        c if expect_name && (c.is_alphanumeric() || c == '_') => {
                            let (name, end) = ident_at(&chars, i);
                            if name != "self" {
                                found.push((n + 1, name));
                            }
                            expect_name = false;
                            i = end;
                        }
                        _ => i += 1,
                    }
                }
            } else {
                let (name, _) = ident_at(&chars, start);
                if !name.is_empty() {
                    found.push((n + 1, name));
                }
            }
        }
    }
    found
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => panic!("cannot list {}: {e}", dir.display()),
    };
    for entry in entries {
        let path = match entry {
            Ok(e) => e.path(),
            Err(e) => panic!("cannot list {}: {e}", dir.display()),
        };
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    out.sort();
}

/// The top-level module a file belongs to: `api/fetch.rs` → `api`, `server.rs` → `server`.
fn owning_module(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// Every violation of the import rule in `source` (a file of module `module`), as
/// `file:line: message`.
fn violations(file: &str, module: &str, source: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (line, target) in crate_paths(&code_only(source)) {
        match allowed(module, &target) {
            Ok(true) => {}
            Ok(false) => out.push(format!(
                "{file}:{line}: `{module}` may not use `crate::{target}` (docs/architecture.md, \
                 \"The import rule\")"
            )),
            Err(e) => out.push(format!("{file}:{line}: {e}")),
        }
    }
    out
}

fn source_files() -> Vec<(String, String)> {
    let root = src_dir();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => panic!("cannot read {}: {e}", path.display()),
            };
            (relative.to_string_lossy().into_owned(), text)
        })
        .collect()
}

#[test]
fn every_crate_import_follows_the_layering() {
    let files = source_files();
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );
    let mut problems = Vec::new();
    let mut edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (relative, text) in &files {
        let module = owning_module(Path::new(relative));
        for (_, target) in crate_paths(&code_only(text)) {
            *edges.entry((module.clone(), target)).or_default() += 1;
        }
        problems.extend(violations(&format!("src/{relative}"), &module, text));
    }
    assert!(
        edges.contains_key(&("network".to_string(), "api".to_string())),
        "the scan found no network → api import: the path extraction is broken ({edges:?})"
    );
    assert!(
        problems.is_empty(),
        "{} import(s) break the module layering:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn no_source_file_is_over_the_line_limit() {
    let mut over = Vec::new();
    let mut listed_but_fine = Vec::new();
    for (relative, text) in source_files() {
        let lines = text.lines().count();
        let allowed = OVER_LIMIT_ALLOWED.contains(&relative.as_str());
        if lines > MAX_FILE_LINES && !allowed {
            over.push(format!(
                "src/{relative}: {lines} lines (limit {MAX_FILE_LINES})"
            ));
        } else if lines <= MAX_FILE_LINES && allowed {
            listed_but_fine.push(format!("src/{relative}"));
        }
    }
    assert!(
        over.is_empty(),
        "split these files along a real boundary:\n{}",
        over.join("\n")
    );
    assert!(
        listed_but_fine.is_empty(),
        "now under {MAX_FILE_LINES} lines, remove from OVER_LIMIT_ALLOWED: {listed_but_fine:?}"
    );
}

#[test]
fn comments_and_literals_are_not_imports() {
    let src = r##"
use crate::log::TopicPartition; // not crate::api here
/* crate::api /* nested */ crate::network */
let s = "crate::api";
let r = r#"crate::api "quoted" "#;
let c = '"'; let q = '\''; fn f<'a>(x: &'a str) {}
use crate::{zk::ZkError, protocol::{self, batch}, self};
let t = my_crate::api::x;
crate::metadata::Snapshot::new()
"##;
    let found: Vec<(usize, String)> = crate_paths(&code_only(src));
    let names: Vec<(usize, &str)> = found.iter().map(|(l, n)| (*l, n.as_str())).collect();
    assert_eq!(
        names,
        vec![(2, "log"), (7, "zk"), (7, "protocol"), (9, "metadata")]
    );
}

#[test]
fn the_table_refuses_upward_and_unknown_imports() {
    let upward = violations(
        "src/coordinator/x.rs",
        "coordinator",
        "use crate::api::error_code;",
    );
    assert_eq!(upward.len(), 1, "{upward:?}");
    assert!(
        upward[0].starts_with("src/coordinator/x.rs:1:"),
        "{upward:?}"
    );
    assert!(violations("src/log/x.rs", "log", "use crate::zk::ZkHandle;").len() == 1);
    assert!(violations("src/protocol/x.rs", "protocol", "use crate::log::Log;").len() == 1);
    assert!(violations("src/zk/x.rs", "zk", "use crate::protocol::batch;").is_empty());
    assert!(violations("src/server.rs", "server", "use crate::api::ApiContext;").is_empty());
    let unknown = violations("src/newmod/x.rs", "newmod", "use crate::log::Log;");
    assert!(
        unknown.len() == 1 && unknown[0].contains("not in the import table"),
        "{unknown:?}"
    );
    assert_eq!(owning_module(Path::new("api/fetch.rs")), "api");
    assert_eq!(owning_module(Path::new("server.rs")), "server");
}
