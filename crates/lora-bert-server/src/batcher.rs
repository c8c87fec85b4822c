//! One queue for every app's requests and the thread that runs them: rows of many requests,
//! of any apps, fill one padded batch up to a token budget and run in one mixed-route
//! forward pass ([`Runtime::answer`]); each request is answered from its own rows.

use std::collections::VecDeque;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lora_bert::runtime::{Answer, Ask, Query, Runtime};
use tokio::sync::oneshot;

use crate::error::{ApiError, ErrorKind};
use crate::metrics::Metrics;

/// What a job's rows ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The logits of an app's head.
    Logits(String),
    /// Mean-pooled states, through an app's group or the backbone alone.
    Embedding(Option<String>),
}

impl Target {
    fn ask(&self) -> Ask<'_> {
        match self {
            Target::Logits(app) => Ask::Logits(app),
            Target::Embedding(app) => Ask::Embedding(app.as_deref()),
        }
    }
}

/// The answer a job waits for: one [`Answer`] per row, in order.
pub(crate) type Reply = Result<Vec<Answer>, ApiError>;

/// One request's rows.
#[derive(Debug)]
pub(crate) struct Job {
    pub target: Target,
    pub rows: Vec<Vec<u32>>,
    pub reply: oneshot::Sender<Reply>,
}

impl Job {
    fn tokens(&self) -> usize {
        self.rows.iter().map(Vec::len).sum()
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue holds its maximum.
    Full,
    /// The server is shutting down.
    Closed,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Tokens of the queued jobs' rows.
    tokens: usize,
    rows: usize,
    closed: bool,
}

/// A job taken from the queue, answered row by row (a large one over several batches).
#[derive(Debug)]
struct Pending {
    job: Job,
    /// Its first row not yet run.
    next: usize,
    answers: Vec<Answer>,
    failed: Option<ApiError>,
}

impl Pending {
    fn done(&self) -> bool {
        self.failed.is_some() || self.next == self.job.rows.len()
    }
}

/// The queue and its batching policy.
#[derive(Debug)]
pub(crate) struct Batcher {
    queue: Mutex<Queue>,
    ready: Condvar,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    max_batch_tokens: usize,
    max_wait: Duration,
    max_queue: usize,
}

impl Batcher {
    pub fn new(
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
        max_batch_tokens: usize,
        max_wait: Duration,
        max_queue: usize,
    ) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            runtime,
            metrics,
            max_batch_tokens: max_batch_tokens.max(1),
            max_wait,
            max_queue,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, q: &Queue) {
        self.metrics
            .queue_depth
            .store(q.jobs.len(), Ordering::Relaxed);
        self.metrics.queue_rows.store(q.rows, Ordering::Relaxed);
    }

    /// Queues `job`, or refuses it when the queue is full or closed.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        let mut q = self.lock();
        if q.closed {
            return Err(Refused::Closed);
        }
        if q.jobs.len() >= self.max_queue {
            return Err(Refused::Full);
        }
        q.tokens += job.tokens();
        q.rows += job.rows.len();
        q.jobs.push_back(job);
        self.publish(&q);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }

    /// Refuses new jobs from now on; [`run`](Self::run) returns once the queued ones are
    /// answered.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// The batching loop: runs until [`close`](Self::close) and an empty queue.
    pub fn run(&self) {
        let mut active: VecDeque<Pending> = VecDeque::new();
        // Rows of the last batch: under steady load the clients it answered send their next
        // requests within moments, and a batch that waits for them is larger.
        let mut last_rows = 0;
        loop {
            let mut q = self.lock();
            if active.is_empty() {
                while q.jobs.is_empty() && !q.closed {
                    q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                if q.jobs.is_empty() {
                    return; // closed and drained
                }
                // Let the queue refill to the last batch's rows, for at most `max_wait`, unless
                // a full batch is queued. A lone request (a last batch of one row) runs at once.
                let deadline = Instant::now() + self.max_wait;
                while !q.closed && q.tokens < self.max_batch_tokens && q.rows < last_rows {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    q = self
                        .ready
                        .wait_timeout(q, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            let segments = self.plan(&mut active, &mut q);
            self.publish(&q);
            drop(q);
            last_rows = segments.iter().map(|(_, r)| r.len()).sum();
            self.execute(&mut active, &segments);
            while active.front().is_some_and(Pending::done) {
                let p = active.pop_front().expect("a front job");
                // The client may have left: nobody to answer.
                let _ = p.job.reply.send(match p.failed {
                    Some(e) => Err(e),
                    None => Ok(p.answers),
                });
            }
        }
    }

    /// Takes rows for the next batch: the rest of the carried job first, then queued jobs in
    /// arrival order, while rows × longest row stays within the token budget (one row at
    /// least). Returns (index into `active`, its rows) per job in the batch.
    fn plan(&self, active: &mut VecDeque<Pending>, q: &mut Queue) -> Vec<(usize, Range<usize>)> {
        let mut segments = Vec::new();
        let (mut n, mut width) = (0usize, 0usize);
        let mut i = 0;
        loop {
            if i == active.len() {
                let Some(job) = q.jobs.pop_front() else {
                    break;
                };
                q.tokens -= job.tokens();
                q.rows -= job.rows.len();
                active.push_back(Pending {
                    answers: Vec::with_capacity(job.rows.len()),
                    job,
                    next: 0,
                    failed: None,
                });
            }
            let p = &mut active[i];
            if p.job.reply.is_closed() {
                // Its client left: skip what is left of it.
                self.metrics.cancelled();
                p.next = p.job.rows.len();
                i += 1;
                continue;
            }
            let (start, mut end) = (p.next, p.next);
            while end < p.job.rows.len() {
                let w = width.max(p.job.rows[end].len());
                if n > 0 && (n + 1) * w > self.max_batch_tokens {
                    break;
                }
                n += 1;
                width = w;
                end += 1;
            }
            if end > start {
                segments.push((i, start..end));
            }
            if end < p.job.rows.len() {
                break;
            }
            i += 1;
        }
        segments
    }

    /// Runs the planned rows as one batch and files each job's answers. When the batch fails
    /// (an app removed meanwhile, a non-finite output), each job's rows run again alone, so
    /// that the error reaches only the job it belongs to.
    fn execute(&self, active: &mut VecDeque<Pending>, segments: &[(usize, Range<usize>)]) {
        if segments.is_empty() {
            return;
        }
        let started = Instant::now();
        let (rows, width) = segments
            .iter()
            .flat_map(|(i, r)| r.clone().map(move |k| (*i, k)))
            .fold((0, 0), |(n, w), (i, k)| {
                (n + 1, w.max(active[i].job.rows[k].len()))
            });
        let all = self.answer(active, segments);
        let results: Vec<Result<Vec<Answer>, ApiError>> = match all {
            Ok(mut answers) => segments
                .iter()
                .map(|(_, r)| Ok(answers.drain(..r.len()).collect()))
                .collect(),
            Err(e) if segments.len() == 1 => vec![Err(e)],
            Err(_) => segments
                .iter()
                .map(|s| self.answer(active, std::slice::from_ref(s)))
                .collect(),
        };
        self.metrics
            .batch(rows, rows * width, started.elapsed().as_secs_f64());
        for ((i, r), result) in segments.iter().zip(results) {
            let p = &mut active[*i];
            match result {
                Ok(answers) => {
                    p.answers.extend(answers);
                    p.next = r.end;
                }
                Err(e) => p.failed = Some(e),
            }
        }
    }

    /// One forward pass over `segments`' rows; a panic in the model is an error answer, not
    /// a dead batcher.
    fn answer(
        &self,
        active: &VecDeque<Pending>,
        segments: &[(usize, Range<usize>)],
    ) -> Result<Vec<Answer>, ApiError> {
        let queries: Vec<Query<'_>> = segments
            .iter()
            .flat_map(|(i, r)| {
                let job = &active[*i].job;
                job.rows[r.clone()].iter().map(|ids| Query {
                    ask: job.target.ask(),
                    ids,
                })
            })
            .collect();
        match catch_unwind(AssertUnwindSafe(|| self.runtime.answer(&queries))) {
            Ok(Ok(answers)) if answers.len() == queries.len() => Ok(answers),
            Ok(Ok(answers)) => Err(ApiError::new(
                ErrorKind::Backend,
                format!("{} answers for {} rows", answers.len(), queries.len()),
            )),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ApiError::new(
                ErrorKind::Backend,
                "the model panicked on this batch",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lora_bert::{Backend, BertConfig, BertModel, device};

    fn batcher(max_batch_tokens: usize, max_queue: usize) -> Batcher {
        let device = device::device(Backend::default_cpu().unwrap()).unwrap();
        let config: BertConfig = serde_json::from_str(
            r#"{"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 32,
                "max_position_embeddings": 64}"#,
        )
        .unwrap();
        let runtime = Arc::new(Runtime::new(BertModel::init(&config, false, &device)));
        Batcher::new(
            runtime,
            Arc::new(Metrics::default()),
            max_batch_tokens,
            Duration::ZERO,
            max_queue,
        )
    }

    fn job(rows: usize, len: usize) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            target: Target::Embedding(None),
            rows: vec![vec![1; len]; rows],
            reply,
        };
        (job, answer)
    }

    #[test]
    fn batches_fill_in_arrival_order_within_the_budget_and_a_large_job_spreads() {
        let b = batcher(40, 10);
        let (a, _a) = job(3, 10);
        let (c, _c) = job(5, 8);
        let (gone, dropped) = job(2, 4);
        drop(dropped);
        let (d, _d) = job(1, 4);
        for j in [a, c, gone, d] {
            b.submit(j).unwrap();
        }
        let mut active = VecDeque::new();
        let mut q = b.lock();
        // 3 rows of 10 and one of 8: 4 x 10 = 40 tokens padded; a fifth row would be 50.
        assert_eq!(b.plan(&mut active, &mut q), vec![(0, 0..3), (1, 0..1)]);
        active[0].next = 3;
        active[1].next = 1;
        active.pop_front();
        // The rest of the second job (4 x 8 = 32), the dropped one skipped, the last one
        // (5 x 8 = 40).
        assert_eq!(b.plan(&mut active, &mut q), vec![(0, 1..5), (2, 0..1)]);
        assert!(active[1].done(), "the job whose client left is skipped");
        assert!(q.jobs.is_empty() && q.rows == 0 && q.tokens == 0);
    }

    #[test]
    fn a_row_longer_than_the_budget_runs_alone_and_a_full_queue_refuses() {
        let b = batcher(16, 2);
        let (long, _l) = job(2, 30);
        b.submit(long).unwrap();
        let (x, _x) = job(1, 1);
        b.submit(x).unwrap();
        let (y, _y) = job(1, 1);
        assert_eq!(b.submit(y), Err(Refused::Full));
        let mut active = VecDeque::new();
        let mut q = b.lock();
        assert_eq!(b.plan(&mut active, &mut q), vec![(0, 0..1)]);
        drop(q);
        b.close();
        let (z, _z) = job(1, 1);
        assert_eq!(b.submit(z), Err(Refused::Closed));
    }

    #[test]
    fn run_answers_every_job_from_its_own_rows_and_returns_when_closed() {
        let b = Arc::new(batcher(64, 10));
        let (a, ra) = job(2, 5);
        let (c, rc) = job(3, 7);
        b.submit(a).unwrap();
        b.submit(c).unwrap();
        b.close();
        let worker = b.clone();
        std::thread::spawn(move || worker.run()).join().unwrap();
        let (ra, rc) = (ra.blocking_recv().unwrap(), rc.blocking_recv().unwrap());
        assert_eq!((ra.unwrap().len(), rc.unwrap().len()), (2, 3));
    }
}
