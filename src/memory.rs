//! Allocator settings for the `cleartrail` binary, which uses mimalloc
//! (evidence processing allocates and frees millions of small JSON values:
//! glibc's allocator spent a third of a large first run in malloc and free).

/// mimalloc's `mi_option_e` values (`mimalloc.h`, v3): arena memory is
/// committed eagerly by default, freed memory is purged after a delay, and
/// arenas may be backed by transparent huge pages.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// How long freed memory stays mapped before it is returned. Returned at
/// once (0), a first run at 100,000 commits returned 18-31 GiB in 450,000
/// `madvise` calls, each page faulted in and zeroed again moments later:
/// a quarter of its CPU time went to the kernel. 10 ms returned 5 GiB, for
/// the same peak.
const PURGE_DELAY_MS: std::os::raw::c_long = 10;

/// Keeps mimalloc's resident memory near what is live: arena memory is
/// committed as it is used, freed memory is returned after
/// [`PURGE_DELAY_MS`], and in 4 KiB pages, not the 2 MiB of a transparent
/// huge page (a huge page is resident whole however little of it is used:
/// 15 MB more at the peak of a first run at 100,000 commits). Call before
/// other threads start. mimalloc's own environment variables
/// (`MIMALLOC_ARENA_EAGER_COMMIT`, `MIMALLOC_PURGE_DELAY`,
/// `MIMALLOC_ALLOW_THP`) still win, so a user can trade memory for speed
/// without a rebuild.
pub fn tune_allocator() {
    for (option, env, value) in [
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            "MIMALLOC_ARENA_EAGER_COMMIT",
            0,
        ),
        (
            MI_OPTION_PURGE_DELAY,
            "MIMALLOC_PURGE_DELAY",
            PURGE_DELAY_MS,
        ),
        (MI_OPTION_ALLOW_THP, "MIMALLOC_ALLOW_THP", 0),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: a plain option setter of the linked mimalloc; it
            // takes effect for allocations made after the call.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
    // mimalloc reserved its arena (and asked for huge pages there) before
    // `main` ran, so the option alone comes too late for it: the process
    // opts out of transparent huge pages for every later page fault.
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with an integer flag; it only fails on kernels
        // older than 3.15, which then keep their huge pages.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

/// Returns to the system what the calling thread freed and has not
/// returned yet. A thread purges its freed memory only when it allocates
/// again: a phase that frees a lot and then waits on other threads (the
/// plan of a first run, then reading every artifact on two threads) would
/// otherwise hold both at once, which made the peak of a first run at
/// 100,000 commits vary from 300 to 360 MB.
pub fn release_freed() {
    // SAFETY: mimalloc's collection entry point; safe at any time, and a
    // no-op for memory this allocator does not manage.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option numbers are not named by the bindings: check that they
    /// still mean what we set, by the defaults mimalloc documents for them
    /// (`options.c`: `arena_eager_commit` 2, `purge_delay` 1,000 ms,
    /// `allow_thp` 1 on Linux, and its neighbour `minimal_purge_size` 0).
    /// Read before any setter runs in this test process (tests use the
    /// system allocator and never call `tune_allocator`), and unless the
    /// environment overrides them.
    #[test]
    fn the_option_numbers_are_the_options_we_mean() {
        if [
            "MIMALLOC_ARENA_EAGER_COMMIT",
            "MIMALLOC_PURGE_DELAY",
            "MIMALLOC_ALLOW_THP",
            "MIMALLOC_MINIMAL_PURGE_SIZE",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
        {
            return;
        }
        // SAFETY: option getters only.
        let got = unsafe {
            [
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
                libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP),
                libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP + 1),
            ]
        };
        assert_eq!(got, [2, 1000, 1, 0]);
    }
}
