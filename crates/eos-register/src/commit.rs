//! Group commit: requests that arrive while a transaction is being
//! committed are done together in the next one, so one durable commit (one
//! fsync of SQLite's write-ahead log, `synchronous = FULL`) serves many
//! requests instead of one.
//!
//! No thread of its own: the first request to find nobody committing leads
//! — it takes every request queued so far (at most [`MAX_BATCH`]), runs the
//! batch, hands each request its own result, and passes the lead to the
//! first request that queued meanwhile. A request's result is handed over
//! only after the batch's commit returned, so no answer is sent for a
//! registration that is not yet durable; if the commit fails, every request
//! of the batch gets the failure and none of them was written.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, MutexGuard};

/// Requests per transaction, at most: bounds the wait of the last one.
pub const MAX_BATCH: usize = 128;

/// Jobs `J` done in batches, each with its result `R`.
pub(crate) struct GroupCommit<J, R> {
    queue: Mutex<Queue<J, R>>,
}

struct Queue<J, R> {
    waiting: VecDeque<Waiting<J, R>>,
    /// A request is running a batch (or has been handed the lead).
    leading: bool,
}

struct Waiting<J, R> {
    job: J,
    reply: SyncSender<Reply<R>>,
}

enum Reply<R> {
    Done(R),
    /// Run the next batch.
    Lead,
}

impl<J, R> GroupCommit<J, R> {
    pub(crate) fn new() -> Self {
        GroupCommit {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                leading: false,
            }),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue<J, R>> {
        // Nothing panics while this lock is held: its state is consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Do `job` in the next batch and wait for its result. `run` does a
    /// batch: it gets the batch's jobs in arrival order and returns their
    /// results in the same order, only once they are durable. `None`: the
    /// batch was lost to a panic (nothing of it was committed).
    pub(crate) fn submit(&self, job: J, run: impl FnOnce(Vec<J>) -> Vec<R>) -> Option<R> {
        // Room for one message: a request is sent the lead at most once,
        // and its result once, each after the one before was received.
        let (reply, answer) = sync_channel(1);
        let lead = {
            let mut queue = self.queue();
            queue.waiting.push_back(Waiting { job, reply });
            !std::mem::replace(&mut queue.leading, true)
        };
        if !lead {
            match answer.recv() {
                Ok(Reply::Done(result)) => return Some(result),
                Ok(Reply::Lead) => {}
                Err(_) => return None,
            }
        }
        self.lead(run, &answer)
    }

    /// Run one batch (this request's job is at its front), then pass the
    /// lead on, also when `run` panics.
    fn lead(&self, run: impl FnOnce(Vec<J>) -> Vec<R>, answer: &Receiver<Reply<R>>) -> Option<R> {
        let handoff = Handoff(self);
        let batch: Vec<Waiting<J, R>> = {
            let mut queue = self.queue();
            let n = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..n).collect()
        };
        let (jobs, replies): (Vec<J>, Vec<SyncSender<Reply<R>>>) =
            batch.into_iter().map(|w| (w.job, w.reply)).unzip();
        let results = run(jobs);
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(Reply::Done(result));
        }
        drop(handoff);
        match answer.recv() {
            Ok(Reply::Done(result)) => Some(result),
            _ => None,
        }
    }
}

/// Passes the lead to the first queued request, or gives it up when none
/// is queued; on drop, so a panicking batch cannot stall the queue.
struct Handoff<'g, J, R>(&'g GroupCommit<J, R>);

impl<J, R> Drop for Handoff<'_, J, R> {
    fn drop(&mut self) {
        let mut queue = self.0.queue();
        while let Some(next) = queue.waiting.front() {
            // Its buffer is empty: it is waiting for its first message.
            if next.reply.try_send(Reply::Lead).is_ok() {
                return;
            }
            // Its thread is gone: its job can have no answer.
            queue.waiting.pop_front();
        }
        queue.leading = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every job gets its own result, however the threads interleave, and
    /// jobs that queue while a batch runs share the next one.
    #[test]
    fn every_job_gets_its_own_result_and_waiting_jobs_share_a_batch() {
        let group = GroupCommit::<u32, u32>::new();
        let batches = AtomicUsize::new(0);
        let results: Vec<Option<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..200u32)
                .map(|i| {
                    let (group, batches) = (&group, &batches);
                    s.spawn(move || {
                        group.submit(i, |jobs| {
                            batches.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(2));
                            jobs.into_iter().map(|j| j * 10).collect()
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (i, r) in results.into_iter().enumerate() {
            assert_eq!(r, Some(i as u32 * 10));
        }
        let batches = batches.load(Ordering::SeqCst);
        assert!(batches < 200, "{batches} batches for 200 jobs: none shared");
        assert!(!group.queue().leading);
        assert!(group.queue().waiting.is_empty());
    }

    /// A batch that panics answers its jobs with `None` and passes the
    /// lead on: later jobs still run.
    #[test]
    fn a_panicking_batch_does_not_stall_the_queue() {
        let group = GroupCommit::<u32, u32>::new();
        let panicked = std::thread::scope(|s| {
            s.spawn(|| group.submit(1, |_| panic!("batch failed")))
                .join()
        });
        assert!(panicked.is_err());
        assert_eq!(group.submit(2, |jobs| jobs), Some(2));
    }
}
