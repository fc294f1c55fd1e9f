use std::cell::Cell;

use chrono::TimeZone;

use super::*;

thread_local! {
    static NOW: Cell<DateTime<Utc>> = Cell::new(Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap());
}

fn clock() -> DateTime<Utc> {
    NOW.with(Cell::get)
}

fn advance(ms: i64) {
    NOW.with(|n| n.set(n.get() + Duration::milliseconds(ms)));
}

fn rotation(max_bytes: u64, max_backups: usize, max_age_days: u64) -> Rotation {
    Rotation {
        max_bytes,
        max_backups,
        max_age_days,
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

/// A 40-byte line.
fn line(c: char) -> String {
    format!("{}\n", c.to_string().repeat(39))
}

#[test]
fn backups_are_named_as_lumberjack_names_them() {
    let t = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap() + Duration::milliseconds(7);
    let cases = [
        (
            "/var/log/ark/audit.log",
            "/var/log/ark/audit-2026-12-01T10-00-00.007.log",
        ),
        ("/var/log/audit", "/var/log/audit-2026-12-01T10-00-00.007"),
        ("a.b.log", "a.b-2026-12-01T10-00-00.007.log"),
    ];
    for (path, want) in cases {
        assert_eq!(
            backup_name(Path::new(path), t),
            PathBuf::from(want),
            "{path}"
        );
    }
}

#[test]
fn only_names_of_our_backups_carry_a_time() {
    let t = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap() + Duration::milliseconds(7);
    let ours = |n: &str| backup_time(n, "audit-", ".log");
    assert_eq!(ours("audit-2026-12-01T10-00-00.007.log"), Some(t));
    assert_eq!(ours("audit-2026-12-01T10-00-00.007.log.gz"), Some(t));
    for other in [
        "audit.log",
        "audit-notes.log",
        "audit-2026-12-01T10-00-00.07.log",
        "audit-2026-12-01T10:00:00.007.log",
        "other-2026-12-01T10-00-00.007.log",
        "audit-2026-12-01T10-00-00.007.txt",
    ] {
        assert_eq!(ours(other), None, "{other}");
    }
}

#[test]
fn a_write_that_would_pass_the_limit_rotates_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut f = RotatingFile::with_clock(&path, rotation(100, 0, 0), clock);
    f.write_all(line('a').as_bytes()).unwrap();
    f.write_all(line('b').as_bytes()).unwrap();
    advance(1500);
    f.write_all(line('c').as_bytes()).unwrap();
    assert_eq!(
        names(dir.path()),
        ["audit-2026-12-01T10-00-01.500.log", "audit.log"]
    );
    let backup = dir.path().join("audit-2026-12-01T10-00-01.500.log");
    assert_eq!(read(&backup), format!("{}{}", line('a'), line('b')));
    assert_eq!(read(&path), line('c'));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn an_existing_file_is_appended_to_unless_the_first_write_would_fill_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    fs::write(&path, line('a')).unwrap();
    let mut f = RotatingFile::with_clock(&path, rotation(100, 0, 0), clock);
    f.write_all(line('b').as_bytes()).unwrap();
    drop(f);
    assert_eq!(read(&path), format!("{}{}", line('a'), line('b')));
    assert_eq!(names(dir.path()), ["audit.log"]);

    // 80 bytes plus 20 reaches the limit: lumberjack rotates at start on `>=`.
    let mut f = RotatingFile::with_clock(&path, rotation(100, 0, 0), clock);
    f.write_all(&[b'x'; 20]).unwrap();
    assert_eq!(names(dir.path()).len(), 2);
    assert_eq!(read(&path), "x".repeat(20));
}

#[test]
fn a_rotated_file_keeps_the_permissions_of_the_one_it_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    fs::write(&path, "").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let mut f = RotatingFile::with_clock(&path, rotation(50, 0, 0), clock);
    f.write_all(line('a').as_bytes()).unwrap();
    f.write_all(line('b').as_bytes()).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640
    );
}

#[test]
fn a_line_larger_than_the_limit_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut f = RotatingFile::with_clock(&path, rotation(30, 0, 0), clock);
    let e = f.write(line('a').as_bytes()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "write length 40 exceeds maximum file size 30"
    );
    f.write_all(b"short\n").unwrap();
    assert_eq!(read(&path), "short\n");
}

#[test]
fn backups_beyond_max_backup_are_deleted_newest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut f = RotatingFile::with_clock(&path, rotation(40, 2, 0), clock);
    for c in ['a', 'b', 'c', 'd', 'e'] {
        advance(1000);
        f.write_all(line(c).as_bytes()).unwrap();
    }
    // Four rotations (b..e each rotated the previous line out); the two newest remain.
    assert_eq!(
        names(dir.path()),
        [
            "audit-2026-12-01T10-00-04.000.log",
            "audit-2026-12-01T10-00-05.000.log",
            "audit.log"
        ]
    );
    assert_eq!(
        read(&dir.path().join("audit-2026-12-01T10-00-05.000.log")),
        line('d')
    );
    assert_eq!(read(&path), line('e'));
}

#[test]
fn backups_older_than_max_age_are_deleted_at_start_and_other_files_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let now = clock();
    for (days, hours) in [(10, 0), (3, 1), (2, 23)] {
        let t = now - Duration::days(days) - Duration::hours(hours);
        fs::write(backup_name(&path, t), "old\n").unwrap();
    }
    fs::write(dir.path().join("notes.txt"), "keep\n").unwrap();
    fs::write(dir.path().join("audit-keep.log"), "keep\n").unwrap();
    let mut f = RotatingFile::with_clock(&path, rotation(1000, 0, 3), clock);
    f.write_all(b"x\n").unwrap();
    let left = names(dir.path());
    let two_days = backup_name(&path, now - Duration::days(2) - Duration::hours(23));
    let two_days = two_days.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(
        left,
        [
            two_days,
            "audit-keep.log".to_string(),
            "audit.log".to_string(),
            "notes.txt".to_string()
        ]
    );
}

#[test]
fn a_backup_and_its_compressed_copy_count_once() {
    let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    let at = |s: i64| t0 + Duration::seconds(s);
    let backups = vec![
        ("audit-3.log".to_string(), at(3)),
        ("audit-2.log.gz".to_string(), at(2)),
        ("audit-2.log".to_string(), at(2)),
        ("audit-1.log".to_string(), at(1)),
    ];
    let removed = backups_to_remove(backups, rotation(1, 2, 0), at(10));
    assert_eq!(removed, ["audit-1.log"]);
    // No limits: nothing goes.
    let none = backups_to_remove(vec![("a".into(), at(0))], rotation(1, 0, 0), at(10));
    assert!(none.is_empty());
    // An absurd age keeps everything instead of overflowing.
    let huge = backups_to_remove(vec![("a".into(), at(0))], rotation(1, 0, u64::MAX), at(10));
    assert!(huge.is_empty());
}
