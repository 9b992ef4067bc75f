//! Streaming `.deb` reader: the `ar` members of a package, its control archive and its
//! data archive entry by entry, decoded by [`crate::compression`].
//!
//! A `.deb` is an `ar` archive of `debian-binary`, `control.tar[.gz|.xz|.zst]` and
//! `data.tar[.gz|.xz|.zst]`. The control archive is small and read into memory; the data
//! archive is streamed entry by entry to a callback. Nothing is ever written to disk.
//!
//! It must not check the package's hash (the caller verified the whole file against its
//! `Packages` entry before) nor decide what goes into the image (the callback does).

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use crate::compression::{decoder, Compression, DecodeOptions};
use crate::text::{quoted, shown};

/// Largest `control` or `md5sums` file we accept in memory (hostile input guard).
const MAX_CONTROL_FILE: u64 = 64 << 20;
/// Largest GNU long-name (`L`) or long-link (`K`) record of a member's tar: a name or link
/// target, which the tar reader holds whole (16 × Linux's `PATH_MAX`).
const MAX_LONG_NAME: u64 = 64 << 10;
/// Largest PAX extended header (`x`) of a member's tar, which the tar reader holds whole.
const MAX_PAX_HEADER: u64 = 1 << 20;
/// Largest `debian-binary` member we accept.
const MAX_DEBIAN_BINARY: u64 = 1024;

/// Why a `.deb` could not be read. `what` names the package in every variant (its URL).
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// The file does not start with the `ar` magic.
    #[error("{what}: not a .deb package (bad ar archive magic); check that the file or URL really is a .deb")]
    NotAnArchive {
        /// the package, usually its URL
        what: String,
    },
    /// An `ar` member (or a member header) ends before its announced size.
    #[error("{what}: the ar member `{}` claims more bytes than the file holds; the package is cut short or malformed", shown(.member))]
    Truncated {
        /// the package, usually its URL
        what: String,
        /// the member's name, or `(ar member header)`
        member: String,
    },
    /// `debian-binary` does not read `2.x` followed by a newline.
    #[error(
        "{what}: unsupported .deb format version {} in `debian-binary` (expected \"2.x\")",
        quoted(.found)
    )]
    BadVersion {
        /// the package, usually its URL
        what: String,
        /// the member's bytes, lossily decoded
        found: String,
    },
    /// The archive ends before `debian-binary`, `control.tar` or `data.tar`.
    #[error("{what}: no `{member}` member where one was expected; this is not a valid .deb")]
    MissingMember {
        /// the package, usually its URL
        what: String,
        /// the member looked for, without compression suffix
        member: &'static str,
    },
    /// A member other than the one due next (and not a `_`-prefixed one, which is skipped).
    #[error("{what}: unexpected ar member `{}` (expected {expected})", shown(.member))]
    UnexpectedMember {
        /// the package, usually its URL
        what: String,
        /// the member found
        member: String,
        /// the member due, without compression suffix
        expected: &'static str,
    },
    /// `control.tar` or `data.tar` has a compression suffix other than `.gz`, `.xz`, `.zst`.
    #[error("{what}: ar member `{}` uses a compression compose does not know (gz, xz, zst or none are supported)", shown(.member))]
    UnknownCompression {
        /// the package, usually its URL
        what: String,
        /// the member's name
        member: String,
    },
    /// The control archive has no `./control` file.
    #[error("{what}: the control archive has no `./control` file")]
    MissingControl {
        /// the package, usually its URL
        what: String,
    },
    /// `./control` or `./md5sums` is larger than 64 MiB.
    #[error("{what}: `{}` in the control archive is larger than {MAX_CONTROL_FILE} bytes", shown(.file))]
    ControlTooLarge {
        /// the package, usually its URL
        what: String,
        /// the file's normalised path, e.g. `/control`
        file: String,
    },
    /// A member path or link target that is absolute, has `..`, a NUL byte or invalid UTF-8
    /// (or an empty symlink target).
    #[error("{what}: refusing path {}: {reason}", quoted(.path))]
    BadPath {
        /// the package, usually its URL
        what: String,
        /// the path as packaged, lossily decoded
        path: String,
        /// why it is refused
        reason: &'static str,
    },
    /// A member could not be read, decompressed or parsed as tar (other than cut short).
    #[error("{what}: cannot read `{}`: {source}", shown(.member))]
    Corrupt {
        /// the package, usually its URL
        what: String,
        /// the member's name
        member: String,
        /// the decoder's or tar reader's error
        #[source]
        source: io::Error,
    },
    /// The `ar` archive itself could not be read (I/O error or a malformed member header).
    #[error("{what}: cannot read the ar archive: {source}")]
    Ar {
        /// the package, usually its URL
        what: String,
        /// the underlying error
        #[source]
        source: io::Error,
    },
}

/// The metadata of a package, from its control archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// The `control` file verbatim.
    pub control: Vec<u8>,
    /// The `md5sums` file verbatim, when the package has one.
    pub md5sums: Option<Vec<u8>>,
}

/// The type of a data archive entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (also a contiguous file).
    File,
    /// A directory.
    Dir,
    /// Target exactly as packaged (relative or absolute).
    Symlink(String),
    /// Normalised absolute path of the target, e.g. `/usr/bin/x`.
    Hardlink(String),
    /// Character/block device, fifo, …: the caller decides.
    Other(&'static str),
}

/// One entry of a package's data archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Normalised absolute path: `./usr/lib/x` → `/usr/lib/x`, `./` → `/`.
    pub path: String,
    /// file, directory, link or other
    pub kind: EntryKind,
    /// Permission bits, `& 0o7777`.
    pub mode: u32,
    /// owner user ID (`u32::MAX` when the header's does not fit)
    pub uid: u32,
    /// owner group ID (`u32::MAX` when the header's does not fit)
    pub gid: u32,
    /// modification time from the tar header, seconds since the Unix epoch
    pub mtime: u64,
    /// Bytes of content (0 for anything but files).
    pub size: u64,
}

/// Normalise a tar path of a package.
///
/// Strips leading `./` and `/`, collapses `.` and empty components, and returns an
/// absolute path without trailing slash (`/` for the root). Refuses `..` components,
/// NUL bytes and invalid UTF-8 with an error, never a panic.
pub fn normalise_path(raw: &[u8], what: &str) -> Result<String, DebError> {
    let bad = |reason| DebError::BadPath {
        what: what.to_string(),
        path: String::from_utf8_lossy(raw).into_owned(),
        reason,
    };
    if raw.contains(&0) {
        return Err(bad("it contains a NUL byte"));
    }
    let text = std::str::from_utf8(raw).map_err(|_| bad("it is not valid UTF-8"))?;
    let mut out = String::with_capacity(text.len() + 1);
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(bad("it contains a `..` component")),
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Stream a `.deb`.
///
/// Reads the ar members `debian-binary` (must be `2.x\n`), `control.tar{,.gz,.xz,.zst}`
/// and `data.tar{,.gz,.xz,.zst}` in that order (members whose names start with `_` may
/// sit between them and are skipped, as dpkg does). `./control` and `./md5sums` of the
/// control archive are read into memory; the data archive is streamed and `on_entry`
/// gets every entry with a reader over its bytes. A reader that ends before the entry's
/// size is an error, so a callback never sees a silently short file.
pub fn read_deb<R: Read, E: From<DebError>>(
    reader: R,
    what: &str,
    mut on_entry: impl FnMut(&Entry, &mut dyn Read) -> Result<(), E>,
) -> Result<Control, E> {
    let mut ar = ArReader::new(reader, what)?;

    // debian-binary
    let mut member = ar.next_named("debian-binary")?;
    let mut version = Vec::new();
    member
        .reader
        .by_ref()
        .take(MAX_DEBIAN_BINARY)
        .read_to_end(&mut version)
        .map_err(|e| member.error(what, e))?;
    if !version.starts_with(b"2.") || !version.contains(&b'\n') {
        return Err(DebError::BadVersion {
            what: what.into(),
            found: String::from_utf8_lossy(&version).into_owned(),
        }
        .into());
    }
    member.drain(what)?;
    drop(member);

    let member = ar.next_named("control.tar")?;
    let control = read_control(member, what)?;

    let member = ar.next_named("data.tar")?;
    read_data(member, what, &mut on_entry)?;
    Ok(control)
}

/// A minimal streaming reader of the common `ar` format used by .deb files (no symbol
/// tables or long-name tables: dpkg never writes them).
struct ArReader<R> {
    inner: R,
    what: String,
    /// The previous member had an odd size: one padding byte precedes the next header.
    padding: bool,
}

impl<R: Read> ArReader<R> {
    fn new(mut inner: R, what: &str) -> Result<ArReader<R>, DebError> {
        let mut magic = [0u8; 8];
        match read_full(&mut inner, &mut magic) {
            Ok(8) if &magic == b"!<arch>\n" => {}
            Ok(_) => return Err(DebError::NotAnArchive { what: what.into() }),
            Err(source) => {
                return Err(DebError::Ar {
                    what: what.into(),
                    source,
                })
            }
        }
        Ok(ArReader {
            inner,
            what: what.into(),
            padding: false,
        })
    }

    /// The next member header: `Ok(None)` at a clean end of the archive.
    fn next_header(&mut self) -> Result<Option<(String, u64)>, DebError> {
        let what = self.what.as_str();
        let ar_err = |source| DebError::Ar {
            what: what.into(),
            source,
        };
        let mut header = [0u8; 60];
        let mut start = 0;
        if self.padding {
            self.padding = false;
            match read_full(&mut self.inner, &mut header[..1]).map_err(ar_err)? {
                0 => return Ok(None),
                _ if header[0] == b'\n' => {}
                // Some writers omit the padding byte: take it as the header's first byte.
                _ => start = 1,
            }
        }
        let n = read_full(&mut self.inner, &mut header[start..]).map_err(ar_err)?;
        if n == 0 && start == 0 {
            return Ok(None);
        }
        if start + n < header.len() {
            return Err(DebError::Truncated {
                what: what.into(),
                member: "(ar member header)".into(),
            });
        }
        let invalid = |msg: &str| {
            ar_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed member header: {msg}"),
            ))
        };
        if &header[58..60] != b"`\n" {
            return Err(invalid("bad terminator"));
        }
        let raw = &header[..16];
        let raw = std::str::from_utf8(raw).map_err(|_| invalid("name is not UTF-8"))?;
        let name = raw.trim_end_matches(' ');
        // GNU ar terminates names with '/'.
        let name = name.strip_suffix('/').unwrap_or(name).to_string();
        let size = std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim_end_matches(' ').parse::<u64>().ok())
            .ok_or_else(|| invalid("size is not a decimal number"))?;
        self.padding = size % 2 == 1;
        Ok(Some((name, size)))
    }

    /// The next member whose name is `base` or `base.<ext>`, skipping members whose
    /// names start with `_` (reserved, skipped by dpkg too).
    fn next_named(&mut self, base: &'static str) -> Result<Member<'_>, DebError> {
        loop {
            let Some((name, size)) = self.next_header()? else {
                return Err(DebError::MissingMember {
                    what: self.what.clone(),
                    member: base,
                });
            };
            // `control.tar` and `data.tar` take a compression suffix.
            let matches = name == base
                || (base.ends_with(".tar")
                    && name.strip_prefix(base).is_some_and(|s| s.starts_with('.')));
            if !matches && !name.starts_with('_') {
                return Err(DebError::UnexpectedMember {
                    what: self.what.clone(),
                    member: name,
                    expected: base,
                });
            }
            if !matches {
                let mut skip = Exact::new(&mut self.inner, size, None);
                io::copy(&mut skip, &mut io::sink()).map_err(|_| DebError::Truncated {
                    what: self.what.clone(),
                    member: name.clone(),
                })?;
                continue;
            }
            let truncated = Rc::new(Cell::new(false));
            return Ok(Member {
                name,
                reader: Exact::new(Box::new(&mut self.inner), size, Some(truncated.clone())),
                truncated,
            });
        }
    }
}

/// Read until `buf` is full or the reader ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// An ar member being read: its name, and a reader that flags truncation.
struct Member<'a> {
    name: String,
    reader: Exact<Box<dyn Read + 'a>>,
    truncated: Rc<Cell<bool>>,
}

impl Member<'_> {
    /// Map an I/O error while reading this member (or what is layered on it).
    fn error(&self, what: &str, source: io::Error) -> DebError {
        if self.truncated.get() {
            DebError::Truncated {
                what: what.into(),
                member: self.name.clone(),
            }
        } else {
            DebError::Corrupt {
                what: what.into(),
                member: self.name.clone(),
                source,
            }
        }
    }

    /// Read the member to its end so a short member is detected even when the
    /// decoder above did not need the remaining bytes.
    fn drain(&mut self, what: &str) -> Result<(), DebError> {
        io::copy(&mut self.reader, &mut io::sink()).map_err(|e| self.error(what, e))?;
        Ok(())
    }
}

/// Wrap a member's bytes in the decoder its name asks for ([`Compression::of_deb_member`]).
/// The whole `.deb` was checked against the signed index's SHA-256 before it is read, so
/// the decoder skips checks of its own ([`DecodeOptions::VERIFIED`]).
fn decompressor<'a>(
    member: &'a mut Member<'_>,
    what: &str,
) -> Result<Box<dyn Read + 'a>, DebError> {
    let Some(compression) = Compression::of_deb_member(&member.name) else {
        return Err(DebError::UnknownCompression {
            what: what.into(),
            member: member.name.clone(),
        });
    };
    let name = member.name.clone();
    decoder(&mut member.reader, compression, &DecodeOptions::VERIFIED).map_err(|source| {
        DebError::Corrupt {
            what: what.into(),
            member: name,
            source,
        }
    })
}

fn read_control(mut member: Member<'_>, what: &str) -> Result<Control, DebError> {
    let mut control = None;
    let mut md5sums = None;
    let result = (|| -> Result<(), Sub> {
        let decoded = decompressor(&mut member, what).map_err(Sub::Deb)?;
        let mut tar = tar::Archive::new(HeaderLimits::new(decoded));
        for entry in tar.entries().map_err(Sub::Io)? {
            let mut entry = entry.map_err(Sub::Io)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = normalise_path(&entry.path_bytes(), what).map_err(Sub::Deb)?;
            let slot = match path.as_str() {
                "/control" => &mut control,
                "/md5sums" => &mut md5sums,
                _ => continue,
            };
            if entry.size() > MAX_CONTROL_FILE {
                return Err(Sub::Deb(DebError::ControlTooLarge {
                    what: what.into(),
                    file: path,
                }));
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            let size = entry.size();
            Exact::new(&mut entry, size, None)
                .read_to_end(&mut bytes)
                .map_err(Sub::Io)?;
            *slot = Some(bytes);
        }
        let mut decoded = tar.into_inner();
        io::copy(&mut decoded, &mut io::sink()).map_err(Sub::Io)?;
        Ok(())
    })();
    finish_member(&mut member, what, result)?;
    let control = control.ok_or_else(|| DebError::MissingControl { what: what.into() })?;
    Ok(Control { control, md5sums })
}

fn read_data<E: From<DebError>>(
    mut member: Member<'_>,
    what: &str,
    on_entry: &mut impl FnMut(&Entry, &mut dyn Read) -> Result<(), E>,
) -> Result<(), E> {
    let mut callback_error = None;
    let result = (|| -> Result<(), Sub> {
        let decoded = decompressor(&mut member, what).map_err(Sub::Deb)?;
        let mut tar = tar::Archive::new(HeaderLimits::new(decoded));
        for entry in tar.entries().map_err(Sub::Io)? {
            let mut entry = entry.map_err(Sub::Io)?;
            let Some(parsed) = parse_entry(&mut entry, what)? else {
                continue;
            };
            let size = parsed.size;
            let mut watched = Watched {
                inner: Exact::new(&mut entry, size, None),
                failed: None,
            };
            if let Err(e) = on_entry(&parsed, &mut watched) {
                // A callback that failed because the package could not be read gets
                // the package's error, which names the package and the member.
                if let Some(io_error) = watched.failed {
                    return Err(Sub::Io(io_error));
                }
                callback_error = Some(e);
                return Ok(());
            }
        }
        let mut decoded = tar.into_inner();
        io::copy(&mut decoded, &mut io::sink()).map_err(Sub::Io)?;
        Ok(())
    })();
    if let Some(e) = callback_error {
        return Err(e);
    }
    finish_member(&mut member, what, result)?;
    Ok(())
}

/// Errors inside a member: already a [`DebError`], or an I/O error still to be
/// attributed (truncation or corruption).
enum Sub {
    Deb(DebError),
    Io(io::Error),
}

impl From<DebError> for Sub {
    fn from(e: DebError) -> Sub {
        Sub::Deb(e)
    }
}

fn finish_member(
    member: &mut Member<'_>,
    what: &str,
    result: Result<(), Sub>,
) -> Result<(), DebError> {
    match result {
        Ok(()) => member.drain(what),
        Err(Sub::Deb(e)) => Err(e),
        Err(Sub::Io(e)) => Err(member.error(what, e)),
    }
}

fn parse_entry<R: Read>(entry: &mut tar::Entry<'_, R>, what: &str) -> Result<Option<Entry>, Sub> {
    use tar::EntryType as T;
    let header = entry.header();
    let entry_type = header.entry_type();
    let kind = match entry_type {
        T::Regular | T::Continuous => EntryKind::File,
        T::Directory => EntryKind::Dir,
        T::Symlink | T::Link => {
            let raw = entry.link_name_bytes().ok_or_else(|| {
                Sub::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "link entry without a link name",
                ))
            })?;
            if entry_type == T::Link {
                EntryKind::Hardlink(member_path(&raw, what)?)
            } else {
                if raw.contains(&0) || raw.is_empty() {
                    return Err(Sub::Deb(DebError::BadPath {
                        what: what.into(),
                        path: String::from_utf8_lossy(&raw).into_owned(),
                        reason: "a symlink target is empty or contains a NUL byte",
                    }));
                }
                let target = String::from_utf8(raw.into_owned()).map_err(|e| {
                    Sub::Deb(DebError::BadPath {
                        what: what.into(),
                        path: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                        reason: "a symlink target is not valid UTF-8",
                    })
                })?;
                EntryKind::Symlink(target)
            }
        }
        T::Char => EntryKind::Other("character device"),
        T::Block => EntryKind::Other("block device"),
        T::Fifo => EntryKind::Other("fifo"),
        T::GNUSparse => EntryKind::Other("sparse file"),
        // Global PAX headers and other metadata-only records carry no entry.
        T::XGlobalHeader => return Ok(None),
        _ => EntryKind::Other("unknown tar entry type"),
    };
    let path = member_path(&entry.path_bytes(), what)?;
    let header = entry.header();
    let num = |r: io::Result<u64>| r.map_err(Sub::Io);
    let size = if kind == EntryKind::File {
        entry.size()
    } else {
        0
    };
    Ok(Some(Entry {
        path,
        mode: header.mode().map_err(Sub::Io)? & 0o7777,
        uid: u32::try_from(num(header.uid())?).unwrap_or(u32::MAX),
        gid: u32::try_from(num(header.gid())?).unwrap_or(u32::MAX),
        mtime: num(header.mtime())?,
        size,
        kind,
    }))
}

/// A member name of a data archive (an entry's path or a hard link's target):
/// [`normalise_path`], and absolute names are refused. `dpkg-deb` and tar write
/// `./`-relative names; an absolute one only comes from a crafted archive.
fn member_path(raw: &[u8], what: &str) -> Result<String, DebError> {
    if raw.starts_with(b"/") {
        return Err(DebError::BadPath {
            what: what.to_string(),
            path: String::from_utf8_lossy(raw).into_owned(),
            reason: "it is an absolute path (package members are ./-relative)",
        });
    }
    normalise_path(raw, what)
}

/// A member's decoded tar stream on its way to the `tar` crate, which reads a GNU
/// long-name or long-link record and a PAX extended header into memory whole, for every
/// entry, selected or not. This reader follows the archive's framing as the `tar` crate
/// does (each header, the data it announces, GNU sparse extension blocks, a PAX `size`
/// applying to the next entry) and fails the read that completes a header announcing
/// such a record larger than [`MAX_LONG_NAME`] or [`MAX_PAX_HEADER`], before any of it
/// is read. It passes every byte through unchanged and stops looking at the end of the
/// archive (a zero block) or at a header the `tar` crate will refuse (a bad checksum).
struct HeaderLimits<R> {
    inner: R,
    /// Bytes passed through so far.
    pos: u64,
    /// Where the next header starts.
    next: u64,
    /// The header being read, and how much of it has passed.
    header: tar::Header,
    have: usize,
    /// GNU sparse extension blocks still to come before the data of the entry.
    sparse_blocks: bool,
    /// Bytes of data (rounded up to whole blocks) after the header or its sparse blocks.
    data_len: u64,
    /// A PAX extended header being read (its bytes so far, its size).
    pax: Option<(Vec<u8>, u64)>,
    /// The `size` the last PAX extended header gives the next entry.
    pax_size: Option<u64>,
    /// The end of the archive, or a header the `tar` crate will refuse: nothing more to check.
    done: bool,
}

impl<R> HeaderLimits<R> {
    fn new(inner: R) -> HeaderLimits<R> {
        HeaderLimits {
            inner,
            pos: 0,
            next: 0,
            header: tar::Header::new_old(),
            have: 0,
            sparse_blocks: false,
            data_len: 0,
            pax: None,
            pax_size: None,
            done: false,
        }
    }

    /// Follow the framing over `bytes`, the next bytes of the stream.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() && !self.done {
            if self.pos < self.next {
                let n = (self.next - self.pos).min(bytes.len() as u64) as usize;
                if let Some((data, size)) = &mut self.pax {
                    let want = (*size as usize).saturating_sub(data.len()).min(n);
                    data.extend_from_slice(&bytes[..want]);
                }
                bytes = &bytes[n..];
                self.pos += n as u64;
                continue;
            }
            if let Some((data, _)) = self.pax.take() {
                self.pax_size = pax_size(&data);
            }
            let n = (512 - self.have).min(bytes.len());
            self.header.as_mut_bytes()[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            self.pos += n as u64;
            if self.have == 512 {
                self.have = 0;
                if std::mem::take(&mut self.sparse_blocks) {
                    // A GNU sparse extension block: another follows while its flag says so.
                    self.sparse_blocks = self.header.as_bytes()[504] == 1;
                    self.next = self.pos;
                    if !self.sparse_blocks {
                        self.next += self.data_len;
                    }
                    continue;
                }
                self.header_read()?;
            }
        }
        Ok(())
    }
}

impl<R> HeaderLimits<R> {
    /// A whole header has passed (at `self.pos - 512`): where its entry's data ends,
    /// and whether it announces a record too large.
    fn header_read(&mut self) -> io::Result<()> {
        let h = &self.header;
        let bytes = h.as_bytes();
        if bytes.iter().all(|&b| b == 0) {
            self.done = true;
            return Ok(());
        }
        let sum: u32 = bytes[..148]
            .iter()
            .chain(&bytes[156..])
            .map(|&b| u32::from(b))
            .sum::<u32>()
            + 8 * 32;
        let Ok(size) = h.entry_size() else {
            self.done = true;
            return Ok(());
        };
        if h.cksum().ok() != Some(sum) {
            self.done = true;
            return Ok(());
        }
        let kind = h.entry_type();
        let extension = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        // The `tar` crate reads these records whole only in headers it recognises.
        let recognised = h.as_gnu().is_some() || h.as_ustar().is_some();
        let size = match self.pax_size {
            Some(pax) if !extension => pax,
            _ => size,
        };
        let read_whole = recognised
            && (kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions());
        if !read_whole {
            // An entry: a PAX `size` applied to it (or to nothing) and is spent.
            self.pax_size = None;
        }
        if read_whole {
            let (what, limit) = if kind.is_pax_local_extensions() {
                ("PAX extended header", MAX_PAX_HEADER)
            } else if kind.is_gnu_longname() {
                ("GNU long-name record", MAX_LONG_NAME)
            } else {
                ("GNU long-link record", MAX_LONG_NAME)
            };
            if size > limit {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a {what} of {size} bytes exceeds the limit of {limit} bytes; refusing the package"),
                ));
            }
            if kind.is_pax_local_extensions() {
                self.pax = Some((Vec::with_capacity(size as usize), size));
            }
        }
        let Some(data_len) = size.checked_add(511).map(|n| n & !511) else {
            self.done = true;
            return Ok(());
        };
        self.data_len = data_len;
        self.sparse_blocks =
            kind.is_gnu_sparse() && h.as_gnu().is_some_and(|g| g.is_extended()) && !extension;
        self.next = self.pos;
        if !self.sparse_blocks {
            self.next += data_len;
        }
        Ok(())
    }
}

/// The `size` a PAX extended header gives, as the `tar` crate reads it: the first
/// `size` record, when every record before it parses and its value is a number.
fn pax_size(data: &[u8]) -> Option<u64> {
    for record in tar::PaxExtensions::new(data) {
        let record = record.ok()?;
        if record.key() != Ok("size") {
            continue;
        }
        return record.value().ok()?.parse().ok();
    }
    None
}

impl<R: Read> Read for HeaderLimits<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        Ok(n)
    }
}

/// Remembers the first error its reader gave the callback.
struct Watched<R> {
    inner: R,
    failed: Option<io::Error>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let copy = io::Error::new(e.kind(), e.to_string());
            self.failed.get_or_insert(e);
            copy
        })
    }
}

/// A reader that yields exactly `remaining` bytes of `inner`, and turns an early end
/// into an `UnexpectedEof` error (setting `truncated` when given).
struct Exact<R> {
    inner: R,
    remaining: u64,
    truncated: Option<Rc<Cell<bool>>>,
}

impl<R: Read> Exact<R> {
    fn new(inner: R, len: u64, truncated: Option<Rc<Cell<bool>>>) -> Exact<R> {
        Exact {
            inner,
            remaining: len,
            truncated,
        }
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            if let Some(flag) = &self.truncated {
                flag.set(true);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} bytes missing at the end", self.remaining),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Debug)]
    enum TestError {
        Deb(DebError),
        Io(io::Error),
    }
    impl From<DebError> for TestError {
        fn from(e: DebError) -> Self {
            TestError::Deb(e)
        }
    }

    fn deb_err(r: Result<Control, TestError>) -> DebError {
        match r {
            Err(TestError::Deb(e)) => e,
            other => panic!("expected a DebError, got {other:?}"),
        }
    }

    /// Read a whole .deb, collecting entries and file contents.
    type Listing = (Control, Vec<(Entry, Vec<u8>)>);

    fn list(bytes: &[u8], what: &str) -> Result<Listing, TestError> {
        let mut entries = Vec::new();
        let control = read_deb(bytes, what, |entry: &Entry, r: &mut dyn Read| {
            let mut data = Vec::new();
            r.read_to_end(&mut data).map_err(TestError::Io)?;
            entries.push((entry.clone(), data));
            Ok::<_, TestError>(())
        })?;
        Ok((control, entries))
    }

    fn compress(data: Vec<u8>, ext: &str) -> Vec<u8> {
        match ext {
            "" => data,
            ".gz" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
                e.write_all(&data).unwrap();
                e.finish().unwrap()
            }
            ".xz" => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(&data).unwrap();
                e.finish().unwrap()
            }
            ".zst" => {
                // Two frames, as real packages may have.
                let half = data.len() / 2;
                let mut out = zstd::encode_all(&data[..half], 3).unwrap();
                out.extend(zstd::encode_all(&data[half..], 3).unwrap());
                out
            }
            _ => unreachable!(),
        }
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    fn control_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let control = b"Package: hello\nVersion: 1.0\nArchitecture: amd64\n";
        b.append_data(
            &mut header(tar::EntryType::Regular, control.len() as u64, 0o644),
            "./control",
            &control[..],
        )
        .unwrap();
        let md5 = b"d41d8cd98f00b204e9800998ecf8427e  usr/bin/hello\n";
        b.append_data(
            &mut header(tar::EntryType::Regular, md5.len() as u64, 0o644),
            "./md5sums",
            &md5[..],
        )
        .unwrap();
        b.into_inner().unwrap()
    }

    fn long_name() -> String {
        format!("./usr/share/{}/file.txt", "d".repeat(150))
    }

    fn data_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut header(tar::EntryType::Directory, 0, 0o755),
            "./",
            io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Directory, 0, 0o755),
            "./usr/bin/",
            io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 6, 0o4755),
            "./usr/bin/hello",
            &b"hello\n"[..],
        )
        .unwrap();
        let mut h = header(tar::EntryType::Link, 0, 0o4755);
        b.append_link(&mut h, "./usr/bin/hello2", "./usr/bin/hello")
            .unwrap();
        let mut h = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut h, "./usr/bin/hi", "hello").unwrap();
        let long = long_name();
        b.append_data(
            &mut header(tar::EntryType::Regular, 4, 0o644),
            &long,
            &b"long"[..],
        )
        .unwrap();
        b.into_inner().unwrap()
    }

    fn build_deb(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = ar::Builder::new(Vec::new());
        for (name, data) in members {
            let h = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
            b.append(&h, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn deb(ext: &str, data: Vec<u8>) -> Vec<u8> {
        build_deb(&[
            ("debian-binary", b"2.0\n".to_vec()),
            (&format!("control.tar{ext}"), compress(control_tar(), ext)),
            (&format!("data.tar{ext}"), compress(data, ext)),
        ])
    }

    fn check_synthetic(ext: &str) {
        let (control, entries) = list(&deb(ext, data_tar()), "hello.deb").unwrap();
        assert!(control.control.starts_with(b"Package: hello\n"));
        assert!(control
            .md5sums
            .as_deref()
            .unwrap()
            .ends_with(b"usr/bin/hello\n"));
        let got: Vec<_> = entries
            .iter()
            .map(|(e, _)| (e.path.as_str(), e.kind.clone(), e.mode))
            .collect();
        let long = long_name()[1..].to_string();
        assert_eq!(
            got,
            [
                ("/", EntryKind::Dir, 0o755),
                ("/usr/bin", EntryKind::Dir, 0o755),
                ("/usr/bin/hello", EntryKind::File, 0o4755),
                (
                    "/usr/bin/hello2",
                    EntryKind::Hardlink("/usr/bin/hello".into()),
                    0o4755
                ),
                ("/usr/bin/hi", EntryKind::Symlink("hello".into()), 0o777),
                (long.as_str(), EntryKind::File, 0o644),
            ],
            "{ext}"
        );
        assert_eq!(entries[2].1, b"hello\n");
        assert_eq!(entries[2].0.size, 6);
        assert_eq!(entries[2].0.mtime, 1_700_000_000);
        assert_eq!(entries[5].1, b"long");
    }

    #[test]
    fn synthetic_debs_in_every_compression() {
        for ext in ["", ".gz", ".xz", ".zst"] {
            check_synthetic(ext);
        }
    }

    #[test]
    fn xz_multi_stream_member_is_read_to_the_end() {
        // data.tar.xz made of two concatenated xz streams.
        let data = data_tar();
        let (a, b) = data.split_at(1024);
        let mut xz = compress(a.to_vec(), ".xz");
        xz.extend(compress(b.to_vec(), ".xz"));
        let bytes = build_deb(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.xz", compress(control_tar(), ".xz")),
            ("data.tar.xz", xz),
        ]);
        let (_, entries) = list(&bytes, "multi.deb").unwrap();
        assert_eq!(entries.len(), 6);
    }

    #[test]
    fn reserved_members_are_skipped() {
        let bytes = build_deb(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("_gpgorigin", b"sig".to_vec()),
            ("control.tar.gz", compress(control_tar(), ".gz")),
            ("data.tar.gz", compress(data_tar(), ".gz")),
        ]);
        assert_eq!(list(&bytes, "x.deb").unwrap().1.len(), 6);
    }

    #[test]
    fn real_ubuntu_debs() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ubuntu/debs");
        let Ok(read_dir) = std::fs::read_dir(&dir) else {
            eprintln!("SKIPPED: ../shared/data not present ({})", dir.display());
            return;
        };
        let mut seen = 0;
        for item in read_dir {
            let path = item.unwrap().path();
            if path.extension().is_none_or(|e| e != "deb") {
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let file = io::BufReader::new(std::fs::File::open(&path).unwrap());
            let mut entries = Vec::new();
            let control = read_deb(file, &name, |e: &Entry, r: &mut dyn Read| {
                let n = io::copy(r, &mut io::sink()).map_err(TestError::Io)?;
                assert_eq!(n, e.size, "{}", e.path);
                entries.push(e.clone());
                Ok::<_, TestError>(())
            })
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let package = name.split('_').next().unwrap();
            let text = String::from_utf8(control.control.clone()).unwrap();
            assert!(text.contains(&format!("Package: {package}\n")), "{name}");
            assert!(control.md5sums.is_some(), "{name} has md5sums");
            assert!(entries.iter().any(|e| e.path == "/"), "{name}");
            assert!(entries
                .iter()
                .all(|e| e.path.starts_with('/') && (e.path == "/" || !e.path.ends_with('/'))));
            if package == "ca-certificates" {
                let crts = entries
                    .iter()
                    .filter(|e| {
                        e.path.starts_with("/usr/share/ca-certificates/mozilla/")
                            && e.path.ends_with(".crt")
                            && e.kind == EntryKind::File
                    })
                    .count();
                assert!(
                    crts > 100,
                    "ca-certificates has {crts} mozilla certificates"
                );
            }
            seen += 1;
        }
        assert!(seen > 0, "no .deb in {}", dir.display());
        eprintln!("read {seen} real Ubuntu packages");
    }

    #[test]
    fn bad_ar_magic() {
        let e = deb_err(list(b"<html>not a package</html>", "x.deb").map(|r| r.0));
        assert!(matches!(e, DebError::NotAnArchive { .. }), "{e}");
        assert!(e.to_string().starts_with("x.deb: not a .deb"), "{e}");
        let e = deb_err(list(b"", "empty.deb").map(|r| r.0));
        assert!(matches!(e, DebError::NotAnArchive { .. }), "{e}");
    }

    #[test]
    fn truncated_members_anywhere() {
        for ext in [".zst", ".xz", ".gz", ""] {
            let full = deb(ext, data_tar());
            // Every cut inside the archive must be a clean error, never a panic or Ok.
            for cut in (8..full.len()).step_by(7) {
                let r = list(&full[..cut], "cut.deb");
                let e = deb_err(r.map(|r| r.0));
                let msg = e.to_string();
                assert!(msg.starts_with("cut.deb: "), "{msg}");
            }
            let e = deb_err(list(&full[..full.len() - 10], "cut.deb").map(|r| r.0));
            assert!(
                matches!(e, DebError::Truncated { ref member, .. } if member.starts_with("data.tar")),
                "{ext}: {e}"
            );
        }
    }

    #[test]
    fn member_claiming_more_than_exists() {
        let mut bytes = deb(".gz", data_tar());
        // Rewrite the size of the last member (data.tar.gz) to something huge.
        let pos = bytes.windows(11).position(|w| w == b"data.tar.gz").unwrap();
        bytes[pos + 48..pos + 58].copy_from_slice(b"9999999999");
        let e = deb_err(list(&bytes, "big.deb").map(|r| r.0));
        assert!(matches!(e, DebError::Truncated { .. }), "{e}");
    }

    #[test]
    fn missing_and_misordered_members() {
        let only_version = build_deb(&[("debian-binary", b"2.0\n".to_vec())]);
        let e = deb_err(list(&only_version, "x.deb").map(|r| r.0));
        assert!(
            matches!(
                e,
                DebError::MissingMember {
                    member: "control.tar",
                    ..
                }
            ),
            "{e}"
        );

        let no_data = build_deb(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.gz", compress(control_tar(), ".gz")),
        ]);
        let e = deb_err(list(&no_data, "x.deb").map(|r| r.0));
        assert!(
            matches!(
                e,
                DebError::MissingMember {
                    member: "data.tar",
                    ..
                }
            ),
            "{e}"
        );

        let swapped = build_deb(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("data.tar.gz", compress(data_tar(), ".gz")),
            ("control.tar.gz", compress(control_tar(), ".gz")),
        ]);
        let e = deb_err(list(&swapped, "x.deb").map(|r| r.0));
        assert!(matches!(e, DebError::UnexpectedMember { .. }), "{e}");

        let v3 = build_deb(&[("debian-binary", b"3.0\n".to_vec())]);
        let e = deb_err(list(&v3, "x.deb").map(|r| r.0));
        assert!(matches!(e, DebError::BadVersion { .. }), "{e}");

        let bz = build_deb(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.bz2", b"BZh".to_vec()),
        ]);
        let e = deb_err(list(&bz, "x.deb").map(|r| r.0));
        assert!(matches!(e, DebError::UnknownCompression { .. }), "{e}");

        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut header(tar::EntryType::Regular, 1, 0o644),
            "./md5sums",
            &b"x"[..],
        )
        .unwrap();
        let no_control = build_deb(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar", b.into_inner().unwrap()),
            ("data.tar", data_tar()),
        ]);
        let e = deb_err(list(&no_control, "x.deb").map(|r| r.0));
        assert!(matches!(e, DebError::MissingControl { .. }), "{e}");
    }

    /// A data.tar with one regular file whose raw name field is `name`.
    fn raw_name_tar(name: &[u8]) -> Vec<u8> {
        let mut h = header(tar::EntryType::Regular, 1, 0o644);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b"x"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn dot_dot_paths_are_refused() {
        for name in [&b"./../etc/shadow"[..], b"usr/../../x", b".."] {
            let e = deb_err(list(&deb(".xz", raw_name_tar(name)), "evil.deb").map(|r| r.0));
            assert!(matches!(e, DebError::BadPath { .. }), "{e}");
            assert!(e.to_string().contains(".."), "{e}");
        }
        // A hard link pointing outside.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Link, 0, 0o644);
        h.as_old_mut().name[..5].copy_from_slice(b"./lnk");
        h.as_old_mut().linkname[..12].copy_from_slice(b"../etc/passw");
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        let e = deb_err(list(&deb(".gz", b.into_inner().unwrap()), "evil.deb").map(|r| r.0));
        assert!(matches!(e, DebError::BadPath { .. }), "{e}");
    }

    #[test]
    fn absolute_paths_are_refused_relative_ones_normalised() {
        let e = deb_err(list(&deb(".gz", raw_name_tar(b"/etc//./x")), "abs.deb").map(|r| r.0));
        assert!(matches!(e, DebError::BadPath { .. }), "{e}");
        assert!(e.to_string().contains("absolute path"), "{e}");
        // A hard link to an absolute name.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Link, 0, 0o644);
        h.as_old_mut().name[..5].copy_from_slice(b"./lnk");
        h.as_old_mut().linkname[..11].copy_from_slice(b"/etc/shadow");
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        let e = deb_err(list(&deb(".gz", b.into_inner().unwrap()), "abs.deb").map(|r| r.0));
        assert!(e.to_string().contains("absolute path"), "{e}");
        // Names without `./` are what old packages have: accepted.
        let (_, entries) = list(&deb(".gz", raw_name_tar(b"etc//./x")), "rel.deb").unwrap();
        assert_eq!(entries[0].0.path, "/etc/x");
    }

    #[test]
    fn nul_in_a_pax_path_is_refused() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("path", &b"./etc/a\0b"[..])])
            .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 1, 0o644),
            "./etc/ab",
            &b"x"[..],
        )
        .unwrap();
        let e = deb_err(list(&deb(".gz", b.into_inner().unwrap()), "nul.deb").map(|r| r.0));
        assert!(matches!(e, DebError::BadPath { .. }), "{e}");
        assert!(e.to_string().contains("NUL"), "{e}");
    }

    /// The one line a .deb with this data.tar gets, which must be a refusal of a record.
    fn refused_record(data: Vec<u8>) -> String {
        let e = deb_err(list(&deb(".xz", data), "big.deb").map(|r| r.0));
        assert!(matches!(e, DebError::Corrupt { .. }), "{e:?}");
        e.to_string()
    }

    #[test]
    fn long_name_link_and_pax_records_beyond_their_limits_are_refused() {
        // At the limits: read (a GNU long name, a long link target, a PAX path).
        let name = |len: usize| format!("./{}", "n".repeat(len - 3));
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut header(tar::EntryType::Regular, 1, 0o644),
            name(MAX_LONG_NAME as usize),
            &b"x"[..],
        )
        .unwrap();
        let mut h = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut h, "./l", name(MAX_LONG_NAME as usize))
            .unwrap();
        let pax_path = vec![b'p'; MAX_PAX_HEADER as usize - 100];
        b.append_pax_extensions([("comment", &pax_path[..])])
            .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 1, 0o644),
            "./p",
            &b"y"[..],
        )
        .unwrap();
        let (_, entries) = list(&deb(".xz", b.into_inner().unwrap()), "ok.deb").unwrap();
        assert_eq!(entries.len(), 3);

        // One byte beyond: refused, for an entry nothing selects.
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut header(tar::EntryType::Regular, 1, 0o644),
            name(MAX_LONG_NAME as usize + 1),
            &b"x"[..],
        )
        .unwrap();
        assert_eq!(
            refused_record(b.into_inner().unwrap()),
            "big.deb: cannot read `data.tar.xz`: a GNU long-name record of 65537 bytes exceeds the limit of 65536 bytes; refusing the package"
        );
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(tar::EntryType::Symlink, 0, 0o777);
        b.append_link(&mut h, "./l", name(MAX_LONG_NAME as usize + 1))
            .unwrap();
        assert_eq!(
            refused_record(b.into_inner().unwrap()),
            "big.deb: cannot read `data.tar.xz`: a GNU long-link record of 65537 bytes exceeds the limit of 65536 bytes; refusing the package"
        );
        let mut b = tar::Builder::new(Vec::new());
        let huge = vec![b'p'; MAX_PAX_HEADER as usize];
        b.append_pax_extensions([("comment", &huge[..])]).unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 1, 0o644),
            "./p",
            &b"y"[..],
        )
        .unwrap();
        let e = refused_record(b.into_inner().unwrap());
        assert!(
            e.starts_with("big.deb: cannot read `data.tar.xz`: a PAX extended header of 10485"),
            "{e}"
        );
        assert!(
            e.ends_with("bytes exceeds the limit of 1048576 bytes; refusing the package"),
            "{e}"
        );
        // The control archive alike.
        let mut c = tar::Builder::new(Vec::new());
        c.append_data(
            &mut header(tar::EntryType::Regular, 1, 0o644),
            name(MAX_LONG_NAME as usize + 1),
            &b"x"[..],
        )
        .unwrap();
        let bytes = build_deb(&[
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar.gz", compress(c.into_inner().unwrap(), ".gz")),
            ("data.tar.gz", compress(data_tar(), ".gz")),
        ]);
        let e = deb_err(list(&bytes, "big.deb").map(|r| r.0));
        assert!(
            e.to_string()
                .contains("cannot read `control.tar.gz`: a GNU long-name record"),
            "{e}"
        );
    }

    /// A data.tar: `first` (an archive without its end), then an entry whose GNU long
    /// name is beyond the limit: refused only when the framing of `first` was followed.
    fn then_a_long_name(first: Vec<u8>) -> Vec<u8> {
        let mut b = tar::Builder::new(first);
        b.append_data(
            &mut header(tar::EntryType::Regular, 1, 0o644),
            format!("./{}", "n".repeat(MAX_LONG_NAME as usize)),
            &b"x"[..],
        )
        .unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn the_framing_is_followed_through_pax_sizes_and_sparse_files() {
        // A PAX `size` overrides the header's (0 here): 1500 bytes of data follow.
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"1500"[..])]).unwrap();
        let mut h = header(tar::EntryType::Regular, 0, 0o644);
        h.set_path("./big").unwrap();
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        // Without the end of the archive.
        let mut first = b.get_ref().clone();
        first.extend_from_slice(&[b'\n'; 1536]);
        let (_, entries) = list(&deb(".gz", first.clone()), "pax.deb").unwrap();
        assert_eq!(entries[0].1.len(), 1500);
        let e = refused_record(then_a_long_name(first));
        assert!(
            e.contains("a GNU long-name record of 65539 bytes exceeds"),
            "{e}"
        );

        // A GNU sparse file with more regions than its header holds: extension blocks
        // follow the header.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = std::fs::File::create(&path).unwrap();
        for i in 0..30u64 {
            use std::os::unix::fs::FileExt;
            file.write_at(&[b's'; 4096], i * (1 << 20)).unwrap();
        }
        let mut b = tar::Builder::new(Vec::new());
        b.append_file("./sparse", &mut std::fs::File::open(&path).unwrap())
            .unwrap();
        let first = b.get_ref().clone();
        let kind = tar::Header::from_byte_slice(&first[..512]).entry_type();
        if kind != tar::EntryType::GNUSparse {
            println!(
                "SKIPPED: {} keeps no holes in files: no sparse tar entry",
                dir.path().display()
            );
            return;
        }
        let (_, entries) = list(&deb(".gz", first.clone()), "sparse.deb").unwrap();
        assert_eq!(entries[0].0.kind, EntryKind::Other("sparse file"));
        let e = refused_record(then_a_long_name(first));
        assert!(
            e.contains("a GNU long-name record of 65539 bytes exceeds"),
            "{e}"
        );
    }

    #[test]
    fn normalise_path_rules() {
        let n = |s: &[u8]| normalise_path(s, "t");
        assert_eq!(n(b"./usr/lib/x").unwrap(), "/usr/lib/x");
        assert_eq!(n(b"./").unwrap(), "/");
        assert_eq!(n(b".").unwrap(), "/");
        assert_eq!(n(b"").unwrap(), "/");
        assert_eq!(n(b"/usr//lib/./x/").unwrap(), "/usr/lib/x");
        assert_eq!(n(b"usr/lib..x/..y").unwrap(), "/usr/lib..x/..y");
        assert!(n(b"./a/../b").is_err());
        assert!(n(b"a\0b").is_err());
        assert!(n(b"\xff\xfe").is_err());
        assert!(n(b"\xff").unwrap_err().to_string().contains("UTF-8"));
    }

    #[test]
    fn callback_errors_pass_through_unchanged() {
        let r = read_deb(
            &deb(".zst", data_tar())[..],
            "x.deb",
            |e: &Entry, _: &mut dyn Read| {
                if e.path == "/usr/bin/hello" {
                    Err(TestError::Io(io::Error::other("stop here")))
                } else {
                    Ok(())
                }
            },
        );
        assert!(
            matches!(r, Err(TestError::Io(ref e)) if e.to_string() == "stop here"),
            "{r:?}"
        );
    }
}
