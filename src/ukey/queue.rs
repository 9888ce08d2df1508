//! The callers' calls waiting for the card, served round-robin by client address (#25.2): each
//! host has its own first-in-first-out line, and the card takes one call from each host with a
//! call waiting in turn. A host that had nothing waiting goes ahead of the hosts that already had
//! a turn (the "new flows" list of FQ-CoDel, RFC 8290 section 4.1): so a second host's single
//! call is sent as soon as the card is free, not behind a 128-call batch nor behind that batch's
//! next call; and within a host the order is kept. A host may hold at most its share of the
//! queue: one that fills it is answered busy at once while the others are still taken.

use super::Job;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

/// Who a call is from: the client's address (`None` for a caller without one).
pub type Host = Option<IpAddr>;

/// Why a call was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `ukey.max_queue` calls wait already.
    Queue,
    /// This host holds its share already.
    Share,
}

pub struct FairQueue {
    lines: HashMap<Host, VecDeque<Job>>,
    /// Hosts with a call waiting, in the order they are served next: first the `fresh` ones
    /// that had nothing waiting, then those that already had a turn.
    turn: VecDeque<Host>,
    fresh: usize,
    len: usize,
    max: usize,
    share: usize,
}

/// How much of the queue one host may hold: half, so that a host filling its share leaves the
/// other half to everyone else.
pub fn share_of(max_queue: usize) -> usize {
    max_queue.div_ceil(2).max(1)
}

impl FairQueue {
    pub fn new(max: usize) -> FairQueue {
        FairQueue {
            lines: HashMap::new(),
            turn: VecDeque::new(),
            fresh: 0,
            len: 0,
            max,
            share: share_of(max),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Queues a call at the end of its host's line, or hands it back with the reason.
    // The job comes back by value to be answered busy; boxing it would cost an allocation on
    // the path that sheds load.
    #[allow(clippy::result_large_err)]
    pub fn push(&mut self, job: Job) -> Result<(), (Job, Full)> {
        if self.len >= self.max {
            return Err((job, Full::Queue));
        }
        let host = job.client;
        let line = self.lines.entry(host).or_default();
        if line.len() >= self.share {
            return Err((job, Full::Share));
        }
        if line.is_empty() {
            // behind the other fresh hosts, ahead of those that had a turn
            self.turn.insert(self.fresh, host);
            self.fresh += 1;
        }
        line.push_back(job);
        self.len += 1;
        Ok(())
    }

    /// The next call: the first of the host whose turn it is; that host goes to the back.
    pub fn pop(&mut self) -> Option<Job> {
        let host = self.turn.pop_front()?;
        self.fresh = self.fresh.saturating_sub(1);
        let line = self.lines.get_mut(&host)?;
        let job = line.pop_front()?;
        if line.is_empty() {
            self.lines.remove(&host);
        } else {
            self.turn.push_back(host);
        }
        self.len -= 1;
        Some(job)
    }

    pub fn deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.lines.values().flatten().map(|job| job.deadline)
    }

    /// Takes out every call due by `now` (rare: the lines are only rebuilt then).
    pub fn expire(&mut self, now: Instant) -> Vec<Job> {
        if !self.deadlines().any(|d| d <= now) {
            return Vec::new();
        }
        let mut expired = Vec::new();
        for line in self.lines.values_mut() {
            let (due, kept): (Vec<Job>, Vec<Job>) =
                line.drain(..).partition(|job| job.deadline <= now);
            expired.extend(due);
            *line = kept.into();
        }
        self.lines.retain(|_, line| !line.is_empty());
        let lines = &self.lines;
        let fresh_left = self
            .turn
            .iter()
            .take(self.fresh)
            .filter(|host| lines.contains_key(host))
            .count();
        self.turn.retain(|host| lines.contains_key(host));
        self.fresh = fresh_left;
        self.len -= expired.len();
        expired
    }

    /// Takes out every call, in the order they would have been served.
    pub fn drain(&mut self) -> Vec<Job> {
        std::iter::from_fn(|| self.pop()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::oneshot;
    use super::*;
    use std::time::Duration;

    fn job(host: u8, id: &str, deadline: Instant) -> Job {
        let (reply, _) = oneshot::slot();
        Job {
            method: "m".into(),
            args: Default::default(),
            request_id: id.into(),
            client: Some(IpAddr::from([127, 0, 0, host])),
            deadline,
            reply,
        }
    }

    fn put(q: &mut FairQueue, job: Job) {
        assert!(q.push(job).is_ok());
    }

    fn refused(q: &mut FairQueue, job: Job) -> Full {
        match q.push(job) {
            Err((_, why)) => why,
            Ok(()) => panic!("queued"),
        }
    }

    fn order(q: &mut FairQueue) -> Vec<String> {
        q.drain().into_iter().map(|j| j.request_id).collect()
    }

    #[test]
    fn hosts_take_turns_and_each_keeps_its_order() {
        let t = Instant::now();
        let mut q = FairQueue::new(256);
        for i in 0..4 {
            put(&mut q, job(1, &format!("a{i}"), t));
        }
        put(&mut q, job(2, "b0", t));
        put(&mut q, job(3, "c0", t));
        put(&mut q, job(2, "b1", t));
        assert_eq!(q.len(), 7);
        assert_eq!(order(&mut q), ["a0", "b0", "c0", "a1", "b1", "a2", "a3"]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_host_that_had_nothing_waiting_is_served_next() {
        let t = Instant::now();
        let mut q = FairQueue::new(256);
        for i in 0..100 {
            put(&mut q, job(1, &format!("a{i}"), t));
        }
        assert_eq!(q.pop().unwrap().request_id, "a0");
        put(&mut q, job(2, "b0", t));
        put(&mut q, job(3, "c0", t));
        put(&mut q, job(2, "b1", t));
        // fresh hosts in their order of arrival, then turns: b1 waits for a's turn
        assert_eq!(order(&mut q)[..5], ["b0", "c0", "a1", "b1", "a2"]);
    }

    #[test]
    fn a_host_that_returns_after_its_line_emptied_is_fresh_again() {
        let t = Instant::now();
        let mut q = FairQueue::new(256);
        for i in 0..10 {
            put(&mut q, job(1, &format!("a{i}"), t));
        }
        assert_eq!(q.pop().unwrap().request_id, "a0");
        put(&mut q, job(2, "b0", t));
        assert_eq!(q.pop().unwrap().request_id, "b0");
        assert_eq!(q.pop().unwrap().request_id, "a1");
        put(&mut q, job(2, "b1", t));
        assert_eq!(q.pop().unwrap().request_id, "b1");
        assert_eq!(q.pop().unwrap().request_id, "a2");
    }

    #[test]
    fn a_host_that_fills_its_share_is_refused_and_others_are_not() {
        let t = Instant::now();
        let mut q = FairQueue::new(8);
        for i in 0..4 {
            put(&mut q, job(1, &format!("a{i}"), t));
        }
        let why = refused(&mut q, job(1, "a4", t));
        assert_eq!(why, Full::Share);
        for i in 0..4 {
            put(&mut q, job(2, &format!("b{i}"), t));
        }
        let why = refused(&mut q, job(3, "c0", t));
        assert_eq!(why, Full::Queue);
    }

    #[test]
    fn expired_calls_leave_the_lines_and_the_turns() {
        let t = Instant::now();
        let mut q = FairQueue::new(256);
        put(&mut q, job(1, "a0", t + Duration::from_secs(1)));
        put(&mut q, job(2, "b0", t + Duration::from_secs(5)));
        put(&mut q, job(1, "a1", t + Duration::from_secs(5)));
        put(&mut q, job(3, "c0", t + Duration::from_secs(1)));
        let gone: Vec<String> = q
            .expire(t + Duration::from_secs(1))
            .into_iter()
            .map(|j| j.request_id)
            .collect();
        assert_eq!(gone.len(), 2);
        assert_eq!(q.len(), 2);
        assert_eq!(order(&mut q), ["a1", "b0"]);
    }
}
