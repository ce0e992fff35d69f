//! Starting `cypher-cell run`'s child with `posix_spawnp(3)`, and the
//! plain `read`/`write` its output goes through.
//!
//! Why posix_spawn and not fork: glibc (since 2.24) and musl start the child
//! with `clone(CLONE_VM | CLONE_VFORK)`, so until its `execve` the child runs
//! in this process's own pages instead of a copy of them. The environment
//! block lives in a `SecretBuf`, whose pages are `MADV_WIPEONFORK` (or
//! `MADV_DONTFORK`): a forked child would find them zeroed, a `CLONE_VM`
//! child reads them in place, and no copy of the block is ever made outside
//! the locked pages until the kernel builds the new program's stack. The
//! parent is suspended until the exec, so it zeroes the block right after
//! this returns. The terminal set-up a pty needs is in the spawn attributes:
//! `POSIX_SPAWN_SETSID` (a new session), then opening the pty's slave by
//! name, which makes it the session's controlling terminal (a session
//! leader without one that opens a terminal without `O_NOCTTY` acquires it,
//! and its process group becomes the terminal's foreground group).

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use super::SysError;

/// What one of the child's descriptors 0, 1, 2 is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdio {
    /// This process's own descriptor of the same number.
    Inherit,
    /// A copy of this descriptor (`dup2`).
    Fd(RawFd),
    /// The pty slave named in [`Spawn::pty`].
    Pty,
}

/// A child to start. `argv` and `envp` are borrowed strings (the NULL-
/// terminated pointer arrays exec wants are built here, so a caller in safe
/// Rust cannot hand posix_spawnp a dangling or unterminated pointer).
pub struct Spawn<'a> {
    pub file: &'a CStr,
    pub argv: &'a [&'a CStr],
    pub envp: &'a [&'a CStr],
    pub stdio: [Stdio; 3],
    /// A pty slave to open in a new session as the controlling terminal.
    pub pty: Option<&'a CStr>,
    /// Signals set back to their default action in the child (what this
    /// process ignores only for itself: Python ignores SIGPIPE and SIGXFSZ).
    pub default_signals: &'a [libc::c_int],
}

fn check(call: &'static str, rc: libc::c_int) -> Result<(), SysError> {
    if rc == 0 {
        Ok(())
    } else {
        Err(SysError { call, errno: rc })
    }
}

/// The spawn attributes and file actions, destroyed on drop.
struct Plan {
    attr: MaybeUninit<libc::posix_spawnattr_t>,
    actions: MaybeUninit<libc::posix_spawn_file_actions_t>,
    attr_ready: bool,
    actions_ready: bool,
}

impl Drop for Plan {
    fn drop(&mut self) {
        if self.actions_ready {
            // SAFETY: initialised by posix_spawn_file_actions_init, destroyed once.
            unsafe { libc::posix_spawn_file_actions_destroy(self.actions.as_mut_ptr()) };
        }
        if self.attr_ready {
            // SAFETY: initialised by posix_spawnattr_init, destroyed once.
            unsafe { libc::posix_spawnattr_destroy(self.attr.as_mut_ptr()) };
        }
    }
}

/// Starts the child; returns its pid once it has exec'd (glibc reports a
/// failed exec, ENOENT or EACCES say, as this call's error).
pub fn spawn(s: &Spawn<'_>) -> Result<libc::pid_t, SysError> {
    if s.argv.is_empty() {
        return Err(SysError {
            call: "posix_spawnp",
            errno: libc::EINVAL,
        });
    }
    if s.stdio.contains(&Stdio::Pty) && s.pty.is_none() {
        return Err(SysError {
            call: "posix_spawnp",
            errno: libc::EINVAL,
        });
    }
    let mut plan = Plan {
        attr: MaybeUninit::uninit(),
        actions: MaybeUninit::uninit(),
        attr_ready: false,
        actions_ready: false,
    };
    // SAFETY: initialises the attribute object in place.
    check("posix_spawnattr_init", unsafe {
        libc::posix_spawnattr_init(plan.attr.as_mut_ptr())
    })?;
    plan.attr_ready = true;
    // SAFETY: initialises the file-action list in place.
    check("posix_spawn_file_actions_init", unsafe {
        libc::posix_spawn_file_actions_init(plan.actions.as_mut_ptr())
    })?;
    plan.actions_ready = true;
    let attr = plan.attr.as_mut_ptr();
    let actions = plan.actions.as_mut_ptr();

    // The child starts with no signal blocked, whatever this thread blocks
    // (the caller blocks the signals it forwards), and the default action
    // for the signals listed.
    // SAFETY: sigset_t values built by sigemptyset/sigaddset, on our stack.
    let (empty, defaults) = unsafe {
        let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(empty.as_mut_ptr());
        let mut defaults = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(defaults.as_mut_ptr());
        for &sig in s.default_signals {
            libc::sigaddset(defaults.as_mut_ptr(), sig);
        }
        (empty.assume_init(), defaults.assume_init())
    };
    // (The libc crate declares these as c_int, SETSID as c_short; the
    // attribute is a short, and all three are small bits.)
    let mut flags = (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
    if s.pty.is_some() {
        flags |= libc::POSIX_SPAWN_SETSID;
    }
    // SAFETY: `attr` is initialised; the sets are valid sigset_t values the
    // calls copy.
    unsafe {
        check(
            "posix_spawnattr_setsigmask",
            libc::posix_spawnattr_setsigmask(attr, &empty),
        )?;
        check(
            "posix_spawnattr_setsigdefault",
            libc::posix_spawnattr_setsigdefault(attr, &defaults),
        )?;
        check(
            "posix_spawnattr_setflags",
            libc::posix_spawnattr_setflags(attr, flags),
        )?;
    }

    // File actions run in order, after setsid. The pty slave is opened
    // first, at the first descriptor that wants it (after setsid, so it
    // becomes the controlling terminal), then copied to the others.
    let first_pty = s.stdio.iter().position(|&d| d == Stdio::Pty);
    if let (Some(target), Some(path)) = (first_pty, s.pty) {
        // SAFETY: `actions` is initialised; `path` is NUL-terminated and the
        // call copies it.
        check("posix_spawn_file_actions_addopen", unsafe {
            libc::posix_spawn_file_actions_addopen(
                actions,
                target as libc::c_int,
                path.as_ptr(),
                libc::O_RDWR,
                0,
            )
        })?;
    }
    for (target, &how) in s.stdio.iter().enumerate() {
        let source = match how {
            Stdio::Inherit => continue,
            Stdio::Pty if Some(target) == first_pty => continue,
            Stdio::Pty => first_pty.unwrap_or(target) as RawFd,
            Stdio::Fd(fd) => fd,
        };
        // SAFETY: `actions` is initialised; dup2 of a descriptor number is
        // checked by the child's own call (a bad one fails the spawn).
        check("posix_spawn_file_actions_adddup2", unsafe {
            libc::posix_spawn_file_actions_adddup2(actions, source, target as libc::c_int)
        })?;
    }

    // The arrays hold only addresses of the borrowed strings (for envp, the
    // caller's locked block), never a copy of their bytes.
    let pointers = |strings: &[&CStr]| -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let (argv, envp) = (pointers(s.argv), pointers(s.envp));
    let mut pid: libc::pid_t = 0;
    // SAFETY: all pointers are valid for the call: `file` is NUL-terminated,
    // `argv` and `envp` are NULL-terminated arrays (built just above) of
    // pointers to NUL-terminated strings borrowed for 'a, so alive for the
    // call; the attribute and action objects are initialised. posix_spawnp
    // does not keep any of them after it returns.
    check("posix_spawnp", unsafe {
        libc::posix_spawnp(
            &mut pid,
            s.file.as_ptr(),
            actions,
            attr,
            argv.as_ptr() as *const *mut libc::c_char,
            envp.as_ptr() as *const *mut libc::c_char,
        )
    })?;
    Ok(pid)
}

/// Reads what is there (at most `buf.len()` bytes) from `fd` straight into
/// `buf`; 0 at the end. Retries an interrupted read.
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, SysError> {
    loop {
        // SAFETY: read writes at most buf.len() bytes into buf.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match usize::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => match errno() {
                libc::EINTR => continue,
                e => {
                    return Err(SysError {
                        call: "read",
                        errno: e,
                    })
                }
            },
        }
    }
}

/// Writes all of `bytes` to `fd`, waiting while a non-blocking `fd` is
/// full. Retries an interrupted write.
pub fn write_all(fd: RawFd, mut bytes: &[u8]) -> Result<(), SysError> {
    while !bytes.is_empty() {
        // SAFETY: write reads at most bytes.len() bytes from bytes.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match usize::try_from(n) {
            Ok(n) => bytes = &bytes[n..],
            Err(_) => match errno() {
                libc::EINTR => {}
                libc::EAGAIN => {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd; the result only says when to retry.
                    unsafe { libc::poll(&mut p, 1, -1) };
                }
                e => {
                    return Err(SysError {
                        call: "write",
                        errno: e,
                    })
                }
            },
        }
    }
    Ok(())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn wait(pid: libc::pid_t) -> libc::c_int {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(rc, pid);
        status
    }

    fn start(argv: &[&CString], env: &[&CString]) -> Result<libc::pid_t, SysError> {
        let args: Vec<&CStr> = argv.iter().map(|a| a.as_c_str()).collect();
        let envp: Vec<&CStr> = env.iter().map(|e| e.as_c_str()).collect();
        spawn(&Spawn {
            file: argv[0],
            argv: &args,
            envp: &envp,
            stdio: [Stdio::Inherit; 3],
            pty: None,
            default_signals: &[libc::SIGPIPE],
        })
    }

    #[test]
    fn the_child_gets_exactly_the_environment_given() {
        let (sh, flag, script) = (
            c("sh"),
            c("-c"),
            c(r#"test "$CC_A" = one && test -z "$HOME""#),
        );
        let pid = start(
            &[&sh, &flag, &script],
            &[&c("CC_A=one"), &c("PATH=/usr/bin:/bin")],
        )
        .unwrap();
        let status = wait(pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }

    #[test]
    fn a_missing_program_is_the_spawns_error() {
        let missing = c("cc-no-such-program-here");
        let err = start(&[&missing], &[]).unwrap_err();
        assert_eq!((err.call, err.errno), ("posix_spawnp", libc::ENOENT));
    }

    #[test]
    fn an_empty_argv_and_a_pty_without_a_path_are_refused() {
        let sh = c("sh");
        let mut s = Spawn {
            file: &sh,
            argv: &[],
            envp: &[],
            stdio: [Stdio::Inherit; 3],
            pty: None,
            default_signals: &[],
        };
        assert_eq!(spawn(&s).unwrap_err().errno, libc::EINVAL);
        let args = [sh.as_c_str()];
        s.argv = &args;
        s.stdio = [Stdio::Inherit, Stdio::Pty, Stdio::Inherit];
        assert_eq!(spawn(&s).unwrap_err().errno, libc::EINVAL);
    }
}
