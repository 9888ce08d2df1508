//! Taking a lock, the one way the whole tree does it: a lock poisoned by a holder that panicked
//! is recovered (`PoisonError::into_inner`), after an optional repair of what the panic may have
//! left half-done, so that one panic never turns into every later request failing.
//!
//! Every `Mutex` in `src/` guards data that stays consistent (or is repaired by the caller's
//! `repair`) when a holder panics between two statements: counters, caches, status copies,
//! queues. No lock here fails a request for being poisoned.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, recovering it if a holder panicked.
pub fn lock<T: ?Sized + Send>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    lock_repair(m, |_| {})
}

/// Locks `m`; if a holder panicked, `repair` puts the data right once before it is used again.
pub fn lock_repair<T: ?Sized + Send>(
    m: &Mutex<T>,
    repair: impl FnOnce(&mut T),
) -> MutexGuard<'_, T> {
    #[cfg(debug_assertions)]
    test_hook::poison_once(m);
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => {
            let mut guard = poisoned.into_inner();
            repair(&mut guard);
            m.clear_poison();
            guard
        }
    }
}

/// Debug builds only (the tests' binary): with `CHINAPORT_TEST_POISON_LOCKS=1` in the
/// environment, each lock is poisoned the first time it is taken, by a thread that panics while
/// holding it, so that a test can show the proxy keeps working with every lock poisoned. Release
/// builds do not contain this.
#[cfg(debug_assertions)]
mod test_hook {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock, PoisonError};

    fn enabled() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| {
            std::env::var_os("CHINAPORT_TEST_POISON_LOCKS").is_some_and(|v| v == "1")
        })
    }

    pub fn poison_once<T: ?Sized + Send>(m: &Mutex<T>) {
        if !enabled() {
            return;
        }
        static DONE: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
        let addr = m as *const Mutex<T> as *const u8 as usize;
        let first = DONE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(addr);
        if first {
            std::thread::scope(|s| {
                let _ = s
                    .spawn(|| {
                        let _held = m.lock();
                        panic!("test hook: poisoning a lock (CHINAPORT_TEST_POISON_LOCKS)");
                    })
                    .join();
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_recovered_and_repaired_once() {
        let m = Mutex::new(1);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let mut g = m.lock().unwrap();
                *g = 2;
                panic!("holder dies");
            })
            .join()
        });
        assert!(m.is_poisoned());
        let mut repairs = 0;
        assert_eq!(
            *lock_repair(&m, |v| {
                repairs += 1;
                *v += 10
            }),
            12
        );
        assert_eq!(*lock_repair(&m, |_| repairs += 1), 12);
        assert_eq!(repairs, 1);
    }
}
