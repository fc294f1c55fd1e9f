//! The Dockerfile cannot be built here (no Docker engine), so its promises are checked
//! by reading it: it builds the release binary cargo makes and copies exactly that file,
//! runs as a non-root user, and carries no configuration or secrets.

use std::path::Path;

fn dockerfile() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
        .expect("reading the Dockerfile");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// The `[[bin]]` name in Cargo.toml: the file `cargo build --release` writes.
fn binary_name() -> String {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let bin = manifest.split("[[bin]]").nth(1).expect("a [[bin]] section");
    let line = bin
        .lines()
        .find(|l| l.trim_start().starts_with("name"))
        .expect("a bin name");
    line.split('"')
        .nth(1)
        .expect("a quoted bin name")
        .to_string()
}

#[test]
fn the_image_copies_the_binary_that_cargo_build_release_makes() {
    let lines = dockerfile();
    let bin = binary_name();
    assert_eq!(
        bin,
        env!("CARGO_BIN_EXE_ark-apiserver")
            .rsplit('/')
            .next()
            .unwrap()
    );
    let workdir = lines
        .iter()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .expect("the build stage's WORKDIR");
    let build = lines
        .iter()
        .find(|l| l.starts_with("RUN cargo build"))
        .expect("a cargo build step");
    for part in ["--release", "--locked", &format!("--bin {bin}")] {
        assert!(build.contains(part), "the build step lacks {part}: {build}");
    }
    let copy = lines
        .iter()
        .find(|l| l.starts_with("COPY --from=build"))
        .expect("a COPY from the build stage");
    let source = copy.split_whitespace().nth(2).unwrap();
    assert_eq!(source, format!("{workdir}/target/release/{bin}"));
    let entry = lines
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    let target = copy.split_whitespace().nth(3).unwrap();
    assert_eq!(entry, format!("[\"{target}\"]"));
}

#[test]
fn the_image_is_multi_stage_runs_as_non_root_and_bakes_in_no_configuration() {
    let lines = dockerfile();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("FROM ")).count(),
        2,
        "a build and a runtime stage"
    );
    let runtime_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let user = lines[runtime_from..]
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the runtime stage");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "runs as {user}"
    );
    for l in &lines {
        assert!(
            !l.starts_with("ENV ") && !l.starts_with("ARG "),
            "configuration baked in: {l}"
        );
        let upper = l.to_uppercase();
        for secret in ["PASSWORD", "DATABASE_URL", "PRIVATE_KEY", "TOKEN"] {
            assert!(!upper.contains(secret), "a secret-looking line: {l}");
        }
    }
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        "the build context must not carry target/"
    );
}
