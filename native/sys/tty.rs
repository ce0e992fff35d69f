//! The terminal calls behind `Prompt`, and nothing else: open the terminal,
//! turn echo off (and back on), write the prompt, read the answer straight
//! into memory the caller supplies (a locked buffer). What counts as an
//! answer — newline stripping, length limits, signals — is decided by the
//! caller (`py/prompt.rs`).
//!
//! Every call returns the kernel's verdict; none of them panics. An
//! interrupted call (`EINTR`) is returned to the caller, so that it can run
//! Python's signal handlers (Ctrl-C) and then go on or give up.
//!
//! Where the guarantees stop: the typed bytes sit in the kernel's line
//! buffer until they are read (outside this process). A signal whose default
//! action ends the process (SIGKILL; SIGTERM or SIGHUP without a handler)
//! leaves echo off, as it does for getpass(3) and readpassphrase(3);
//! `stty sane` turns it back on. So does a restore the kernel refuses (a
//! hung-up terminal answers EIO): it is reported as [`RESTORE_CALL`] failing.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::fault::{self, Call};
use super::{SysError, SysResult};

/// The longest line the kernel's terminal line discipline (n_tty) delivers in
/// canonical mode: `N_TTY_BUF_SIZE - 1` bytes before the newline. Bytes typed
/// beyond it are dropped without telling the reader, so a line that reaches
/// this length may have been cut short.
pub const LINE_LIMIT: usize = 4095;

/// The name a failed restore of the saved attributes is reported under, so
/// that the caller can say echo may be left off.
pub const RESTORE_CALL: &str = "tcsetattr(restore)";

/// Bounded retries for the calls that restore the terminal, which cannot
/// hand `EINTR` back to anyone.
const RESTORE_RETRIES: usize = 16;

fn last_error(call: Call) -> SysError {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    SysError {
        call: call.label(),
        errno,
    }
}

fn retrying<T>(mut call: impl FnMut() -> SysResult<T>) -> SysResult<T> {
    for _ in 0..RESTORE_RETRIES {
        match call() {
            Err(e) if e.errno == libc::EINTR => continue,
            done => return done,
        }
    }
    call()
}

/// An open terminal device, closed when dropped.
#[derive(Debug)]
pub struct Terminal {
    fd: OwnedFd,
}

impl Terminal {
    /// Opens `path` (normally `/dev/tty`, this process's controlling
    /// terminal) for reading and writing. `O_NOCTTY`: opening some other
    /// terminal never makes it the controlling one; `O_CLOEXEC`: programs
    /// started meanwhile do not inherit it. Anything but a terminal fails
    /// with `ENOTTY` (from `tcgetattr`).
    pub fn open(path: &CStr) -> SysResult<Terminal> {
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
        fault::check(Call::TtyOpen)?;
        // SAFETY: `path` is a NUL-terminated string that outlives the call.
        let fd = unsafe { libc::open(path.as_ptr(), flags) };
        if fd < 0 {
            return Err(last_error(Call::TtyOpen));
        }
        // SAFETY: `fd` was just returned by open and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let terminal = Terminal { fd };
        terminal.attributes()?;
        Ok(terminal)
    }

    fn attributes(&self) -> SysResult<libc::termios> {
        fault::check(Call::Tcgetattr)?;
        let mut attrs = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr writes a whole termios through the pointer, which
        // points at memory of that size and alignment.
        if unsafe { libc::tcgetattr(self.fd.as_raw_fd(), attrs.as_mut_ptr()) } != 0 {
            return Err(last_error(Call::Tcgetattr));
        }
        // SAFETY: initialised by the successful tcgetattr above.
        Ok(unsafe { attrs.assume_init() })
    }

    /// Applies `attrs` at once (`TCSANOW`). `TCSAFLUSH` would first wait for
    /// pending output to drain, which never ends while output is stopped
    /// (Ctrl-S); input is discarded separately by [`Self::discard_input`].
    fn set_attributes(&self, attrs: &libc::termios) -> SysResult<()> {
        fault::check(Call::Tcsetattr)?;
        // SAFETY: tcsetattr only reads the termios behind the reference.
        if unsafe { libc::tcsetattr(self.fd.as_raw_fd(), libc::TCSANOW, attrs) } != 0 {
            return Err(last_error(Call::Tcsetattr));
        }
        Ok(())
    }

    /// Discards input received but not yet read.
    fn discard_input(&self) -> SysResult<()> {
        fault::check(Call::Tcflush)?;
        // SAFETY: tcflush takes no pointers.
        if unsafe { libc::tcflush(self.fd.as_raw_fd(), libc::TCIFLUSH) } != 0 {
            return Err(last_error(Call::Tcflush));
        }
        Ok(())
    }

    /// Turns echo off until the returned guard is dropped. Line editing
    /// (`ICANON`: erase, kill, Ctrl-D) and keyboard signals (`ISIG`: Ctrl-C
    /// raises SIGINT) stay on, and are switched on if a full-screen program
    /// left them off. Input typed before this call was echoed: it is
    /// discarded, never taken as the answer.
    pub fn echo_off(&self) -> SysResult<EchoOff<'_>> {
        let saved = self.attributes()?;
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
        quiet.c_lflag |= libc::ICANON | libc::ISIG;
        // Only '\n' ends a line: no extra end-of-line characters.
        // (0 is _POSIX_VDISABLE on Linux.)
        quiet.c_cc[libc::VEOL] = 0;
        quiet.c_cc[libc::VEOL2] = 0;
        self.set_attributes(&quiet)?;
        // From here on, every way out restores `saved`.
        let guard = EchoOff {
            terminal: self,
            saved,
            prompted: false,
            restored: false,
        };
        // tcsetattr succeeds if it made *any* of the changes: check them.
        let modes = libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG;
        if self.attributes()?.c_lflag & modes != quiet.c_lflag & modes {
            return Err(SysError {
                call: "tcsetattr(echo off)",
                errno: libc::ENOTSUP,
            });
        }
        self.discard_input()?;
        Ok(guard)
    }
}

/// How reading an answer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineEnd {
    /// A '\n' arrived; it is the last byte read.
    Newline,
    /// End of input (Ctrl-D at the start of a line, or a hang-up).
    Eof,
    /// The buffer filled up before a '\n' arrived.
    Full,
}

/// Echo is off while this lives. However it goes — [`EchoOff::restore`], an
/// error, a Python exception or an unwinding panic — it writes the newline
/// the terminal did not echo (once a prompt was shown), discards input still
/// unread (typed with echo off, it must not reach the next reader: a shell
/// would run it and echo it) and puts back the attributes saved before.
#[must_use = "echo comes back on when the guard is dropped"]
#[derive(Debug)]
pub struct EchoOff<'t> {
    terminal: &'t Terminal,
    saved: libc::termios,
    prompted: bool,
    restored: bool,
}

impl EchoOff<'_> {
    fn fd(&self) -> libc::c_int {
        self.terminal.fd.as_raw_fd()
    }

    /// Writes `bytes[*written..]`, advancing `*written`. An interrupted
    /// write returns `Err` with `EINTR`: call again to go on.
    pub fn write_all(&mut self, bytes: &[u8], written: &mut usize) -> SysResult<()> {
        while let Some(rest) = bytes.get(*written..).filter(|r| !r.is_empty()) {
            fault::check(Call::TtyWrite)?;
            // SAFETY: write reads at most rest.len() bytes from rest.
            let n = unsafe { libc::write(self.fd(), rest.as_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Err(_) => return Err(last_error(Call::TtyWrite)),
                Ok(0) => {
                    return Err(SysError {
                        call: Call::TtyWrite.label(),
                        errno: libc::EIO,
                    })
                }
                Ok(n) => {
                    self.prompted = true;
                    *written += n;
                }
            }
        }
        Ok(())
    }

    /// Reads into `buf[*filled..]` until a '\n' arrives, input ends or `buf`
    /// is full, advancing `*filled`. The kernel copies the bytes straight
    /// into `buf`: there is no other copy in this process. In canonical mode
    /// (which this guard keeps on) one read returns at most one line, so a
    /// '\n' is always the last byte read. An interrupted read returns `Err`
    /// with `EINTR`, keeping what was read: call again to go on.
    pub fn read_line(&mut self, buf: &mut [u8], filled: &mut usize) -> SysResult<LineEnd> {
        loop {
            let Some(rest) = buf.get_mut(*filled..).filter(|r| !r.is_empty()) else {
                return Ok(LineEnd::Full);
            };
            fault::check(Call::TtyRead)?;
            // SAFETY: read writes at most rest.len() bytes into rest, which is
            // writable memory borrowed mutably for the call.
            let n = unsafe { libc::read(self.fd(), rest.as_mut_ptr().cast(), rest.len()) };
            match usize::try_from(n) {
                Err(_) => return Err(last_error(Call::TtyRead)),
                Ok(0) => return Ok(LineEnd::Eof),
                Ok(n) => {
                    *filled += n;
                    if rest[..n].contains(&b'\n') {
                        return Ok(LineEnd::Newline);
                    }
                }
            }
        }
    }

    /// Restores the terminal now, reporting what failed (dropping the guard
    /// does the same but cannot report).
    pub fn restore(mut self) -> SysResult<()> {
        self.put_back()
    }

    fn put_back(&mut self) -> SysResult<()> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        // Discard first, then restore: what `TCSAFLUSH` does, without its
        // wait for output to drain. The newline comes last, so that output
        // stopped by Ctrl-S can delay only it, never the restoring.
        let discarded = retrying(|| self.terminal.discard_input());
        let restored =
            retrying(|| self.terminal.set_attributes(&self.saved)).map_err(|e| SysError {
                call: RESTORE_CALL,
                errno: e.errno,
            });
        let newline = if self.prompted {
            let mut written = 0;
            retrying(|| self.write_all(b"\n", &mut written))
        } else {
            Ok(())
        };
        restored.and(discarded).and(newline)
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        // Nothing to report to from here; `restore` is the reporting path.
        let _ = self.put_back();
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::fs::File;
    use std::io::{Read, Write};

    use super::*;

    /// A pseudo-terminal: the master as a file, the slave opened through
    /// `Terminal::open` by its path (not as a controlling terminal).
    fn pty() -> (File, Terminal) {
        // SAFETY: posix_openpt takes only flags.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(master >= 0, "posix_openpt: {}", io::Error::last_os_error());
        // SAFETY: `master` was just returned to us and nothing else owns it.
        let master = unsafe { File::from_raw_fd(master) };
        let fd = master.as_raw_fd();
        // SAFETY: grantpt and unlockpt take only the descriptor.
        assert_eq!(unsafe { libc::grantpt(fd) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::unlockpt(fd) }, 0);
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: ptsname_r writes a NUL-terminated name of at most
        // name.len() bytes into `name`.
        let rc = unsafe { libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) };
        assert_eq!(rc, 0);
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
        let path = unsafe { CStr::from_ptr(name.as_ptr()) }.to_owned();
        (master, Terminal::open(&path).unwrap())
    }

    type Modes = (
        libc::tcflag_t,
        libc::tcflag_t,
        libc::tcflag_t,
        libc::tcflag_t,
        [libc::cc_t; libc::NCCS],
    );

    fn modes(t: &Terminal) -> Modes {
        let a = t.attributes().unwrap();
        (a.c_iflag, a.c_oflag, a.c_cflag, a.c_lflag, a.c_cc)
    }

    #[test]
    fn echo_goes_off_and_every_attribute_comes_back() {
        let (_master, term) = pty();
        let before = modes(&term);
        {
            let _quiet = term.echo_off().unwrap();
            let during = modes(&term).3;
            assert_eq!(during & (libc::ECHO | libc::ECHONL), 0);
            assert_ne!(during & libc::ICANON, 0);
            assert_ne!(during & libc::ISIG, 0);
        }
        assert_eq!(modes(&term), before);
        term.echo_off().unwrap().restore().unwrap();
        assert_eq!(modes(&term), before);
    }

    #[test]
    fn a_full_screen_programs_raw_mode_is_put_back_too() {
        let (_master, term) = pty();
        let mut raw = term.attributes().unwrap();
        raw.c_lflag &= !(libc::ICANON | libc::ISIG | libc::ECHO);
        term.set_attributes(&raw).unwrap();
        let before = modes(&term);
        {
            let _quiet = term.echo_off().unwrap();
            assert_ne!(modes(&term).3 & (libc::ICANON | libc::ISIG), 0);
        }
        assert_eq!(modes(&term), before);
    }

    #[test]
    fn reads_one_line_into_the_callers_buffer() {
        let (mut master, term) = pty();
        let mut quiet = term.echo_off().unwrap();
        master.write_all(b"first\nsecond\n").unwrap();
        let mut buf = [0u8; 32];
        let mut filled = 0;
        assert_eq!(
            quiet.read_line(&mut buf, &mut filled).unwrap(),
            LineEnd::Newline
        );
        assert_eq!(&buf[..filled], b"first\n");
        let mut filled = 0;
        assert_eq!(
            quiet.read_line(&mut buf, &mut filled).unwrap(),
            LineEnd::Newline
        );
        assert_eq!(&buf[..filled], b"second\n");
    }

    #[test]
    fn a_full_buffer_stops_the_read_and_the_rest_stays_queued() {
        let (mut master, term) = pty();
        let mut quiet = term.echo_off().unwrap();
        master.write_all(b"abcdefgh\n").unwrap();
        let mut buf = [0u8; 4];
        let mut filled = 0;
        assert_eq!(
            quiet.read_line(&mut buf, &mut filled).unwrap(),
            LineEnd::Full
        );
        assert_eq!((&buf[..], filled), (&b"abcd"[..], 4));
        let mut filled = 0;
        assert_eq!(
            quiet.read_line(&mut buf, &mut filled).unwrap(),
            LineEnd::Full
        );
        let mut filled = 0;
        assert_eq!(
            quiet.read_line(&mut buf, &mut filled).unwrap(),
            LineEnd::Newline
        );
        assert_eq!(&buf[..filled], b"\n");
    }

    #[test]
    fn ctrl_d_ends_input() {
        let (mut master, term) = pty();
        let mut quiet = term.echo_off().unwrap();
        master.write_all(b"ab\x04").unwrap(); // Ctrl-D mid-line: "ab" without a newline
        let mut buf = [0u8; 8];
        let mut filled = 0;
        master.write_all(b"\x04").unwrap(); // Ctrl-D at the start of a line: end of input
        assert_eq!(
            quiet.read_line(&mut buf, &mut filled).unwrap(),
            LineEnd::Eof
        );
        assert_eq!(&buf[..filled], b"ab");
    }

    #[test]
    fn the_prompt_and_the_missing_newline_are_written_and_nothing_is_echoed() {
        let (mut master, term) = pty();
        let mut quiet = term.echo_off().unwrap();
        let mut written = 0;
        quiet.write_all(b"Key: ", &mut written).unwrap();
        assert_eq!(written, 5);
        master.write_all(b"typed\n").unwrap();
        let mut buf = [0u8; 8];
        let mut filled = 0;
        quiet.read_line(&mut buf, &mut filled).unwrap();
        quiet.restore().unwrap();
        let mut shown = [0u8; 7];
        master.read_exact(&mut shown).unwrap();
        assert_eq!(&shown, b"Key: \r\n"); // ONLCR turns "\n" into "\r\n"
    }

    #[test]
    fn input_left_unread_is_discarded_on_restore() {
        let (mut master, term) = pty();
        let mut quiet = term.echo_off().unwrap();
        master.write_all(b"answer\ntyped ahead\n").unwrap();
        let mut buf = [0u8; 32];
        let mut filled = 0;
        quiet.read_line(&mut buf, &mut filled).unwrap();
        drop(quiet);
        // Read on without `echo_off`, which would discard input itself.
        let mut plain = EchoOff {
            terminal: &term,
            saved: term.attributes().unwrap(),
            prompted: false,
            restored: false,
        };
        master.write_all(b"next\n").unwrap();
        let mut filled = 0;
        plain.read_line(&mut buf, &mut filled).unwrap();
        assert_eq!(&buf[..filled], b"next\n");
    }

    #[test]
    fn what_is_not_a_terminal_is_refused() {
        let err = Terminal::open(&CString::new("/dev/null").unwrap()).unwrap_err();
        assert_eq!((err.call, err.errno), ("tcgetattr", libc::ENOTTY));
        let err = Terminal::open(&CString::new("/nonexistent/tty").unwrap()).unwrap_err();
        assert_eq!((err.call, err.errno), ("open", libc::ENOENT));
    }
}
