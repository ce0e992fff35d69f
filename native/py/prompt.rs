//! `prompt_cell`: asks on the terminal with echo off and reads the answer
//! straight into guarded memory, then into a cell. The answer never becomes
//! a Python object; the staging buffer it is read into is guarded memory of
//! at least the cell's tier and is zeroed when dropped. The terminal calls
//! themselves are in `sys::tty`.

use std::ffi::CString;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyEOFError, PyValueError};
use pyo3::prelude::*;

use super::cell::CypherCell;
use super::policy::{applied, Policy};
use crate::errors::{warn_unlocked, Error, Unlocked};
use crate::memory::{PerProcess, SecretBuf, Tier, TierRequest};
use crate::sys::tty::{EchoOff, LineEnd, Terminal, LINE_LIMIT, RESTORE_CALL};
use crate::sys::{SysError, SysResult};

const CONTROLLING_TERMINAL: &str = "/dev/tty";

/// The longest answer a terminal line delivers whole: a line of
/// `LINE_LIMIT` bytes may be a longer one the kernel cut short.
const TERMINAL_MAX_ANSWER: usize = LINE_LIMIT - 1;

/// Asks `prompt` on the terminal `tty_path` (by default the controlling
/// terminal) with echo off and returns the answer in a new cell; the answer
/// never becomes a Python object. One trailing newline, and a carriage
/// return before it, are not part of the answer. Ctrl-C raises
/// KeyboardInterrupt and Ctrl-D before an answer EOFError, with the
/// terminal restored. An answer over `max_len` bytes (at most 4094, the
/// most a terminal line holds whole) is discarded with a ValueError. No
/// terminal: ProviderUnavailableError.
#[pyfunction]
#[pyo3(signature = (
    prompt,
    *,
    policy = None,
    max_len = 4096,
    tty_path = "/dev/tty", // CONTROLLING_TERMINAL, spelled out for the text signature
))]
fn prompt_cell(
    py: Python<'_>,
    prompt: &str,
    policy: Option<PyRef<'_, Policy>>,
    max_len: i64,
    tty_path: &str,
) -> PyResult<CypherCell> {
    // Every argument is checked before the terminal is touched.
    let options = applied(policy.as_deref())?;
    let limit = answer_limit(max_len)?;
    let path = CString::new(tty_path)
        .map_err(|_| PyValueError::new_err("tty_path must not contain NUL characters"))?;
    let staging = staging_buffer(py, options.requested, limit)?;
    let _turn = Turn::take(py)?;
    let terminal = blocking(py, tty_path, || Terminal::open(&path))?;
    // The answer is read into `staging`, copied into the cell, and zeroed
    // when `staging` drops on the way out, whichever way that is.
    staging.fill(|buf| {
        let mut quiet = blocking(py, tty_path, || terminal.echo_off())?;
        let mut written = 0;
        blocking(py, tty_path, || {
            quiet.write_all(prompt.as_bytes(), &mut written)
        })?;
        let mut filled = 0;
        let end = blocking(py, tty_path, || quiet.read_line(buf, &mut filled))?;
        let answer = answer_len(&buf[..filled], end, limit);
        if end == LineEnd::Full {
            discard_rest_of_line(py, tty_path, &mut quiet, buf)?;
        }
        quiet.restore().map_err(|e| terminal_error(tty_path, e))?;
        let len = answer.map_err(|refused| refusal_error(refused, limit, max_len))?;
        CypherCell::create(py, options, len, |cell| {
            cell.copy_from_slice(&buf[..len]);
            Ok::<(), PyErr>(())
        })
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(prompt_cell, m)?)
}

/// One prompt at a time in a process: two would interleave on one terminal,
/// and the second would save the first's echo-off modes as the ones to put
/// back, leaving echo off for good. A forked child starts with a free turn.
static TURN: PerProcess<(Mutex<bool>, Condvar)> =
    PerProcess::new(|| (Mutex::new(false), Condvar::new()));

/// How often a thread waiting for its turn runs Python's signal handlers.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// The turn to use the terminal; dropping it hands the turn on.
struct Turn;

impl Turn {
    /// Waits for the turn without the GIL, running signal handlers (Ctrl-C)
    /// every `SIGNAL_POLL`.
    fn take(py: Python<'_>) -> PyResult<Turn> {
        let (busy, freed) = TURN.get();
        loop {
            py.check_signals()?;
            let taken = py.detach(|| {
                let busy = busy.lock().unwrap_or_else(|e| e.into_inner());
                let (mut busy, _) = freed
                    .wait_timeout_while(busy, SIGNAL_POLL, |busy| *busy)
                    .unwrap_or_else(|e| e.into_inner());
                if *busy {
                    return false;
                }
                *busy = true;
                true
            });
            if taken {
                return Ok(Turn);
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let (busy, freed) = TURN.get();
        *busy.lock().unwrap_or_else(|e| e.into_inner()) = false;
        freed.notify_one();
    }
}

fn answer_limit(max_len: i64) -> PyResult<usize> {
    match usize::try_from(max_len) {
        Ok(n) if n >= 1 => Ok(n.min(TERMINAL_MAX_ANSWER)),
        _ => Err(PyValueError::new_err(format!(
            "max_len must be at least 1, got {max_len}"
        ))),
    }
}

/// Guarded memory with room for the longest accepted answer and its "\r\n".
/// A cell asked to be locked (or secretmem) never has its bytes pass
/// through weaker memory first; otherwise the best tier the machine gives,
/// with a warning when `auto` had to settle for unlocked memory. `cell` is
/// the cell's request as its `Policy` gives it.
fn staging_buffer(py: Python<'_>, cell: TierRequest, limit: usize) -> PyResult<SecretBuf> {
    let requested = match cell {
        TierRequest::Exactly(Tier::Secretmem | Tier::Locked) => cell,
        _ => TierRequest::Auto,
    };
    let (buf, degraded) = SecretBuf::allocate(requested, limit + 2).map_err(Error::Lock)?;
    if let (Some(cause), TierRequest::Auto) = (degraded, cell) {
        warn_unlocked(py, &cause, Unlocked::PromptAnswer)?;
    }
    Ok(buf)
}

/// Runs a terminal call without the GIL. Python's signal handlers run
/// before each attempt and whenever the call is interrupted (`EINTR`), so
/// Ctrl-C raises `KeyboardInterrupt` here; the caller's `EchoOff` guard then
/// restores the terminal as the exception leaves. Handlers run with echo
/// still off: turning it on around them would open a window in which typed
/// characters show.
fn blocking<T: Send>(
    py: Python<'_>,
    tty_path: &str,
    mut call: impl FnMut() -> SysResult<T> + Send,
) -> PyResult<T> {
    loop {
        py.check_signals()?;
        match py.detach(&mut call) {
            Err(e) if e.errno == libc::EINTR => continue,
            Err(e) => return Err(terminal_error(tty_path, e)),
            Ok(done) => return Ok(done),
        }
    }
}

/// Reads the rest of an over-long line into `buf` (guarded memory,
/// overwritten each time) up to its newline, so that it reaches no one.
fn discard_rest_of_line(
    py: Python<'_>,
    tty_path: &str,
    quiet: &mut EchoOff<'_>,
    buf: &mut [u8],
) -> PyResult<()> {
    loop {
        let mut filled = 0;
        if blocking(py, tty_path, || quiet.read_line(buf, &mut filled))? != LineEnd::Full {
            return Ok(());
        }
    }
}

/// Why an answer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AnswerRefused {
    /// End of input before anything was typed.
    NoAnswer,
    TooLong,
}

/// The length of the answer at the start of `line` (the bytes read): one
/// trailing "\n" and a "\r" before it are not part of it.
fn answer_len(line: &[u8], end: LineEnd, limit: usize) -> Result<usize, AnswerRefused> {
    let (typed, answer) = match end {
        LineEnd::Full => return Err(AnswerRefused::TooLong),
        LineEnd::Eof if line.is_empty() => return Err(AnswerRefused::NoAnswer),
        LineEnd::Eof => (line, line),
        LineEnd::Newline => {
            let typed = line.strip_suffix(b"\n").unwrap_or(line);
            (typed, typed.strip_suffix(b"\r").unwrap_or(typed))
        }
    };
    if typed.len() >= LINE_LIMIT || answer.len() > limit {
        return Err(AnswerRefused::TooLong);
    }
    Ok(answer.len())
}

fn refusal_error(refused: AnswerRefused, limit: usize, max_len: i64) -> PyErr {
    match refused {
        AnswerRefused::NoAnswer => {
            PyEOFError::new_err("prompt: end of input before an answer (Ctrl-D or a hang-up)")
        }
        AnswerRefused::TooLong if usize::try_from(max_len) == Ok(limit) => PyValueError::new_err(
            format!("prompt: the answer is longer than max_len={max_len} bytes; it was discarded"),
        ),
        AnswerRefused::TooLong => PyValueError::new_err(format!(
            "prompt: the answer is longer than {limit} bytes, the most a terminal line holds \
             whole (the kernel cuts longer lines short); it was discarded"
        )),
    }
}

/// The Python exception for a failed terminal call: no terminal is
/// `ProviderUnavailableError`, anything else `ProviderError`.
fn terminal_error(tty_path: &str, e: SysError) -> PyErr {
    let unavailable = match (e.call, e.errno) {
        ("open", libc::ENXIO | libc::ENODEV | libc::ENOENT | libc::EACCES) => {
            if tty_path == CONTROLLING_TERMINAL {
                format!("prompt: no controlling terminal ({tty_path}: {e})")
            } else {
                format!("prompt: no terminal at {tty_path} ({e})")
            }
        }
        ("tcgetattr", libc::ENOTTY) => format!("prompt: {tty_path} is not a terminal ({e})"),
        (RESTORE_CALL, _) => {
            let message = format!(
                "prompt: the terminal {tty_path} could not be restored ({e}): echo may be left \
                 off; `stty sane` turns it back on"
            );
            return Error::Provider(message).into();
        }
        _ => {
            return Error::Provider(format!("prompt: the terminal {tty_path} failed ({e})")).into()
        }
    };
    Error::ProviderUnavailable(unavailable).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_newline_and_a_carriage_return_before_it_are_stripped() {
        assert_eq!(answer_len(b"abc\n", LineEnd::Newline, 10), Ok(3));
        assert_eq!(answer_len(b"abc\r\n", LineEnd::Newline, 10), Ok(3));
        assert_eq!(answer_len(b"abc\r", LineEnd::Eof, 10), Ok(4));
        assert_eq!(answer_len(b"a\r\r\n", LineEnd::Newline, 10), Ok(2));
        assert_eq!(answer_len(b"\n", LineEnd::Newline, 10), Ok(0));
        assert_eq!(answer_len(b"ab", LineEnd::Eof, 10), Ok(2));
    }

    #[test]
    fn nothing_before_the_end_of_input_is_no_answer() {
        assert_eq!(
            answer_len(b"", LineEnd::Eof, 10),
            Err(AnswerRefused::NoAnswer)
        );
    }

    #[test]
    fn the_limit_counts_the_answer_only() {
        assert_eq!(answer_len(b"0123456789\r\n", LineEnd::Newline, 10), Ok(10));
        assert_eq!(
            answer_len(b"0123456789a\n", LineEnd::Newline, 10),
            Err(AnswerRefused::TooLong)
        );
        assert_eq!(
            answer_len(b"0123456789a", LineEnd::Eof, 10),
            Err(AnswerRefused::TooLong)
        );
        assert_eq!(
            answer_len(b"0123", LineEnd::Full, 10),
            Err(AnswerRefused::TooLong)
        );
    }

    #[test]
    fn a_line_the_kernel_may_have_cut_short_is_refused() {
        let mut line = vec![b'x'; TERMINAL_MAX_ANSWER];
        line.push(b'\n');
        assert_eq!(
            answer_len(&line, LineEnd::Newline, TERMINAL_MAX_ANSWER),
            Ok(TERMINAL_MAX_ANSWER)
        );
        line.insert(0, b'x');
        assert_eq!(
            answer_len(&line, LineEnd::Newline, TERMINAL_MAX_ANSWER),
            Err(AnswerRefused::TooLong)
        );
    }

    #[test]
    fn max_len_is_at_least_one_and_at_most_what_a_line_holds() {
        assert_eq!(answer_limit(1).unwrap(), 1);
        assert_eq!(answer_limit(4096).unwrap(), TERMINAL_MAX_ANSWER);
        assert_eq!(answer_limit(1 << 40).unwrap(), TERMINAL_MAX_ANSWER);
        Python::attach(|_| {
            assert!(answer_limit(0).is_err());
            assert!(answer_limit(-5).is_err());
        });
    }
}
