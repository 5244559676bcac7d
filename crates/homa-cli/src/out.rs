//! Printing for the whole binary: [`outln!`] and [`out!`] for results on
//! stdout, [`errln!`] and [`err!`] for diagnostics on stderr. `outln!`
//! and friends are not used (clippy.toml disallows them): they panic when
//! the reader went away (`homa metrics | head`: "failed printing to
//! stdout: Broken pipe" and a backtrace).
//!
//! Why not restore SIGPIPE's default action instead: the signal would
//! also end `homa server` when whoever read its `listening on` line closed
//! the pipe (it keeps serving by design), `homa rack` without removing
//! its namespaces and restoring `htb_hysteresis` (its cleanup runs on
//! SIGINT and SIGTERM only), and any process whose TCP peer reset a
//! connection during a vectored write. With SIGPIPE ignored (Rust's
//! default) a closed pipe is an `EPIPE` error, handled here:
//!
//! - stdout: a reader that went away (`BrokenPipe`) is not an error; the
//!   output is dropped and the command goes on to its normal end and exit
//!   status. Other write errors (a full disk) are returned.
//! - stderr: write errors are ignored (there is nowhere to report them).

use std::fmt;
use std::io::{self, Write};

/// Writes `args` to stdout; a closed pipe is success (see the module).
pub(crate) fn stdout(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut o = io::stdout().lock();
    match o.write_fmt(args).and_then(|()| o.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Writes `args` to stderr, ignoring errors.
pub(crate) fn stderr(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// `out!` to stdout that returns `io::Result<()>` and treats a reader
/// that went away as success.
macro_rules! out {
    ($($t:tt)*) => {
        $crate::out::stdout(format_args!($($t)*))
    };
}

/// `outln!` to stdout that returns `io::Result<()>` and treats a reader
/// that went away as success.
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::out::stdout(format_args!("{}\n", format_args!($($t)*)))
    };
}

/// `err!` that ignores write errors.
macro_rules! err {
    ($($t:tt)*) => {
        $crate::out::stderr(format_args!($($t)*))
    };
}

/// `errln!` that ignores write errors.
macro_rules! errln {
    ($($t:tt)*) => {
        $crate::out::stderr(format_args!("{}\n", format_args!($($t)*)))
    };
}

pub(crate) use {err, errln, out, outln};
