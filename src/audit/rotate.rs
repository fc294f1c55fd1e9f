//! The audit log file, rotated as kube-apiserver's log backend rotates it (lumberjack v2):
//!
//! - a write that would take the file past the size limit first moves the file aside as
//!   `<name>-<UTC time of rotation, 2006-01-02T15-04-05.000>.<ext>` (`audit.log` becomes
//!   `audit-2026-12-01T10-00-00.000.log`) and starts a new one;
//! - at start, an existing file is appended to unless the first write would fill it;
//! - after each rotation (and at start), backups beyond `max_backups` (newest kept, by the
//!   time in their name) and older than `max_age` are deleted; 0 means no limit;
//! - one write larger than the limit is refused whole (`write length N exceeds maximum
//!   file size M`), so a line is never split across files.
//!
//! Each `write` is one event line; callers must not split lines across writes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};

/// lumberjack's `backupTimeFormat`, `2006-01-02T15-04-05.000`, in chrono's words.
const BACKUP_TIME_FORMAT: &str = "%Y-%m-%dT%H-%M-%S%.3f";
/// lumberjack also recognises its gzip-compressed backups when pruning.
const COMPRESS_SUFFIX: &str = ".gz";

/// When to rotate and what to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The largest size of the current file, in bytes (`--audit-log-maxsize` MB).
    pub max_bytes: u64,
    /// Most backups kept; 0 keeps all (`--audit-log-maxbackup`).
    pub max_backups: usize,
    /// Backups older than this many days are deleted; 0 keeps all (`--audit-log-maxage`).
    pub max_age_days: u64,
}

/// A log file that rotates itself. Writes are unbuffered: each line reaches the file at
/// once, as kube's do.
pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: Option<File>,
    size: u64,
    clock: fn() -> DateTime<Utc>,
}

impl RotatingFile {
    pub fn new(path: impl Into<PathBuf>, rotation: Rotation) -> RotatingFile {
        RotatingFile::with_clock(path, rotation, Utc::now)
    }

    /// With another clock for the rotation times, for tests.
    pub fn with_clock(
        path: impl Into<PathBuf>,
        rotation: Rotation,
        clock: fn() -> DateTime<Utc>,
    ) -> RotatingFile {
        RotatingFile {
            path: path.into(),
            rotation,
            file: None,
            size: 0,
            clock,
        }
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    fn open_existing_or_new(&mut self, write_len: u64) -> io::Result<()> {
        self.prune();
        let info = match fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.open_new(),
            Err(e) => return Err(e),
            Ok(info) => info,
        };
        if info.len() + write_len >= self.rotation.max_bytes {
            return self.rotate();
        }
        match OpenOptions::new().append(true).open(&self.path) {
            Ok(f) => {
                self.file = Some(f);
                self.size = info.len();
                Ok(())
            }
            // As lumberjack: a file that cannot be opened is moved aside for a new one.
            Err(_) => self.open_new(),
        }
    }

    /// Moves the current file (if any) to its backup name and creates a new one with the
    /// same permissions (0600 when there was none).
    fn open_new(&mut self) -> io::Result<()> {
        fs::create_dir_all(self.dir())?;
        let mut mode = 0o600;
        if let Ok(info) = fs::metadata(&self.path) {
            mode = info.permissions().mode() & 0o7777;
            fs::rename(&self.path, backup_name(&self.path, (self.clock)()))?;
        }
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&self.path)?;
        self.file = Some(f);
        self.size = 0;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        self.open_new()?;
        self.prune();
        Ok(())
    }

    /// Deletes the backups the limits no longer allow. Failures are logged, not returned:
    /// a backup that cannot be deleted must not stop the log.
    fn prune(&self) {
        if self.rotation.max_backups == 0 && self.rotation.max_age_days == 0 {
            return;
        }
        let Some((prefix, ext)) = prefix_and_ext(&self.path) else {
            return;
        };
        let entries = match fs::read_dir(self.dir()) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %self.dir().display(), error = %e, "cannot list audit log backups");
                return;
            }
        };
        let backups: Vec<(String, DateTime<Utc>)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|name| backup_time(&name, &prefix, &ext).map(|t| (name, t)))
            .collect();
        for name in backups_to_remove(backups, self.rotation, (self.clock)()) {
            let path = self.dir().join(&name);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an old audit log");
            }
        }
    }
}

impl Write for RotatingFile {
    /// Writes all of `buf` to one file, or nothing.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        if len > self.rotation.max_bytes {
            return Err(io::Error::other(format!(
                "write length {len} exceeds maximum file size {}",
                self.rotation.max_bytes
            )));
        }
        if self.file.is_none() {
            self.open_existing_or_new(len)?;
        }
        if self.size + len > self.rotation.max_bytes {
            self.rotate()?;
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("the audit log file is not open"));
        };
        f.write_all(buf)?;
        self.size += len;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// `dir/name-<time>.ext` for `dir/name.ext`.
pub fn backup_name(path: &Path, at: DateTime<Utc>) -> PathBuf {
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = split_ext(&file);
    let name = format!("{stem}-{}{ext}", at.format(BACKUP_TIME_FORMAT));
    path.with_file_name(name)
}

/// Go's `filepath.Ext` on a base name: from the last dot, dot included; `""` if none.
fn split_ext(file: &str) -> (&str, &str) {
    match file.rfind('.') {
        Some(i) => (&file[..i], &file[i..]),
        None => (file, ""),
    }
}

/// The prefix (`name-`) and extension a backup of `path` has.
fn prefix_and_ext(path: &Path) -> Option<(String, String)> {
    let file = path.file_name()?.to_str()?;
    let (stem, ext) = split_ext(file);
    Some((format!("{stem}-"), ext.to_string()))
}

/// The rotation time in a backup's name, or `None` when the name is not one of ours.
pub fn backup_time(name: &str, prefix: &str, ext: &str) -> Option<DateTime<Utc>> {
    let rest = name.strip_prefix(prefix)?;
    let stamp = rest
        .strip_suffix(&format!("{ext}{COMPRESS_SUFFIX}"))
        .or_else(|| rest.strip_suffix(ext))?;
    // The format's fraction must be exactly three digits, as Go's `.000` requires.
    let fraction = stamp.rsplit_once('.').map(|(_, f)| f)?;
    if fraction.len() != 3 {
        return None;
    }
    NaiveDateTime::parse_from_str(stamp, BACKUP_TIME_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

/// Which backups to delete: those past the newest `max_backups`, then those older than
/// `max_age_days` before `now`.
pub fn backups_to_remove(
    mut backups: Vec<(String, DateTime<Utc>)>,
    rotation: Rotation,
    now: DateTime<Utc>,
) -> Vec<String> {
    backups.sort_by_key(|b| std::cmp::Reverse(b.1));
    let mut remove = Vec::new();
    if rotation.max_backups > 0 && backups.len() > rotation.max_backups {
        // A backup and its compressed copy count once, as in lumberjack.
        let mut kept_names: Vec<String> = Vec::new();
        let mut kept = Vec::new();
        for (name, t) in backups {
            let base = name
                .strip_suffix(COMPRESS_SUFFIX)
                .unwrap_or(&name)
                .to_string();
            if !kept_names.contains(&base) {
                kept_names.push(base);
            }
            if kept_names.len() > rotation.max_backups {
                remove.push(name);
            } else {
                kept.push((name, t));
            }
        }
        backups = kept;
    }
    // An age too large for a date keeps everything.
    let cutoff = i64::try_from(rotation.max_age_days)
        .ok()
        .filter(|d| *d > 0)
        .and_then(Duration::try_days)
        .and_then(|d| now.checked_sub_signed(d));
    if let Some(cutoff) = cutoff {
        remove.extend(
            backups
                .into_iter()
                .filter(|(_, t)| *t < cutoff)
                .map(|(name, _)| name),
        );
    }
    remove
}

#[cfg(test)]
#[path = "rotate_tests.rs"]
mod tests;
