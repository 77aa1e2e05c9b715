//! The workers: run each handler in a task (a panic is caught and counted as a failure) — its own,
//! or, for a run started by a request `App::serve_on` served, its connection's until it has to
//! wait (see [`AfterAnswers`]) — and record success, a retry with backoff and full jitter, or
//! `dead`. A job gets a worker slot either at reception — created already claimed when a slot is
//! free, with no claim round trip — or from the claiming loop, which takes due jobs under a lease:
//! retries, jobs that found no free slot, ordered jobs, and jobs whose lease ran out elsewhere.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, watch};

use crate::HandlerError;
use crate::app::Shared;
use crate::extract::Context;
use crate::observe::TransitionKind;
use crate::outcome::Outcome;
use crate::registry::HandlerRt;
use crate::routing;
use crate::store::{ClaimedJob, JobResult, StoredDelivery};

/// The longest a worker sleeps before looking for due jobs again.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// The worker slots of one instance, shared by the claiming loop and by requests that hand their
/// jobs straight to a free slot.
#[derive(Debug)]
pub(crate) struct Slots {
    /// How many jobs may run here at once.
    concurrency: usize,
    /// One per job running (or being recorded) in this instance: at most `concurrency`.
    permits: Arc<Semaphore>,
    /// Held (shared) by each job until its result is recorded; the drain takes it exclusively.
    recording: Arc<tokio::sync::RwLock<()>>,
    /// The jobs running here: released to run elsewhere if the drain's grace runs out.
    running: Arc<std::sync::Mutex<Running>>,
    /// Whether the claiming loop runs (and has not begun to stop): only then are jobs handed to
    /// a slot at reception.
    open: std::sync::atomic::AtomicBool,
}

/// Job ids, hashed as the store's own ids are ([`IdHasher`](crate::store::IdHasher)): each job
/// is added and removed once.
type Running =
    std::collections::HashSet<i64, std::hash::BuildHasherDefault<crate::store::IdHasher>>;

/// A free worker slot, reserved for a job about to be created already claimed.
pub(crate) struct Reserved {
    permit: tokio::sync::OwnedSemaphorePermit,
    recording: tokio::sync::OwnedRwLockReadGuard<()>,
}

impl Slots {
    pub(crate) fn new(concurrency: usize) -> Self {
        Self {
            concurrency,
            permits: Arc::new(Semaphore::new(concurrency)),
            recording: Arc::default(),
            running: Arc::default(),
            open: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A free slot, if the workers are running, one is free and none is waiting for one.
    pub(crate) fn reserve(&self) -> Option<Reserved> {
        if !self.open.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        let recording = self.recording.clone().try_read_owned().ok()?;
        Some(Reserved { permit, recording })
    }

    /// Spawns one job's run in its slot, tracked until its result is recorded.
    fn spawn<F, R>(&self, job: i64, reserved: Reserved, run: F)
    where
        F: FnOnce(tokio::sync::OwnedSemaphorePermit) -> R,
        R: Future<Output = ()> + Send + 'static,
    {
        let running = self.running.clone();
        running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(job);
        let Reserved { permit, recording } = reserved;
        let run = run(permit);
        // Boxed: a task then holds a pointer, and spawning it and storing its result copy a few
        // bytes rather than the whole run's state, several times per job.
        launch(Box::pin(async move {
            run.await;
            running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&job);
            drop(recording);
        }));
    }
}

/// A handler run, boxed, ready to be polled by a connection's task or spawned.
type Run = Pin<Box<dyn Future<Output = ()> + Send>>;

std::thread_local! {
    /// The runs started on this thread while [`AfterAnswers`] polls its connection; `None`
    /// outside that window.
    static STARTED: std::cell::RefCell<Option<Vec<Run>>> = const { std::cell::RefCell::new(None) };
}

/// Starts `run`: polled by the connection's task right after the answer when a request served by
/// [`AfterAnswers`] started it, in a task of its own otherwise.
fn launch(run: Run) {
    let run = STARTED.with_borrow_mut(|started| match started {
        Some(started) => {
            started.push(run);
            None
        }
        None => Some(run),
    });
    if let Some(run) = run {
        tokio::spawn(run);
    }
}

/// A connection whose requests' handler runs start in its own task once hyper has written the
/// answers, without a task each: each run is polled once there, and only one that has to wait
/// (for I/O, a timer, another task) moves to a task of its own. A handler that finishes at its
/// first poll — most do — then costs no task, its spawn, its scheduling and its completion (about
/// 1.4 µs of a 1 KB delivery on the machine the performance chapter measured).
pub(crate) struct AfterAnswers<C>(pub(crate) Pin<Box<C>>);

impl<C: Future> Future for AfterAnswers<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<C::Output> {
        /// Closes the window and hands the runs started in it on — spawned, if the connection's
        /// poll unwinds, so that none is lost.
        struct Window;
        impl Window {
            fn close(self) -> Vec<Run> {
                let started = STARTED.take().unwrap_or_default();
                std::mem::forget(self);
                started
            }
        }
        impl Drop for Window {
            fn drop(&mut self) {
                for run in STARTED.take().unwrap_or_default() {
                    tokio::spawn(run);
                }
            }
        }
        if STARTED.with_borrow(Option::is_some) {
            // Inside another connection's window (never, with tokio): its runs, its window.
            return self.0.as_mut().poll(cx);
        }
        STARTED.set(Some(Vec::new()));
        let window = Window;
        let polled = self.0.as_mut().poll(cx);
        for mut run in window.close() {
            // A panic past the handler's own guard ends this run alone, as it would end its task.
            let first =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.as_mut().poll(cx)));
            if matches!(first, Ok(Poll::Pending)) {
                tokio::spawn(run);
            }
        }
        polled
    }
}

/// Runs `job` — stored already claimed by this instance, attempt 1 — in the slot `reserved`.
pub(crate) fn start(
    shared: &Arc<Shared>,
    handler: Arc<HandlerRt>,
    record: Arc<StoredDelivery>,
    job: i64,
    reserved: Reserved,
) {
    let app = shared.clone();
    shared.slots.spawn(job, reserved, move |permit| async move {
        run_once(&app, &handler, record, job, 1, Some(permit)).await;
    });
}

/// Runs jobs until `stop` turns true or the app is dropped; then waits up to `grace` for the
/// handlers already running, those handed to a slot at reception included.
pub(crate) async fn run(
    shared: Weak<Shared>,
    slots: Arc<Slots>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    use std::sync::atomic::Ordering;
    let Slots {
        concurrency,
        permits,
        recording,
        running,
        open,
    } = &*slots;
    open.store(true, Ordering::Release);
    // Once the app's stop handle is dropped, only dropping the app itself stops the worker.
    let mut stoppable = true;
    let mut last_purge = tokio::time::Instant::now();
    let mut last_depth = tokio::time::Instant::now()
        .checked_sub(IDLE_POLL)
        .unwrap_or_else(tokio::time::Instant::now);
    loop {
        if *stop.borrow() {
            break;
        }
        let Some(app) = shared.upgrade() else { break };
        if last_depth.elapsed() >= IDLE_POLL {
            last_depth = tokio::time::Instant::now();
            if let Ok(depth) = app.store.queue_depth().await {
                crate::telemetry::queue_depth(depth);
            }
        }
        if last_purge.elapsed() >= app.config.purge_every {
            last_purge = tokio::time::Instant::now();
            purge(&app).await;
        }
        let free = permits.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            let now = app.clock.now_ms();
            match app.store.claim(free, app.config.lease_ms, now).await {
                Ok(jobs) => jobs,
                Err(error) => {
                    tracing::error!(target: "hooksmith::worker", %error, "claiming jobs failed");
                    Vec::new()
                }
            }
        };
        let busy = !claimed.is_empty();
        for job in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let recording = recording.clone().read_owned().await;
            let reserved = Reserved { permit, recording };
            let app = app.clone();
            slots.spawn(job.id, reserved, move |permit| async move {
                run_claimed(&app, job, permit).await;
            });
        }
        if busy && permits.available_permits() > 0 {
            continue;
        }
        let sleep = match app.store.next_due().await {
            Ok(Some(at)) => {
                let wait = at.saturating_sub(app.clock.now_ms()).max(0);
                Duration::from_millis(wait.unsigned_abs()).min(IDLE_POLL)
            }
            _ => IDLE_POLL,
        };
        drop(app);
        if permits.available_permits() == 0 {
            // Every slot is busy: wait for one to free up (or a poll interval).
            let _ = tokio::time::timeout(IDLE_POLL, permits.clone().acquire_owned()).await;
            continue;
        }
        let stop_changed = async {
            if stoppable {
                stop.changed().await.is_ok()
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(sleep) => {}
            handle_alive = stop_changed => stoppable = handle_alive,
        }
    }
    // No job is handed to a slot at reception from now on; they wait for the next claim.
    open.store(false, Ordering::Release);
    // Drain: wait for running handlers to finish within the grace period.
    let all = u32::try_from(*concurrency).unwrap_or(u32::MAX);
    let drained = async {
        let _handlers_done = permits.acquire_many(all).await;
        let _results_recorded = recording.write().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        // Give the unfinished jobs back now, so the next start (or another instance) runs them
        // without waiting for their leases to run out.
        let unfinished: Vec<i64> = running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        if let Some(app) = shared.upgrade()
            && let Err(error) = app.store.release(&unfinished, app.clock.now_ms()).await
        {
            tracing::error!(target: "hooksmith::worker", %error, "releasing unfinished jobs failed; their leases will run out");
        }
        tracing::warn!(
            target: "hooksmith::worker",
            released = unfinished.len(),
            "handlers still running after the shutdown grace period were released to run again"
        );
    }
}

async fn run_claimed(
    shared: &Arc<Shared>,
    job: ClaimedJob,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some(handler) = shared.handlers.get(job.handler.as_str()).cloned() else {
        let error = format!("no handler named `{}` in this build", job.handler);
        tracing::error!(target: "hooksmith::worker", job = job.id, %error);
        let retry_at = shared.clock.now_ms().saturating_add(60_000);
        let result = JobResult::Failed {
            error,
            retry_at_ms: Some(retry_at),
        };
        finish(shared, job.id, result).await;
        return;
    };
    run_once(
        shared,
        &handler,
        job.delivery,
        job.id,
        job.attempt,
        Some(permit),
    )
    .await;
}

/// Runs one attempt of a claimed job and records how it ended; returns the outcome (with the
/// response of an `ack = "handled"` handler). The worker slot `permit` is given back as soon as
/// the handler returns: recording its result waits for a commit, and the next job need not.
pub(crate) async fn run_once(
    shared: &Arc<Shared>,
    handler: &HandlerRt,
    record: Arc<StoredDelivery>,
    job: i64,
    attempt: u32,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Outcome {
    let span = tracing::info_span!(
        "hooksmith.handler",
        handler = handler.name,
        endpoint = %record.endpoint,
        event = %record.event,
        delivery_id = %record.delivery_id,
        attempt,
    );
    let _enter = span.enter();
    let content_type = record.headers.get("content-type");
    let cx = Context {
        payload: routing::payload(&record.body, content_type),
        record: record.clone(),
        attempt,
        handler: handler.name,
        state: shared.state.clone(),
    };
    let outcome = run_with_lease(shared, handler, cx, job).await;
    drop(permit);
    let result = match &outcome.result {
        Ok(()) => {
            tracing::info!(target: "hooksmith::handler", "handler succeeded");
            JobResult::Succeeded
        }
        Err(error) => {
            let max_attempts = handler.retry.max.saturating_add(1);
            let retry_at_ms = (!error.is_permanent() && attempt < max_attempts).then(|| {
                let ceiling = handler.retry.ceiling_ms(attempt);
                let delay = fastrand::u64(0..=ceiling);
                shared
                    .clock
                    .now_ms()
                    .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX))
            });
            tracing::warn!(
                target: "hooksmith::handler",
                error = %error,
                retry = retry_at_ms.is_some(),
                "handler failed"
            );
            JobResult::Failed {
                error: error.message().to_owned(),
                retry_at_ms,
            }
        }
    };
    let label = match &result {
        JobResult::Succeeded => "succeeded",
        JobResult::Failed {
            retry_at_ms: Some(_),
            ..
        } => "retrying",
        JobResult::Failed {
            retry_at_ms: None, ..
        } => "dead",
    };
    crate::telemetry::handler_run(handler.name, label);
    let kind = || {
        let handler = handler.name.to_owned();
        match label {
            "succeeded" => TransitionKind::Succeeded { handler },
            "retrying" => TransitionKind::Retrying { handler, attempt },
            _ => TransitionKind::Dead { handler },
        }
    };
    if finish(shared, job, result).await {
        shared.publish(&record.endpoint, &record.delivery_id, Some(record.id), kind);
    }
    outcome
}

async fn finish(shared: &Arc<Shared>, job: i64, result: JobResult) -> bool {
    let retry = matches!(
        result,
        JobResult::Failed {
            retry_at_ms: Some(_),
            ..
        }
    );
    let now = shared.clock.now_ms();
    if let Err(error) = shared.store.finish(job, result, now).await {
        // The lease expires and the job runs again: at least once, never dropped.
        tracing::error!(target: "hooksmith::worker", job, %error, "recording a job's result failed");
        return false;
    }
    if retry {
        shared.wake_workers();
    }
    true
}

/// Runs the handler (a panic becomes a failure), renewing the job's lease while it runs and
/// giving up on it after the handler's timeout, which frees the worker slot.
///
/// A handler that finishes at its first poll — most do, or finish after I/O that is already
/// ready — costs no timer: the lease and deadline timers start only when it has to wait.
async fn run_with_lease(
    shared: &Arc<Shared>,
    handler: &HandlerRt,
    cx: Context,
    job: i64,
) -> Outcome {
    let mut run = CatchUnwind((handler.run)(cx));
    let first = std::future::poll_fn(|task| Poll::Ready(Pin::new(&mut run).poll(task))).await;
    match first {
        Poll::Ready(outcome) => outcome,
        // The waiting path is boxed: every job's task is sized for its largest state, and the
        // timers would make every task larger for the few handlers that wait.
        Poll::Pending => Box::pin(run_leased(shared, handler, run, job)).await,
    }
}

/// The rest of a handler's run that had to wait: the lease renewed every third of its length,
/// the handler given up after its timeout.
async fn run_leased(
    shared: &Arc<Shared>,
    handler: &HandlerRt,
    mut run: CatchUnwind<crate::__private::BoxFuture<Outcome>>,
    job: i64,
) -> Outcome {
    let lease = shared.config.lease_ms;
    let every = Duration::from_millis((lease / 3).max(1).unsigned_abs());
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_millis(handler.timeout_ms);
    let mut renew_at = started + every;
    loop {
        let timer = tokio::time::sleep_until(renew_at.min(deadline));
        tokio::select! {
            outcome = &mut run => return outcome,
            () = timer => {
                if tokio::time::Instant::now() >= deadline {
                    // Dropping the handler's future cancels it.
                    return Outcome::failed(HandlerError::new(format!(
                        "handler timed out after {} ms",
                        handler.timeout_ms
                    )));
                }
                renew_at += every;
                if let Err(error) = shared.store.renew(job, lease, shared.clock.now_ms()).await {
                    tracing::warn!(target: "hooksmith::worker", job, %error, "renewing a lease failed");
                }
            }
        }
    }
}

/// A handler's future with its panics caught: a panic is the run's failure, not the worker's.
struct CatchUnwind<F>(F);

impl<F: Future<Output = Outcome> + Unpin> Future for CatchUnwind<F> {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, task: &mut std::task::Context<'_>) -> Poll<Outcome> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Pin::new(&mut *inner).poll(task)
        })) {
            Ok(polled) => polled,
            Err(payload) => Poll::Ready(Outcome::failed(HandlerError::from_panic(&*payload))),
        }
    }
}

/// Forgets finished history past the retention window.
async fn purge(shared: &Shared) {
    let policy = shared.config.retention(shared.clock.now_ms());
    match shared.store.purge(policy).await {
        Ok((0, 0)) => {}
        Ok((deliveries, keys)) => {
            tracing::info!(target: "hooksmith::worker", deliveries, keys, "purged old history");
        }
        Err(error) => tracing::warn!(target: "hooksmith::worker", %error, "purging history failed"),
    }
}
