use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A new thread is created every time all the existing threads are full.
/// Any idle thread will automatically die after a few seconds.
///
/// chinaport-proxy patch: a task is queued only for a thread that is idle and not yet claimed.
/// Upstream counted a thread as idle until it woke up, so a burst of connections could be queued
/// behind threads that then took one long-lived keep-alive connection each, and the rest waited
/// unseen until a connection closed. Here the count of idle threads and the queue are kept under
/// one lock, and a task goes to the queue only while idle threads outnumber the tasks already in
/// it; otherwise it gets a thread of its own.
pub struct TaskPool {
    sharing: Arc<Sharing>,
}

struct Pending {
    // list of the tasks to be done by worker threads
    todo: VecDeque<Box<dyn FnOnce() + Send>>,
    // worker threads waiting for a task
    idle: usize,
}

struct Sharing {
    pending: Mutex<Pending>,

    // condvar that will be notified whenever a task is added to `todo`
    condvar: Condvar,

    // number of total worker threads running
    active_tasks: AtomicUsize,
}

/// Minimum number of active threads.
static MIN_THREADS: usize = 4;

struct Registration<'a> {
    nb: &'a AtomicUsize,
}

impl<'a> Registration<'a> {
    fn new(nb: &'a AtomicUsize) -> Registration<'a> {
        nb.fetch_add(1, Ordering::Release);
        Registration { nb }
    }
}

impl<'a> Drop for Registration<'a> {
    fn drop(&mut self) {
        self.nb.fetch_sub(1, Ordering::Release);
    }
}

impl TaskPool {
    pub fn new() -> TaskPool {
        let pool = TaskPool {
            sharing: Arc::new(Sharing {
                pending: Mutex::new(Pending {
                    todo: VecDeque::new(),
                    idle: 0,
                }),
                condvar: Condvar::new(),
                active_tasks: AtomicUsize::new(0),
            }),
        };

        for _ in 0..MIN_THREADS {
            pool.add_thread(None)
        }

        pool
    }

    /// Executes a function in a thread.
    /// If no thread is available, spawns a new one.
    pub fn spawn(&self, code: Box<dyn FnOnce() + Send>) {
        let mut pending = self
            .sharing
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if pending.idle > pending.todo.len() {
            pending.todo.push_back(code);
            self.sharing.condvar.notify_one();
        } else {
            drop(pending);
            self.add_thread(Some(code));
        }
    }

    fn add_thread(&self, initial_fn: Option<Box<dyn FnOnce() + Send>>) {
        let sharing = self.sharing.clone();

        thread::spawn(move || {
            let sharing = sharing;
            let _active_guard = Registration::new(&sharing.active_tasks);

            if let Some(f) = initial_fn {
                f();
            }

            loop {
                let task: Box<dyn FnOnce() + Send> = {
                    let mut pending = sharing.pending.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if let Some(task) = pending.todo.pop_front() {
                            break task;
                        }
                        pending.idle += 1;
                        let received =
                            if sharing.active_tasks.load(Ordering::Acquire) <= MIN_THREADS {
                                pending = sharing
                                    .condvar
                                    .wait(pending)
                                    .unwrap_or_else(|e| e.into_inner());
                                true
                            } else {
                                let (new_lock, waitres) = sharing
                                    .condvar
                                    .wait_timeout(pending, Duration::from_millis(5000))
                                    .unwrap_or_else(|e| e.into_inner());
                                pending = new_lock;
                                !waitres.timed_out()
                            };
                        pending.idle -= 1;
                        if !received && pending.todo.is_empty() {
                            return;
                        }
                    }
                };

                task();
            }
        });
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing
            .active_tasks
            .store(999_999_999, Ordering::Release);
        self.sharing.condvar.notify_all();
    }
}
