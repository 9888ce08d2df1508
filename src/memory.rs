//! How the long-running process uses memory: glibc's per-thread cache of freed blocks (tcache)
//! is turned off for it on Linux, and its heaps are two.
//!
//! Every keep-alive connection has a thread, and each thread kept its own cache of freed blocks
//! (up to seven of every small size) that no other thread could reuse: at 64 clients that was
//! 3.7 MB of 10.9 MB resident, and the proxy was no faster for it (benches/load.rs). glibc also
//! gives threads up to eight heaps ("arenas") per core, each with pages of its own; two hold
//! 0.2 MB less at 64 clients, at the same throughput on this 2-core machine. glibc reads
//! the setting only from `GLIBC_TUNABLES` as a process starts (`mallopt` has no such parameter),
//! so the server sets it and executes itself again, once, before anything else has happened:
//! same process id, same arguments. Windows' heap keeps no such cache, and other C libraries
//! ignore the variable; there this does nothing.

/// Set next to `GLIBC_TUNABLES` by the re-exec, so that the proxy knows the setting is its own and
/// keeps it from the programs it starts (the client-restart command): they get the operator's
/// environment, not the proxy's malloc choice.
pub const MARK: &str = "CHINAPORT_PROXY_TUNED";

/// The variable glibc reads its malloc settings from.
pub const TUNABLES: &str = "GLIBC_TUNABLES";
/// What the server runs with, unless the operator set `GLIBC_TUNABLES` themselves: no thread
/// cache, two arenas.
pub const MALLOC_SETTINGS: &str = "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2";

/// Runs the server again with `MALLOC_SETTINGS`, unless `GLIBC_TUNABLES` is already set (by
/// the operator, or by the first run). Returns only when it did nothing or exec failed, and then
/// the server simply runs with glibc's defaults.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn without_thread_cache() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(TUNABLES).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let failed = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(TUNABLES, MALLOC_SETTINGS)
        .env(MARK, "1")
        .exec();
    // nothing is logged yet, and the proxy works either way: one line on stderr
    eprintln!("chinaport-proxy: running with glibc's malloc defaults ({failed})");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn without_thread_cache() {}

/// Removes the proxy's own malloc setting from a child's environment (a no-op when the operator
/// set `GLIBC_TUNABLES` and the proxy did not re-execute).
pub fn for_child(command: &mut std::process::Command) -> &mut std::process::Command {
    if std::env::var_os(MARK).is_some() {
        command.env_remove(TUNABLES).env_remove(MARK);
    }
    command
}
