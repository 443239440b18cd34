//! Static checks of `Dockerfile.source` / `Dockerfile.destination` (no Docker engine here).
//!
//! The facts checked are the ones the Airbyte platform relies on when it runs an image: an
//! `AIRBYTE_ENTRYPOINT` equal to the `ENTRYPOINT`, a shell (Debian runtime), the registry labels,
//! uid/gid 1000, CA certificates for TLS, and a writable `TMPDIR`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use testkit::workspace_root;

/// One Dockerfile instruction after joining continuation lines.
#[derive(Debug, Clone, PartialEq)]
struct Instruction {
    /// 1-based line where the instruction starts.
    line: usize,
    /// Upper-cased keyword (`RUN`, `ENV`, ...).
    keyword: String,
    /// Everything after the keyword, continuation lines joined with a space.
    args: String,
}

/// A build stage: its `FROM` line and the instructions after it.
#[derive(Debug)]
struct Stage {
    image: String,
    alias: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a Instruction> + 'a {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.instructions.iter().rfind(|i| i.keyword == keyword)
    }

    /// Value of `key` set by the stage's `ENV` or `LABEL` instructions (last one wins).
    fn pair(&self, keyword: &str, key: &str) -> Option<String> {
        self.all(keyword)
            .flat_map(|i| key_values(&i.args))
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .last()
    }
}

/// Splits a Dockerfile into instructions: joins `\` continuations, drops comments and blanks.
fn parse_instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending: Option<Instruction> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        // Comment lines are removed even inside a continuation (Docker does the same).
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (trimmed, false),
        };
        match pending.as_mut() {
            Some(p) => {
                p.args.push(' ');
                p.args.push_str(body);
            }
            None => {
                let (keyword, args) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
                pending = Some(Instruction {
                    line: i + 1,
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_string(),
                });
            }
        }
        if !continues {
            out.extend(pending.take());
        }
    }
    out.extend(pending.take());
    out
}

fn stages(instructions: Vec<Instruction>) -> Vec<Stage> {
    let mut out: Vec<Stage> = Vec::new();
    for ins in instructions {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let alias = match words.as_slice() {
                [_, as_kw, alias] if as_kw.eq_ignore_ascii_case("as") => Some(alias.to_string()),
                _ => None,
            };
            out.push(Stage {
                image: words.first().unwrap_or(&"").to_string(),
                alias,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = out.last_mut() {
            stage.instructions.push(ins);
        }
    }
    out
}

/// Splits shell-like words, honouring double and single quotes (quotes are removed).
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => cur.extend(chars.next()),
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                cur.extend(chars.next());
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// `ENV`/`LABEL` arguments as key/value pairs: `k=v k2="v 2"`, or the legacy `ENV k v w`.
fn key_values(args: &str) -> Vec<(String, String)> {
    let ws = words(args);
    match ws.first() {
        Some(first) if !first.contains('=') => {
            vec![(first.clone(), ws[1..].join(" "))]
        }
        _ => ws
            .iter()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Names of every binary a workspace member builds: `[[bin]]` names, plus the package name
/// when the member has `src/main.rs`.
fn workspace_binaries(root: &Path) -> BTreeSet<String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = toml_string_array(&manifest, "members");
    assert!(!members.is_empty(), "no workspace members in Cargo.toml");
    let mut bins = BTreeSet::new();
    for member in members {
        let dir = root.join(&member);
        let text = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let mut section = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            let Some(name) = toml_string_value(line, "name") else {
                continue;
            };
            match section.as_str() {
                "[package]" if dir.join("src/main.rs").is_file() => {
                    bins.insert(name);
                }
                "[[bin]]" => {
                    bins.insert(name);
                }
                _ => {}
            }
        }
    }
    bins
}

/// `key = "value"` on one line.
fn toml_string_value(line: &str, key: &str) -> Option<String> {
    let (k, v) = line.split_once('=')?;
    if k.trim() != key {
        return None;
    }
    let v = v.trim();
    Some(v.strip_prefix('"')?.split('"').next()?.to_string())
}

/// The quoted strings of `key = [ ... ]`, possibly spread over several lines.
fn toml_string_array(text: &str, key: &str) -> Vec<String> {
    let Some(start) = text
        .lines()
        .position(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
    else {
        return Vec::new();
    };
    let mut body = String::new();
    for line in text.lines().skip(start) {
        let line = line.split('#').next().unwrap_or_default();
        body.push_str(line);
        if line.contains(']') {
            break;
        }
    }
    body.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Everything wrong with one connector Dockerfile; empty when it is fine.
fn problems(dockerfile: &str, name: &str, version: &str, bins: &BTreeSet<String>) -> Vec<String> {
    let mut p = Vec::new();
    let stages = stages(parse_instructions(dockerfile));
    let bin_path = format!("/usr/local/bin/{name}");
    if !bins.contains(name) {
        p.push(format!(
            "`{name}` is not a binary of the workspace ({bins:?})"
        ));
    }
    let [builder, runtime] = stages.as_slice() else {
        p.push(format!(
            "expected 2 stages (builder, runtime), found {}",
            stages.len()
        ));
        return p;
    };

    // Builder.
    if builder.image != "rust:1.95-slim-bookworm" {
        p.push(format!(
            "builder image is {}, expected rust:1.95-slim-bookworm",
            builder.image
        ));
    }
    let Some(alias) = builder.alias.as_deref() else {
        p.push("builder stage has no `AS <alias>`".into());
        return p;
    };
    let build_cmd = format!("cargo build --release --locked -p {name}");
    if !builder.all("RUN").any(|r| r.args.contains(&build_cmd)) {
        p.push(format!("builder never runs `{build_cmd}`"));
    }

    // Runtime.
    if runtime.image != "debian:bookworm-slim" {
        p.push(format!(
            "runtime image is {}, expected debian:bookworm-slim (the platform needs /bin/sh)",
            runtime.image
        ));
    }
    let copies_binary = runtime.all("COPY").any(|c| {
        let ws = words(&c.args);
        ws.iter().any(|w| *w == format!("--from={alias}"))
            && ws.last().is_some_and(|dest| *dest == bin_path)
    });
    if !copies_binary {
        p.push(format!(
            "runtime does not COPY --from={alias} the binary to {bin_path}"
        ));
    }
    let installs_ca = runtime
        .all("RUN")
        .any(|r| r.args.contains("apt-get install") && r.args.contains("ca-certificates"));
    if !installs_ca {
        p.push("runtime does not install ca-certificates".into());
    }
    match runtime.last("ENTRYPOINT") {
        None => p.push("no ENTRYPOINT".into()),
        Some(ep) => match serde_json::from_str::<Vec<String>>(&ep.args) {
            Err(e) => p.push(format!(
                "ENTRYPOINT is not an exec-form JSON array ({e}): {}",
                ep.args
            )),
            Ok(argv) => {
                if argv != [bin_path.clone()] {
                    p.push(format!("ENTRYPOINT is {argv:?}, expected [{bin_path:?}]"));
                }
                match runtime.pair("ENV", "AIRBYTE_ENTRYPOINT") {
                    None => p.push("no ENV AIRBYTE_ENTRYPOINT".into()),
                    Some(env) if env != argv.join(" ") => p.push(format!(
                        "AIRBYTE_ENTRYPOINT {env:?} differs from ENTRYPOINT {:?}",
                        argv.join(" ")
                    )),
                    Some(_) => {}
                }
            }
        },
    }
    let expected_labels = [
        ("io.airbyte.name", format!("airbyte/{name}-rs")),
        ("io.airbyte.version", version.to_string()),
    ];
    for (key, want) in expected_labels {
        match runtime.pair("LABEL", key) {
            Some(got) if got == want => {}
            got => p.push(format!("LABEL {key} is {got:?}, expected {want:?}")),
        }
    }
    match runtime.last("USER").map(|u| u.args.as_str()) {
        Some("1000:1000" | "1000") => {}
        other => p.push(format!("final USER is {other:?}, expected 1000:1000")),
    }
    match runtime.last("WORKDIR").map(|w| w.args.as_str()) {
        Some("/airbyte/integration_code") => {}
        other => p.push(format!(
            "WORKDIR is {other:?}, expected /airbyte/integration_code"
        )),
    }
    // /tmp is world-writable (1777) in the Debian base image, so uid 1000 can write there.
    match runtime.pair("ENV", "TMPDIR").as_deref() {
        Some("/tmp") => {}
        other => p.push(format!("TMPDIR is {other:?}, expected /tmp")),
    }
    p
}

fn check_file(file: &str, name: &str) {
    let root = workspace_root();
    let text = fs::read_to_string(root.join(file)).unwrap();
    let found = problems(
        &text,
        name,
        env!("CARGO_PKG_VERSION"),
        &workspace_binaries(&root),
    );
    assert!(found.is_empty(), "{file}:\n  {}", found.join("\n  "));
}

#[test]
fn source_dockerfile_follows_airbyte_image_conventions() {
    check_file("Dockerfile.source", "source-salesforce");
}

#[test]
fn destination_dockerfile_follows_airbyte_image_conventions() {
    check_file("Dockerfile.destination", "destination-salesforce");
}

#[test]
fn dockerignore_keeps_build_outputs_and_venvs_out_of_the_context() {
    let text = fs::read_to_string(workspace_root().join(".dockerignore")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for pattern in ["target/", ".venv*/", ".git/"] {
        assert!(lines.contains(&pattern), ".dockerignore lacks {pattern}");
    }
}

#[test]
fn workspace_binaries_include_both_connectors() {
    let bins = workspace_binaries(&workspace_root());
    assert!(bins.contains("source-salesforce"), "{bins:?}");
    assert!(bins.contains("destination-salesforce"), "{bins:?}");
    assert!(!bins.contains("e2e-tests"), "{bins:?}");
}

// ---- the checker itself ----------------------------------------------------------------------

const GOOD: &str = r#"
# syntax=docker/dockerfile:1
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
COPY . .
RUN cargo build --release --locked -p demo \
    # a comment inside a continuation
    && cp target/release/demo /usr/local/bin/demo

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates
COPY --from=builder /usr/local/bin/demo /usr/local/bin/demo
WORKDIR /airbyte/integration_code
ENV TMPDIR=/tmp AIRBYTE_ENTRYPOINT="/usr/local/bin/demo"
LABEL io.airbyte.name="airbyte/demo-rs" \
      io.airbyte.version="0.1.0"
USER 1000:1000
ENTRYPOINT ["/usr/local/bin/demo"]
"#;

fn demo_bins() -> BTreeSet<String> {
    BTreeSet::from(["demo".to_string()])
}

fn problems_after(edit: impl Fn(&str) -> String) -> Vec<String> {
    problems(&edit(GOOD), "demo", "0.1.0", &demo_bins())
}

#[test]
fn checker_accepts_a_good_dockerfile() {
    assert_eq!(
        problems(GOOD, "demo", "0.1.0", &demo_bins()),
        Vec::<String>::new()
    );
}

#[test]
fn checker_joins_continuations_and_drops_comments() {
    let ins = parse_instructions(GOOD);
    let run = ins.iter().find(|i| i.keyword == "RUN").unwrap();
    assert_eq!(
        run.args,
        "cargo build --release --locked -p demo && cp target/release/demo /usr/local/bin/demo"
    );
    assert_eq!(run.line, 6);
}

#[test]
fn checker_reads_env_forms() {
    assert_eq!(
        key_values(r#"A=1 B="two words" C='x'"#),
        vec![
            ("A".into(), "1".into()),
            ("B".into(), "two words".into()),
            ("C".into(), "x".into())
        ]
    );
    assert_eq!(
        key_values("LEGACY some value"),
        vec![("LEGACY".into(), "some value".into())]
    );
}

#[test]
fn checker_flags_entrypoint_mismatch() {
    let found = problems_after(|s| {
        s.replace(
            r#"AIRBYTE_ENTRYPOINT="/usr/local/bin/demo""#,
            "AIRBYTE_ENTRYPOINT=/bin/demo",
        )
    });
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("differs from ENTRYPOINT"), "{found:?}");
}

#[test]
fn checker_flags_shell_form_entrypoint() {
    let found = problems_after(|s| s.replace(r#"["/usr/local/bin/demo"]"#, "/usr/local/bin/demo"));
    assert!(found.iter().any(|p| p.contains("exec-form")), "{found:?}");
}

#[test]
fn checker_flags_root_user_missing_labels_and_single_stage() {
    assert!(
        problems_after(|s| s.replace("USER 1000:1000", "USER root"))
            .iter()
            .any(|p| p.contains("USER"))
    );
    assert!(
        problems_after(|s| s.replace("io.airbyte.version=\"0.1.0\"", "other=1"))
            .iter()
            .any(|p| p.contains("io.airbyte.version"))
    );
    assert!(
        problems_after(|s| s.replace("ca-certificates", "curl"))
            .iter()
            .any(|p| p.contains("ca-certificates"))
    );
    let single = problems_after(|s| s.split("FROM debian").next().unwrap().to_string());
    assert!(single[0].contains("expected 2 stages"), "{single:?}");
}

#[test]
fn checker_flags_unknown_binary_and_distroless_runtime() {
    let found = problems(GOOD, "demo", "0.1.0", &BTreeSet::new());
    assert!(
        found[0].contains("not a binary of the workspace"),
        "{found:?}"
    );
    let found = problems_after(|s| s.replace("debian:bookworm-slim", "gcr.io/distroless/cc"));
    assert!(found.iter().any(|p| p.contains("/bin/sh")), "{found:?}");
}

#[test]
fn toml_helpers_read_members_and_names() {
    let root = "[workspace]\nmembers = [\n  \"a\", # first\n  \"b/c\",\n]\n";
    assert_eq!(toml_string_array(root, "members"), vec!["a", "b/c"]);
    assert_eq!(
        toml_string_value("name = \"x-y\"", "name").as_deref(),
        Some("x-y")
    );
    assert_eq!(toml_string_value("name.workspace = true", "name"), None);
}
