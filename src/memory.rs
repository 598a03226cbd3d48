//! Allocator settings for the `cleartrail` binary, which uses mimalloc
//! (evidence processing allocates and frees millions of small JSON values:
//! glibc's allocator spent a third of a large first run in malloc and free).

/// mimalloc's `mi_option_e` values (`mimalloc.h`, v3): arena memory is
/// committed eagerly by default, and freed memory is purged after a delay.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps mimalloc's resident memory near what is live: arena memory is
/// committed as it is used, and freed memory is returned at once. Call
/// before other threads start. mimalloc's own environment variables
/// (`MIMALLOC_ARENA_EAGER_COMMIT`, `MIMALLOC_PURGE_DELAY`) still win, so a
/// user can trade memory for speed without a rebuild.
pub fn tune_allocator() {
    for (option, env, value) in [
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            "MIMALLOC_ARENA_EAGER_COMMIT",
            0,
        ),
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0),
    ] {
        if std::env::var_os(env).is_none() {
            // SAFETY: a plain option setter of the linked mimalloc; it
            // takes effect for allocations made after the call.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option numbers are not named by the bindings: check that they
    /// still mean what we set, by the defaults mimalloc documents for them
    /// (`options.c`: `arena_eager_commit` 2, `purge_delay` 1,000 ms). Read before any
    /// setter runs in this test process, and unless the environment
    /// overrides them.
    #[test]
    fn the_option_numbers_are_the_options_we_mean() {
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some()
            || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
        {
            return;
        }
        // SAFETY: option getters only.
        let (eager, delay) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            )
        };
        assert_eq!((eager, delay), (2, 1000));
    }
}
