//! The constructor: runs before `main` in every executable that links pgfresh, and does
//! nothing unless the executable was started again by pgfresh as one of its helper processes:
//! the broker ([`crate::broker`], `PGFRESH_BROKER_SERVE`) or a guardian
//! ([`crate::server`]'s guardian, `PGFRESH_GUARD`). Those never reach `main`: they do their
//! work and exit.
//!
//! What it costs a program that links pgfresh: one function call before `main` that reads two
//! environment variables. It is a pointer in the platform's table of initialisers
//! (`.init_array` on Linux, `__mod_init_func` on macOS); where there is none (Windows), there
//! is no broker and no guardian ([`crate::os::RUNS_CONSTRUCTORS`]), and pgfresh works without
//! them.

#[cfg(any(target_os = "linux", target_os = "macos"))]
#[used]
#[allow(unsafe_code)]
#[cfg_attr(target_os = "linux", unsafe(link_section = ".init_array"))]
#[cfg_attr(target_os = "macos", unsafe(link_section = "__DATA,__mod_init_func"))]
static HOOK: extern "C" fn() = hook;

#[cfg(any(target_os = "linux", target_os = "macos"))]
extern "C" fn hook() {
    let broker = std::env::var_os(crate::config::SERVE_VAR).is_some();
    #[cfg(any(feature = "docker", feature = "local"))]
    let guardian = std::env::var_os(crate::server::GUARD_VAR).is_some();
    #[cfg(not(any(feature = "docker", feature = "local")))]
    let guardian = false;
    if !broker && !guardian {
        return;
    }
    // SAFETY: before `main`, no other thread runs; ignoring SIGPIPE (which `main` would do for
    // a Rust program) keeps a write to a process that just exited from killing the helper.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    if broker {
        crate::broker::serve::serve_if_asked();
    }
    #[cfg(any(feature = "docker", feature = "local"))]
    if guardian {
        crate::server::guard_if_asked();
    }
}
