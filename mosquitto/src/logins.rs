//! Logins asked off mosquitto's thread. Mosquitto 2.0 calls the plugin's login check on its only
//! thread and has no way to answer later, so every second spent waiting for the backend is a
//! second no connected device's message moves. Here a login that the cache cannot answer is
//! handed to a few worker threads; mosquitto's thread waits for the answer only briefly
//! (`plugin_opt_login_wait_ms`), and not at all while an older question is still unanswered (the
//! backend is slow or flooded: waiting would only add up). A login not answered in time is
//! refused as an error, never cached as a denial; its answer is cached when it comes, so the
//! client's retry is answered at once. The queue is bounded: past it, logins are refused
//! without asking.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::lock;
use crate::options::LoginOptions;

type Work = Box<dyn FnOnce() + Send>;

/// The worker threads and what they are asking.
pub struct LoginPool {
    jobs: SyncSender<Work>,
    /// When each unanswered question was handed over, by submission order.
    pending: Arc<Mutex<BTreeMap<u64, Instant>>>,
    next_id: AtomicU64,
    wait: Duration,
}

/// The queue is full: too many logins wait for the backend already.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

impl LoginPool {
    pub fn new(options: LoginOptions) -> Self {
        let (jobs, queue) = sync_channel::<Work>(options.queue);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..options.workers {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("vesper-login-{n}"))
                .spawn(move || work(&queue))
                .expect("a login worker thread starts");
        }
        Self {
            jobs,
            pending: Arc::default(),
            next_id: AtomicU64::new(0),
            wait: options.wait,
        }
    }

    /// Queues a question; it runs on a worker thread.
    pub fn submit(&self, question: impl FnOnce() + Send + 'static) -> Result<(), QueueFull> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id, Instant::now());
        let pending = self.pending.clone();
        let work: Work = Box::new(move || {
            question();
            lock(&pending).remove(&id);
        });
        match self.jobs.try_send(work) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                lock(&self.pending).remove(&id);
                Err(QueueFull)
            }
        }
    }

    /// How long mosquitto's thread may wait for an answer now: the configured wait, or nothing
    /// when a question older than that is still unanswered.
    pub fn patience(&self) -> Duration {
        let oldest = lock(&self.pending).first_key_value().map(|(_, at)| *at);
        match oldest {
            Some(at) if at.elapsed() > self.wait => Duration::ZERO,
            _ => self.wait,
        }
    }

    /// Questions handed over and not answered yet.
    pub fn unanswered(&self) -> usize {
        lock(&self.pending).len()
    }
}

/// A worker: runs questions until the pool is dropped.
fn work(queue: &Mutex<Receiver<Work>>) {
    loop {
        let next = lock(queue).recv();
        match next {
            Ok(question) => question(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn pool(workers: usize, queue: usize, wait_ms: u64) -> LoginPool {
        LoginPool::new(LoginOptions {
            workers,
            queue,
            wait: Duration::from_millis(wait_ms),
        })
    }

    #[test]
    fn questions_run_on_workers_and_the_queue_is_bounded() {
        let pool = pool(1, 2, 50);
        let (release, blocked) = channel::<()>();
        let blocked = Arc::new(Mutex::new(blocked));
        let (done, finished) = channel::<usize>();
        let main = std::thread::current().id();
        // One question holds the only worker; two more fill the queue; the fourth is refused.
        for n in 0..3 {
            if n == 1 {
                std::thread::sleep(Duration::from_millis(30));
            }
            let (blocked, done) = (blocked.clone(), done.clone());
            pool.submit(move || {
                assert_ne!(std::thread::current().id(), main);
                let _ = lock(&blocked).recv();
                done.send(n).unwrap();
            })
            .unwrap();
        }
        assert_eq!(pool.submit(|| {}), Err(QueueFull));
        assert_eq!(pool.unanswered(), 3);
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        let mut order: Vec<usize> = (0..3).map(|_| finished.recv().unwrap()).collect();
        order.sort();
        assert_eq!(order, [0, 1, 2]);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pool.unanswered(), 0);
    }

    #[test]
    fn no_patience_while_an_older_question_waits() {
        let pool = pool(1, 10, 30);
        assert_eq!(pool.patience(), Duration::from_millis(30));
        let (release, blocked) = channel::<()>();
        pool.submit(move || {
            let _ = blocked.recv();
        })
        .unwrap();
        assert_eq!(pool.patience(), Duration::from_millis(30), "a new question");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(pool.patience(), Duration::ZERO, "the backend is slow");
        release.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            pool.patience(),
            Duration::from_millis(30),
            "answered: patient again"
        );
    }
}
