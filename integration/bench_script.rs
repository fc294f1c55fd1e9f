//! `./scripts/bench` must work on a fresh machine, as the test command does: what it installs
//! is decided by `scripts/bench-deps`, checked here against a made-up machine.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What `bench-deps` says is missing, with protoc present or not, and the well-known
/// .proto files looked for under `include`.
fn missing(protoc: bool, include: &Path) -> Vec<String> {
    let bin = tempfile::tempdir().unwrap();
    if protoc {
        let fake = bin.path().join("protoc");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("/bin/bash")
        .arg(root().join("scripts/bench-deps"))
        // Only the made-up bin directory: a protoc installed on this machine must not count.
        .env("PATH", bin.path())
        .env("ARK_PROTO_INCLUDE_DIR", include)
        .env("ARK_BENCH_ETCD", "/bin/true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn protoc_without_protobufs_well_known_protos_is_not_enough_for_the_etcd_client() {
    let empty = tempfile::tempdir().unwrap();
    // protobuf-compiler installed with --no-install-recommends: descriptor.proto is missing.
    assert_eq!(missing(true, empty.path()), ["libprotobuf-dev"]);
    assert_eq!(
        missing(false, empty.path()),
        ["protobuf-compiler", "libprotobuf-dev"]
    );
    let include = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(include.path().join("google/protobuf")).unwrap();
    std::fs::write(include.path().join("google/protobuf/descriptor.proto"), "").unwrap();
    assert!(missing(true, include.path()).is_empty());
}

#[test]
fn the_benchmark_command_installs_what_bench_deps_names() {
    let bench = std::fs::read_to_string(root().join("scripts/bench")).unwrap();
    assert!(
        bench.contains("scripts/bench-deps\" --install"),
        "scripts/bench must install through scripts/bench-deps"
    );
}
