//! Timing a whole command as a user runs it: wall clock and peak RSS
//! (from `wait4`'s rusage), shared by the benchmarks.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Measured {
    pub wall: Duration,
    pub peak_rss_kib: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion, with its wall time and peak RSS. Dirty
/// pages of the previous command (a pack, a packet's files) are flushed
/// first, so that their write-back is not timed as part of this one.
pub fn measure(cmd: &mut Command) -> Measured {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    // Read the pipes on threads so a chatty child never blocks.
    let mut child = child;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let mut status: libc::c_int = 0;
    // SAFETY: wait4 on our own child with valid out-pointers; the rusage
    // struct is plain data and zero is a valid initial value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let wall = start.elapsed();
    let stdout = t_out.join().unwrap();
    let stderr = t_err.join().unwrap();
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(ok, "{cmd:?} failed ({status}):\n{stdout}\n{stderr}");
    Measured {
        wall,
        peak_rss_kib: usage.ru_maxrss,
        stdout,
        stderr,
    }
}
