//! Reading a file the daemon is pointed at (the configuration, a secret file, the state file)
//! so that no file can hang or bloat it.
//!
//! `open(2)` of a FIFO for reading blocks until a writer comes, and a read of one (or of a
//! character device) blocks or never ends; a key file of a hundred megabytes would be read whole.
//! So the file is opened with `O_NONBLOCK` (which makes `open` of a FIFO return at once and means
//! nothing for a regular file), refused unless `fstat` says it is a regular file, and read up to
//! a cap. Checking the opened descriptor, not the path, leaves no window for the path to be
//! swapped between the check and the read.

use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be opened or read (missing, unreadable, not UTF-8).
    Io(std::io::Error),
    /// It is not a regular file; the kind it is instead ("a named pipe (FIFO)", …).
    NotRegular(&'static str),
    /// It holds more than this many bytes.
    TooLarge(u64),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(err) => write!(f, "{err}"),
            Self::NotRegular(kind) => write!(f, "it is {kind}, not a regular file"),
            Self::TooLarge(cap) => write!(f, "it is larger than {cap} bytes"),
        }
    }
}

/// The UTF-8 text of the regular file at `path` (symbolic links followed), at most `cap` bytes.
pub fn read(path: &Path, cap: u64) -> Result<String, ReadError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(|errno| ReadError::Io(errno.into()))?;
    let file = File::from(fd);
    let kind = file.metadata().map_err(ReadError::Io)?.file_type();
    let not_regular = if kind.is_file() {
        None
    } else if kind.is_fifo() {
        Some("a named pipe (FIFO)")
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(kind) = not_regular {
        return Err(ReadError::NotRegular(kind));
    }
    let mut bytes = Vec::new();
    // One byte past the cap tells a file of exactly `cap` bytes from a larger one.
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > cap {
        return Err(ReadError::TooLarge(cap));
    }
    // The words of `std::fs::read_to_string`, which this replaces.
    String::from_utf8(bytes).map_err(|_| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).unwrap();
        // Without O_NONBLOCK this open would wait for a writer forever.
        assert!(matches!(
            read(&fifo, 4096),
            Err(ReadError::NotRegular("a named pipe (FIFO)"))
        ));
        assert!(matches!(
            read(dir.path(), 4096),
            Err(ReadError::NotRegular("a directory"))
        ));
        assert!(matches!(
            read(Path::new("/dev/zero"), 4096),
            Err(ReadError::NotRegular("a character device"))
        ));
    }

    #[test]
    fn a_file_is_read_up_to_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "a".repeat(16)).unwrap();
        assert_eq!(read(&path, 16).unwrap(), "a".repeat(16));
        assert!(matches!(read(&path, 15), Err(ReadError::TooLarge(15))));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(read(&path, 16), Err(ReadError::Io(_))));
        assert!(matches!(
            read(&dir.path().join("missing"), 16),
            Err(ReadError::Io(err)) if err.kind() == std::io::ErrorKind::NotFound
        ));
    }
}
