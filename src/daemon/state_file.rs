//! What survives a restart: each target's request budget and when each probe last sent.
//!
//! Without it every start would get a full token bucket, no backoff and a fresh start-up jitter: a
//! crash loop or a deploy storm of ten restarts in a minute would send ten bursts, and a key
//! backing off after error 29 (or slowed after error 26) would be probed again at once. So the
//! snapshot the run stage hands over ([`Snapshot`]: the gates and each probe's last scheduled send)
//! is kept in one small JSON file, `state.json` in the state directory (`--state.directory`, by
//! default systemd's `$STATE_DIRECTORY`; without either nothing is kept). It is written atomically
//! (a temporary file, then a rename) at most once a second while requests go out, and at shutdown,
//! so a crash loses at most the last second. The status model (states, uptime, incidents) rides
//! along, taken up at most once a minute and at shutdown (`StatusBook::saved`): it is larger, and a
//! minute of it is cheap to lose. A missing file is a first start; an unreadable or foreign one is
//! logged and set aside: the daemon starts with fresh budgets rather than not at all. Times are
//! wall-clock Unix milliseconds, the only clock that outlives the process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::regular_file::{self, ReadError};
use crate::run::saved::{Snapshot, VERSION};

/// The file's name inside the state directory.
pub const FILE_NAME: &str = "state.json";
/// The most the file may hold: a target's budget and a probe's last send take under 300 bytes,
/// so this is tens of thousands of probes; the status model adds under 1 KiB a target and at most
/// 20,000 results of about 40 bytes (about 0.8 MB with 1,000 probes).
pub const CAP: u64 = 16 * 1024 * 1024;
/// The least time between two writes while requests keep going out.
const MIN_GAP: Duration = Duration::from_secs(1);

/// The state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// `state.json` in `directory`.
    pub fn in_directory(directory: &Path) -> Self {
        Self {
            path: directory.join(FILE_NAME),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The kept state: `Ok(None)` on a first start (no file), `Err` with a sentence when the
    /// file cannot be read or is not a state file of this version.
    ///
    /// Only a regular file of at most [`CAP`] bytes is read: a FIFO in its place would block the
    /// start before any port is bound (and SIGTERM with it), a device would never end.
    pub fn load(&self) -> Result<Option<Snapshot>, String> {
        let text = match regular_file::read(&self.path, CAP) {
            Ok(text) => text,
            Err(ReadError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(err) => return Err(format!("cannot read {}: {err}", self.path.display())),
        };
        let snapshot: Snapshot = serde_json::from_str(&text).map_err(|err| {
            format!(
                "{}:{}:{}: not a lastfm-monitor state file: {err}",
                self.path.display(),
                err.line(),
                err.column()
            )
        })?;
        if snapshot.version != VERSION {
            return Err(format!(
                "{}: state file version {} is not the supported version {VERSION}",
                self.path.display(),
                snapshot.version
            ));
        }
        Ok(Some(snapshot))
    }

    /// Writes `snapshot` atomically: a reader (or the next start after a crash mid-write) sees
    /// the old file or the new one, never half of one. On failure nothing is left behind: a
    /// write cut short by a full disk would otherwise leave a partial temporary file, one per
    /// process, that no later run removes.
    pub fn save(&self, snapshot: &Snapshot) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
        let temporary = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &self.path))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&temporary);
            })
    }

    /// When the file a restart would read was written, if there is one.
    fn kept_since(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }

    /// Keeps the file up to date until `cancel`, then writes it a last time: after every
    /// `changed` notification, at most once per second. `capture` takes the snapshot.
    pub async fn keep_saved(
        self,
        changed: Arc<Notify>,
        capture: impl Fn() -> Snapshot + Send + 'static,
        cancel: CancellationToken,
    ) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = changed.notified() => {}
            }
            failing = self.write(capture(), failing).await;
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(MIN_GAP) => {}
            }
        }
        self.write(capture(), failing).await;
    }

    /// One write off the runtime thread; logs the first failure of a run of failures and the
    /// recovery, not every attempt. Returns whether it failed.
    async fn write(&self, snapshot: Snapshot, was_failing: bool) -> bool {
        let file = self.clone();
        let (result, kept) = tokio::task::spawn_blocking(move || {
            let result = file.save(&snapshot);
            (result, file.kept_since())
        })
        .await
        .unwrap_or_else(|err| (Err(std::io::Error::other(err)), None));
        match result {
            Ok(()) => {
                if was_failing {
                    tracing::info!(file = %self.path.display(), "state file written again");
                }
                false
            }
            Err(err) => {
                if !was_failing {
                    self.warn_failed(&err, kept);
                }
                true
            }
        }
    }

    /// Says what a restart would really read while writes fail: the last file written, which
    /// lags the running budgets, or nothing at all.
    fn warn_failed(&self, err: &std::io::Error, kept: Option<std::time::SystemTime>) {
        match kept {
            Some(written) => tracing::warn!(
                file = %self.path.display(),
                error = %err,
                written_at = %chrono::DateTime::<chrono::Utc>::from(written).to_rfc3339(),
                "cannot write the state file: a restart would read the budgets it saved at written_at, older than the running ones; check the directory's permissions and space"
            ),
            None => tracing::warn!(
                file = %self.path.display(),
                error = %err,
                "cannot write the state file, and none was written before: a restart would start with fresh request budgets; check the directory's permissions and space"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::health::politeness::SavedGate;
    use crate::run::saved::TargetState;

    fn gate() -> SavedGate {
        SavedGate {
            tokens: 1.5,
            at_ms: 1_764_000_000_000,
            backoff_until_ms: Some(1_764_000_060_000),
            backoff_attempts: 1,
            suspended: false,
            next_suspended_slot_ms: 1_764_000_000_000,
        }
    }

    fn snapshot() -> Snapshot {
        let mut snapshot = Snapshot::new();
        snapshot.targets.insert(
            "lastfm".to_owned(),
            TargetState {
                canary_gate: None,
                gate: gate(),
                last_sent_ms: BTreeMap::from([("artist.getInfo".to_owned(), 1_763_999_990_000)]),
            },
        );
        snapshot
    }

    #[test]
    fn a_saved_snapshot_loads_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_directory(dir.path());
        assert_eq!(file.load(), Ok(None), "no file: a first start");
        file.save(&snapshot()).unwrap();
        assert_eq!(file.load(), Ok(Some(snapshot())));
        // Saved again over the old one, and no temporary file left behind.
        file.save(&Snapshot::new()).unwrap();
        assert_eq!(file.load(), Ok(Some(Snapshot::new())));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    }

    #[test]
    fn a_file_written_before_the_status_model_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_directory(dir.path());
        // As version 1 wrote it before the status model existed.
        std::fs::write(
            file.path(),
            r#"{"version": 1, "targets": {"lastfm": {"gate": {"tokens": 1.5,
              "at_ms": 1764000000000, "backoff_until_ms": 1764000060000,
              "backoff_attempts": 1, "suspended": false,
              "next_suspended_slot_ms": 1764000000000},
              "last_sent_ms": {"artist.getInfo": 1763999990000}}}}"#,
        )
        .unwrap();
        let loaded = file.load().unwrap().unwrap();
        assert_eq!(loaded, snapshot());
        assert_eq!(loaded.status, None);
        // A status model this version cannot read is dropped, the budgets kept.
        std::fs::write(
            file.path(),
            std::fs::read_to_string(file.path()).unwrap().replacen(
                "\"targets\": {\"lastfm\"",
                "\"status\": {\"targets\": {\"x\": {\"state\": \"from-the-future\"}}},\n\"targets\": {\"lastfm\"",
                1,
            ),
        )
        .unwrap();
        assert!(
            std::fs::read_to_string(file.path())
                .unwrap()
                .contains("from-the-future")
        );
        assert_eq!(file.load(), Ok(Some(snapshot())));
        // And one with the status model round-trips.
        let mut with_status = snapshot();
        with_status.status = Some(crate::history::status::SavedStatus::default());
        file.save(&with_status).unwrap();
        assert_eq!(file.load(), Ok(Some(with_status)));
    }

    #[test]
    fn a_broken_or_foreign_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_directory(dir.path());
        std::fs::write(file.path(), "{\"version\": 1, \"targets\": {\"x\": 3}}").unwrap();
        let err = file.load().unwrap_err();
        assert!(err.contains("state.json:1:"), "{err}");
        assert!(err.contains("not a lastfm-monitor state file"), "{err}");

        std::fs::write(file.path(), "{\"version\": 7, \"targets\": {}}").unwrap();
        let err = file.load().unwrap_err();
        assert!(
            err.ends_with("state file version 7 is not the supported version 1"),
            "{err}"
        );

        std::fs::write(file.path(), [0xff, 0xfe, 0x00]).unwrap();
        assert!(file.load().unwrap_err().contains("cannot read"));
    }

    #[cfg(unix)]
    #[test]
    fn a_write_that_runs_out_of_space_leaves_no_temporary_file_and_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_directory(dir.path());
        file.save(&snapshot()).unwrap();
        // A full disk without filling one: the temporary file's name leads to /dev/full, where
        // every write fails with ENOSPC.
        let temporary = dir
            .path()
            .join(format!("{FILE_NAME}.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink("/dev/full", &temporary).unwrap();

        let err = file.save(&Snapshot::new()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "ENOSPC: {err}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
        assert_eq!(file.load(), Ok(Some(snapshot())), "the old state is kept");
        assert!(file.kept_since().is_some(), "a restart reads that one");
        // And the next write goes through.
        file.save(&Snapshot::new()).unwrap();
        assert_eq!(file.load(), Ok(Some(Snapshot::new())));
    }

    #[test]
    fn an_unwritable_directory_fails_the_save_and_leaves_nothing() {
        let file = StateFile::in_directory(Path::new("/nonexistent/lastfm-monitor"));
        assert!(file.save(&snapshot()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn changes_are_written_at_most_once_a_second_and_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_directory(dir.path());
        let changed = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let captures = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let task = tokio::spawn(file.clone().keep_saved(
            Arc::clone(&changed),
            {
                let captures = Arc::clone(&captures);
                move || {
                    let n = captures.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut snapshot = snapshot();
                    snapshot
                        .targets
                        .get_mut("lastfm")
                        .unwrap()
                        .gate
                        .backoff_attempts = n;
                    snapshot
                }
            },
            cancel.clone(),
        ));
        let count = || captures.load(std::sync::atomic::Ordering::SeqCst);
        // Nothing changed, nothing written.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(count(), 0);
        // A hundred changes within 100 ms: one write now, one after the gap.
        for _ in 0..100 {
            changed.notify_one();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(count(), 1);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(count(), 2);
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(count(), 3, "a last write at shutdown");
        let last = file.load().unwrap().unwrap();
        assert_eq!(last.targets["lastfm"].gate.backoff_attempts, 2);
    }
}
