//! The `cleartrail` binary: parse the command line, set up logging, call the
//! library and turn its outcome into a process exit code. Nothing else lives
//! here, so that every behaviour is testable through `cleartrail::run`.

use clap::Parser;
use std::process::ExitCode;

// Evidence processing allocates and frees millions of small JSON values:
// glibc's allocator spent a third of a large first run in malloc and free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_e` values (mimalloc.h, v3) for the two settings
/// that keep its resident memory near what is live: return freed memory
/// at once, and commit arena memory only as it is used.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // SAFETY: plain option setters, called before any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    let cli = cleartrail::cli::Cli::parse();
    cleartrail::logging::init(cli.global.verbose, cli.global.quiet);
    let code = cleartrail::run(cli);
    ExitCode::from(code.as_u8())
}
