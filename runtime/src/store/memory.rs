//! The in-memory store: for tests and demos. Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque, hash_map};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

use super::{
    ClaimedJob, Connection, DeliveryQuery, DeliveryStatus, DeliverySummary, IdHasher, Ingest,
    JobResult, JobStatus, JobSummary, NewDelivery, NewJob, Retention, Store, StoreError,
    StoreFuture, StoreInfo, StoredDelivery,
};

/// A [`Store`] that keeps everything in memory. Not durable: the startup banner says so.
///
/// Its history is bounded, in number and in bytes: once more than [`MemoryStore::DEFAULT_KEEP`]
/// (or the number given to [`MemoryStore::keeping`]) finished deliveries are held, or their
/// bodies and those of the deliveries still at work add up to more than
/// [`MemoryStore::DEFAULT_KEEP_BYTES`] (or [`MemoryStore::keeping_bytes`]), the oldest finished
/// ones are dropped as new ones finish, so memory stays flat under any load and any payload size.
/// Deliveries with a handler still to run, retrying or dead are never dropped, and the newest
/// finished one is always kept; idempotency keys outlive their deliveries as in every store.
/// Besides, the buffers of up to four bodies of 4–256 KiB it dropped (1 MiB at most) wait to
/// take new bodies that fit them.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    keep: usize,
    keep_bytes: usize,
    /// Turns idempotency keys into the digests [`Inner::keys`] holds; outside the lock, so a
    /// key is digested before it is taken.
    digests: Digests,
    /// Buffers of large bodies dropped from the history, for the next bodies to be copied into.
    spares: Spares,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::keeping(Self::DEFAULT_KEEP)
    }
}

#[derive(Debug, Default)]
struct Inner {
    next_id: i64,
    /// The bodies of the deliveries held, in bytes.
    body_bytes: usize,
    deliveries: BTreeMap<i64, Entry>,
    /// Idempotency key (its [`Digests::digest`]) → (delivery, first seen).
    keys: Keys,
    /// The jobs of deliveries not yet settled (see [`Work`]).
    jobs: Jobs,
    /// Unclaimed jobs by due time.
    due: BTreeSet<(i64, i64)>,
    /// Claimed jobs by lease expiry.
    leased: BTreeSet<(i64, i64)>,
    connections: BTreeMap<String, Connection>,
    /// Deliveries in the order they finished.
    finished: Finished,
}

/// Deliveries in the order they finished (every handler succeeded, or none matched), each with
/// its turn; the front is dropped first when the history is full. May name deliveries already
/// gone, or replayed since (their entry's turn is then another, or none): eviction checks.
#[derive(Debug, Default)]
struct Finished {
    queue: VecDeque<(i64, u64)>,
    turns: u64,
}

impl Finished {
    /// Gives a delivery that has just finished the next turn, at the back of the queue.
    fn push(&mut self, delivery: i64) -> u64 {
        self.turns += 1;
        self.queue.push_back((delivery, self.turns));
        self.turns
    }
}

/// Jobs by id, hashed with [`IdHasher`]: every ingest, finish and eviction looks them up.
type Jobs = HashMap<i64, Job, BuildHasherDefault<IdHasher>>;

/// An idempotency key as the memory store remembers it: the first 128 bits of its SHA-256,
/// keyed with the store's own secret (see [`Digests::digest`]).
type KeyDigest = [u8; 16];

/// How many hash maps hold the keys.
const SHARDS: usize = 256;

/// How many deliveries a purge looks at under the lock at a time.
const PURGE_SLICE: usize = 1_024;

/// The idempotency keys, in 256 hash maps by their digest's first byte.
///
/// Keys are kept for days, one per delivery ever received, so theirs is the store's largest
/// table. A hash map grows by moving everything into one twice the size: it holds both for that
/// moment, and the request that grew it — with every request in flight behind it — waits for
/// the move. In 256 maps, each grows on its own, so the peak is 1/256 of that copy and the wait
/// short: growing past 500,000 keys, one map stalls for about 18 ms, each of 16 maps for about
/// 1 ms (16 stalls close together, enough to show at the 99th percentile), each of 256 for
/// 0.1 ms.
///
/// The digests are SHA-256 keyed with a secret drawn when the store is made, so their bits are
/// as good as random to anyone without it: the maps use them as they are instead of hashing
/// them again, and no sender can choose keys that pile into one place of a map.
#[derive(Debug)]
struct Keys {
    shards: Box<[KeyMap]>,
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| HashMap::default()).collect(),
        }
    }
}

/// The store's keyed digest of idempotency keys.
#[derive(Debug)]
struct Digests {
    /// SHA-256 having absorbed one block of the secret.
    keyed: sha2::Sha256,
}

impl Default for Digests {
    fn default() -> Self {
        use sha2::Digest as _;
        let mut secret = [0; 64];
        crate::registry::fill_random(&mut secret);
        Self {
            keyed: sha2::Sha256::new_with_prefix(secret),
        }
    }
}

impl Digests {
    /// Keys outlive their deliveries by days, one per delivery ever received: held as 16 bytes
    /// each rather than their text (~70 bytes and an allocation). Two different keys share a
    /// digest with probability 2⁻¹²⁸ per pair — never, in practice, even chosen on purpose. The
    /// secret block was absorbed once, so a key costs the compressions its own bytes need.
    fn digest(&self, key: &str) -> KeyDigest {
        use sha2::Digest as _;
        let full = self.keyed.clone().chain_update(key.as_bytes()).finalize();
        let mut digest = [0; 16];
        digest.copy_from_slice(&full[..16]);
        digest
    }
}

impl Keys {
    /// The map a key lives in.
    fn shard(key: &KeyDigest) -> usize {
        usize::from(key[0])
    }

    #[cfg(test)]
    fn get(&self, key: &KeyDigest) -> Option<&(i64, i64)> {
        self.shards[Self::shard(key)].get(key)
    }

    #[cfg(test)]
    fn insert(&mut self, key: KeyDigest, value: (i64, i64)) {
        self.shards[Self::shard(&key)].insert(key, value);
    }

    fn entry(&mut self, key: KeyDigest) -> hash_map::Entry<'_, KeyDigest, (i64, i64)> {
        self.shards[Self::shard(&key)].entry(key)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    /// Keeps the keys of map `shard` for which `keep` holds; returns how many went.
    fn retain(&mut self, shard: usize, mut keep: impl FnMut(&(i64, i64)) -> bool) -> usize {
        let map = &mut self.shards[shard];
        let held = map.len();
        map.retain(|_, value| keep(value));
        held - map.len()
    }
}

/// One of the keys' maps: digest → (delivery, first seen).
type KeyMap = HashMap<KeyDigest, (i64, i64), BuildHasherDefault<DigestHasher>>;

/// A key digest's hash in its map: its bytes 8 to 15, already uniform (bytes 0 to 7 would not
/// do: the first picks the map, so within one map it is the same for every key).
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The digest's bytes come in one call; its length (written first) is ignored.
        if let Some(tail) = bytes.get(8..16) {
            let mut word = [0; 8];
            word.copy_from_slice(tail);
            self.0 = u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _length: usize) {}
}

/// The body as the history holds it: a buffer of its own, not much larger than the body. A body
/// that came in one chunk is a slice of its connection's read buffer, shared with it, and is
/// copied out, so the history does not pin that buffer; one gathered from several chunks is a
/// buffer of its own already, and is kept as it is rather than copied again. A copy goes into a
/// spare buffer it fits, if there is one (see [`Spares`]).
fn owned(body: Bytes, spares: &Spares) -> Bytes {
    let copy = |body: &[u8]| {
        spares
            .copy(body)
            .unwrap_or_else(|| Bytes::copy_from_slice(body))
    };
    match body.try_into_mut() {
        Ok(alone) if fits(alone.capacity(), alone.len()) => alone.freeze(),
        Ok(alone) => copy(&alone),
        Err(shared) => copy(&shared),
    }
}

/// Bodies at least this large dropped from the history keep their buffer for a new body; smaller
/// ones are freed, which the allocator's per-thread caches make cheap, after [`warm`] has read
/// them whole for the next body's copy.
const SPARE_MIN: usize = 4 * 1024;

/// The most buffers [`Spares`] holds: a few, so that memory the history no longer counts stays
/// small.
const SPARES: usize = 4;

/// The largest buffer [`Spares`] keeps (four of them are 1 MiB).
const SPARE_MAX: usize = 256 * 1024;

/// Buffers of large bodies the history has dropped, for the next bodies of about their size.
///
/// At 20 KB a body's `malloc` and `free` cost more than its copy: the allocator sorts a chunk of
/// that size into its bins and merges it with its neighbours, whose headers — in memory the
/// history last touched thousands of deliveries ago — miss the cache. A dropped body's buffer,
/// reused for the next body that fits it, skips both. A buffer is reused only for a body that
/// fills at least eight ninths of it, so the history never holds much more than its bodies.
/// The spares are only ever tried, never waited for: a thread that finds another at them uses
/// the allocator, so threads storing at once do not pass a lock between their cores for this.
#[derive(Debug, Default)]
struct Spares(Mutex<Vec<BytesMut>>);

impl Spares {
    /// `body` copied into a spare buffer it fits, if there is one.
    fn copy(&self, body: &[u8]) -> Option<Bytes> {
        if body.len() < SPARE_MIN {
            return None;
        }
        let mut spares = self.0.try_lock().ok()?;
        let fit = spares
            .iter()
            .position(|buf| fits(buf.capacity(), body.len()))?;
        let mut buf = spares.swap_remove(fit);
        drop(spares);
        buf.clear();
        buf.extend_from_slice(body);
        Some(buf.freeze())
    }

    /// Keeps the body's buffer of a record dropped from the history, if nothing else holds the
    /// record or its body and it is of a size worth keeping; drops the record either way.
    fn keep(&self, record: Arc<StoredDelivery>) {
        if !(SPARE_MIN..=SPARE_MAX).contains(&record.body.len()) {
            return;
        }
        let Ok(record) = Arc::try_unwrap(record) else {
            return;
        };
        let Ok(buf) = record.body.try_into_mut() else {
            return;
        };
        if let Ok(mut spares) = self.0.try_lock() {
            if spares.len() == SPARES {
                spares.remove(0);
            }
            spares.push(buf);
        }
    }
}

/// Whether a buffer of `capacity` bytes takes a body of `len` and not much more.
fn fits(capacity: usize, len: usize) -> bool {
    capacity >= len && capacity - len <= len / 8
}

#[derive(Debug)]
struct Entry {
    record: Arc<StoredDelivery>,
    /// The record's body length, for the byte count: taking an old delivery out of the history
    /// need not read its record, which is freed after the lock is let go.
    body_len: usize,
    work: Work,
}

/// Deliveries taken out of the history, freed after the store's lock is let go: their memory is
/// long out of the cache, and another thread storing a delivery need not wait while it is read
/// and given back. Mostly one per finished delivery, held without an allocation.
#[derive(Default)]
struct Evicted {
    first: Option<Entry>,
    more: Vec<Entry>,
}

impl Evicted {
    fn push(&mut self, entry: Entry) {
        if self.first.is_none() {
            self.first = Some(entry);
        } else {
            self.more.push(entry);
        }
    }

    /// Frees the deliveries as [`Drop`] does, keeping their large bodies' buffers in `spares`.
    fn release(mut self, spares: &Spares) {
        self.warm();
        for entry in self.first.take().into_iter().chain(self.more.drain(..)) {
            spares.keep(entry.record);
        }
    }

    /// Reads each record's buffers together before they are freed (see [`warm`]).
    fn warm(&self) {
        for entry in self.first.iter().chain(&self.more) {
            let settled: &[(i64, Job)] = match &entry.work {
                Work::Settled { jobs, .. } => jobs,
                Work::Open(_) => &[],
            };
            warm(&entry.record, settled);
        }
    }
}

impl Drop for Evicted {
    /// Reads each record's buffers together before freeing them (see [`warm`]).
    fn drop(&mut self) {
        self.warm();
    }
}

/// A delivery's jobs.
#[derive(Debug)]
enum Work {
    /// Some job has still to succeed: their ids, the jobs themselves in [`Inner::jobs`].
    Open(Vec<i64>),
    /// Every job succeeded (or none matched): the jobs, moved out of [`Inner::jobs`] when the
    /// last of them succeeded, while they were still in the cache. Dropping the delivery from the
    /// history later, when its memory is long cold, then need not find them in a table of every
    /// job; only a replay puts them back. `turn` is its place in [`Inner::finished`].
    Settled { turn: u64, jobs: Vec<(i64, Job)> },
}

impl Entry {
    /// The delivery's jobs, in the order they were created.
    fn jobs<'a>(&'a self, jobs: &'a Jobs) -> impl Iterator<Item = (i64, &'a Job)> + 'a {
        let (open, settled): (&[i64], &[(i64, Job)]) = match &self.work {
            Work::Open(ids) => (ids, &[]),
            Work::Settled { jobs, .. } => (&[], jobs),
        };
        open.iter()
            .filter_map(|&id| jobs.get(&id).map(|job| (id, job)))
            .chain(settled.iter().map(|(id, job)| (*id, job)))
    }
}

#[derive(Debug)]
struct Job {
    delivery: i64,
    handler: String,
    status: JobStatus,
    attempts: u32,
    max_attempts: u32,
    last_error: Option<String>,
    next_at: i64,
    lease_until: i64,
    order_key: Option<String>,
}

impl MemoryStore {
    /// How many finished deliveries the history holds unless told otherwise.
    pub const DEFAULT_KEEP: usize = 10_000;

    /// How many bytes of bodies the store holds before dropping finished deliveries, unless told
    /// otherwise: 64 MiB. (Ten thousand of GitHub's largest deliveries would be 250 GB.)
    pub const DEFAULT_KEEP_BYTES: usize = 64 * 1024 * 1024;

    /// An empty store keeping the last [`MemoryStore::DEFAULT_KEEP`] finished deliveries, within
    /// [`MemoryStore::DEFAULT_KEEP_BYTES`] of bodies.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping the last `deliveries` finished deliveries (at least one), within
    /// [`MemoryStore::DEFAULT_KEEP_BYTES`] of bodies unless [`MemoryStore::keeping_bytes`] says
    /// otherwise.
    pub fn keeping(deliveries: usize) -> Self {
        Self {
            inner: Mutex::default(),
            keep: deliveries.max(1),
            keep_bytes: Self::DEFAULT_KEEP_BYTES,
            digests: Digests::default(),
            spares: Spares::default(),
        }
    }

    /// The same store, dropping its oldest finished deliveries while the bodies held add up to
    /// more than `bytes` (the newest finished delivery and unfinished work stay regardless).
    #[must_use]
    pub fn keeping_bytes(mut self, bytes: usize) -> Self {
        self.keep_bytes = bytes;
        self
    }

    /// How many deliveries are finished (every handler succeeded, or none matched), counted a
    /// slice at a time.
    async fn finished_count(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        let mut from = Some(i64::MIN);
        while let Some(start) = from {
            let (finished, next) = self.lock()?.finished_slice(start);
            count += finished.len();
            from = next;
            tokio::task::yield_now().await;
        }
        Ok(count)
    }

    /// Drops the oldest `overflow` finished deliveries and every finished one received before
    /// `before_ms`, a slice at a time, oldest first; returns how many went.
    async fn purge_history(&self, overflow: usize, before_ms: i64) -> Result<u64, StoreError> {
        let (mut seen, mut removed) = (0, 0);
        let mut from = Some(i64::MIN);
        while let Some(start) = from {
            let mut evicted = Evicted::default();
            {
                let mut inner = self.lock()?;
                let (finished, next) = inner.finished_slice(start);
                from = next;
                for (id, received_at_ms) in finished {
                    let doomed = seen < overflow || received_at_ms < before_ms;
                    seen += 1;
                    if !doomed {
                        continue;
                    }
                    if let Some(entry) = inner.deliveries.remove(&id) {
                        inner.forget(&entry);
                        evicted.push(entry);
                        removed += 1;
                    }
                }
            }
            evicted.release(&self.spares);
            tokio::task::yield_now().await;
        }
        Ok(removed)
    }

    /// Drops the idempotency keys first seen before `before_ms` whose delivery is gone, one of
    /// the keys' maps at a time; returns how many went.
    async fn purge_keys(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut removed = 0;
        for shard in 0..SHARDS {
            {
                let mut guard = self.lock()?;
                let Inner {
                    keys, deliveries, ..
                } = &mut *guard;
                removed += keys.retain(shard, |(id, seen)| {
                    *seen >= before_ms || deliveries.contains_key(id)
                }) as u64;
            }
            tokio::task::yield_now().await;
        }
        Ok(removed)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError("memory store lock poisoned".into()))
    }
}

impl Inner {
    /// Whether an earlier job with the same order key is unfinished.
    fn blocked(&self, id: i64) -> bool {
        let Some(key) = self.jobs.get(&id).and_then(|j| j.order_key.as_ref()) else {
            return false;
        };
        self.jobs.iter().any(|(other, job)| {
            *other < id
                && job.order_key.as_ref() == Some(key)
                && !matches!(job.status, JobStatus::Succeeded | JobStatus::Dead)
        })
    }

    /// The finished deliveries among the [`PURGE_SLICE`] held from id `start` on, oldest first,
    /// with when each was received; and where the next slice starts, unless none is left.
    fn finished_slice(&self, start: i64) -> (Vec<(i64, i64)>, Option<i64>) {
        let mut finished = Vec::new();
        let (mut walked, mut last) = (0, start);
        for (&id, entry) in self.deliveries.range(start..).take(PURGE_SLICE) {
            (walked, last) = (walked + 1, id);
            if self.finished(entry) {
                finished.push((id, entry.record.received_at_ms));
            }
        }
        (finished, (walked == PURGE_SLICE).then_some(last + 1))
    }

    /// Whether a delivery is finished: every handler succeeded, or none matched.
    fn finished(&self, entry: &Entry) -> bool {
        let status = DeliveryStatus::from_jobs(entry.jobs(&self.jobs).map(|(_, j)| j.status));
        matches!(
            status,
            DeliveryStatus::Acknowledged | DeliveryStatus::Unhandled
        )
    }

    /// Settles a delivery whose every job has succeeded: its jobs move out of the table of open
    /// work into its entry, and it takes its turn in the history. Whether it did (not if some
    /// job has still to succeed, or it was settled already).
    fn settle(&mut self, delivery: i64) -> bool {
        let Some(entry) = self.deliveries.get_mut(&delivery) else {
            return false;
        };
        let Work::Open(ids) = &entry.work else {
            return false;
        };
        let succeeded = |id: &i64| {
            self.jobs
                .get(id)
                .is_some_and(|j| j.status == JobStatus::Succeeded)
        };
        if !ids.iter().all(succeeded) {
            return false;
        }
        let jobs = ids
            .iter()
            .filter_map(|&id| self.jobs.remove(&id).map(|job| (id, job)))
            .collect();
        entry.work = Work::Settled {
            turn: self.finished.push(delivery),
            jobs,
        };
        true
    }

    /// Puts a settled delivery's jobs back into the table of open work, for a replay.
    fn reopen(&mut self, delivery: i64) {
        let Some(entry) = self.deliveries.get_mut(&delivery) else {
            return;
        };
        let Work::Settled { jobs, .. } = &mut entry.work else {
            return;
        };
        let jobs = std::mem::take(jobs);
        entry.work = Work::Open(jobs.iter().map(|(id, _)| *id).collect());
        self.jobs.extend(jobs);
    }

    /// Takes the oldest finished deliveries beyond `keep` of them or `keep_bytes` of bodies held
    /// out of the history, with their jobs; the caller frees them once it has let go of the
    /// lock (see [`Evicted`]).
    #[must_use]
    fn evict(&mut self, keep: usize, keep_bytes: usize) -> Evicted {
        let mut evicted = Evicted::default();
        while self.finished.queue.len() > keep
            || (self.body_bytes > keep_bytes && self.finished.queue.len() > 1)
        {
            let Some((id, turn)) = self.finished.queue.pop_front() else {
                break;
            };
            if let Some(entry) = self.remove_if_finished(id, turn) {
                evicted.push(entry);
            }
        }
        evicted
    }

    /// Takes a delivery and its jobs out if it is settled still in the turn given (replayed
    /// since, it is not): the oldest entry, in memory not touched for a while, is looked up once.
    fn remove_if_finished(&mut self, id: i64, turn: u64) -> Option<Entry> {
        let std::collections::btree_map::Entry::Occupied(entry) = self.deliveries.entry(id) else {
            return None;
        };
        let Work::Settled { turn: its, .. } = &entry.get().work else {
            return None;
        };
        if *its != turn {
            return None;
        }
        let entry = entry.remove();
        self.forget(&entry);
        Some(entry)
    }

    /// Accounts for a delivery taken out of the history: its body's bytes, its open jobs.
    fn forget(&mut self, entry: &Entry) {
        self.body_bytes -= entry.body_len;
        if let Work::Open(ids) = &entry.work {
            for job in ids {
                self.jobs.remove(job);
            }
        }
    }

    fn summary(&self, entry: &Entry) -> DeliverySummary {
        let handlers: Vec<JobSummary> = entry
            .jobs(&self.jobs)
            .map(|(id, job)| JobSummary {
                id,
                name: job.handler.clone(),
                status: job.status,
                attempts: job.attempts,
                last_error: job.last_error.clone(),
                next_attempt_at_ms: (job.status == JobStatus::Retrying).then_some(job.next_at),
            })
            .collect();
        let r = &entry.record;
        DeliverySummary {
            id: r.id,
            delivery_id: r.delivery_id.clone(),
            endpoint: r.endpoint.clone(),
            event: r.event.clone(),
            status: DeliveryStatus::from_jobs(handlers.iter().map(|h| h.status)),
            received_at_ms: r.received_at_ms,
            handlers,
        }
    }
}

impl Store for MemoryStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            kind: "memory",
            durable: false,
        }
    }

    fn ingest(&self, mut new: NewDelivery) -> StoreFuture<'_, Ingest> {
        Box::pin(async move {
            // The body's copy (to memory the history freed long ago: 2 µs for 20 KB) and the
            // key's digest before the lock, so that threads storing at once wait for each other
            // only for the tables' updates. A duplicate pays for a copy it does not keep; it is
            // the rare case.
            let body = owned(std::mem::take(&mut new.body), &self.spares);
            let digest = self.digests.digest(&new.key);
            let mut guard = self.lock()?;
            let inner = &mut *guard;
            // One probe of the keys: a new key is looked for and its place kept in one go.
            let slot = match inner.keys.entry(digest) {
                hash_map::Entry::Occupied(seen) => {
                    return Ok(Ingest::Duplicate { id: seen.get().0 });
                }
                hash_map::Entry::Vacant(slot) => slot,
            };
            let id = next_id(&mut inner.next_id);
            let mut job_ids = Vec::with_capacity(new.jobs.len());
            for job in std::mem::take(&mut new.jobs) {
                let job_id = next_id(&mut inner.next_id);
                let (status, attempts, lease_until) = match job.claimed_for_ms {
                    Some(lease) => (
                        JobStatus::Running,
                        1,
                        new.received_at_ms.saturating_add(lease),
                    ),
                    None => (JobStatus::Pending, 0, 0),
                };
                if status == JobStatus::Pending {
                    inner.due.insert((new.received_at_ms, job_id));
                } else {
                    inner.leased.insert((lease_until, job_id));
                }
                inner.jobs.insert(
                    job_id,
                    Job {
                        delivery: id,
                        handler: job.handler,
                        status,
                        attempts,
                        max_attempts: job.max_attempts,
                        last_error: None,
                        next_at: new.received_at_ms,
                        lease_until,
                        order_key: job.order_key,
                    },
                );
                job_ids.push(job_id);
            }
            slot.insert((id, new.received_at_ms));
            let body_len = body.len();
            inner.body_bytes += body_len;
            let record = Arc::new(NewDelivery { body, ..new }.into_record(id));
            let work = if job_ids.is_empty() {
                Work::Settled {
                    turn: inner.finished.push(id),
                    jobs: Vec::new(),
                }
            } else {
                Work::Open(job_ids.clone())
            };
            inner.deliveries.insert(
                id,
                Entry {
                    record: record.clone(),
                    body_len,
                    work,
                },
            );
            let evicted = if job_ids.is_empty() {
                inner.evict(self.keep, self.keep_bytes)
            } else {
                Evicted::default()
            };
            drop(guard);
            evicted.release(&self.spares);
            Ok(Ingest::Stored {
                id,
                jobs: job_ids,
                record,
            })
        })
    }

    fn claim(&self, limit: usize, lease_ms: i64, now_ms: i64) -> StoreFuture<'_, Vec<ClaimedJob>> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            let mut ids = Vec::new();
            // Walk the due jobs in order, taking at most `limit` that no earlier job of their
            // order key holds back; only those are copied out.
            let picked: Vec<(i64, i64)> = inner
                .due
                .range(..=(now_ms, i64::MAX))
                .filter(|(_, id)| !inner.blocked(*id))
                .take(limit)
                .copied()
                .collect();
            for entry in picked {
                inner.due.remove(&entry);
                ids.push(entry.1);
            }
            while ids.len() < limit {
                match inner.leased.first().copied() {
                    Some((until, id)) if until <= now_ms => {
                        inner.leased.remove(&(until, id));
                        ids.push(id);
                    }
                    _ => break,
                }
            }
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                let lease_until = now_ms.saturating_add(lease_ms);
                let Some(job) = inner.jobs.get_mut(&id) else {
                    continue;
                };
                job.status = JobStatus::Running;
                job.attempts += 1;
                job.lease_until = lease_until;
                let (delivery, handler, attempt, max_attempts) = (
                    job.delivery,
                    job.handler.clone(),
                    job.attempts,
                    job.max_attempts,
                );
                inner.leased.insert((lease_until, id));
                if let Some(entry) = inner.deliveries.get(&delivery) {
                    claimed.push(ClaimedJob {
                        id,
                        delivery: entry.record.clone(),
                        handler,
                        attempt,
                        max_attempts,
                    });
                }
            }
            Ok(claimed)
        })
    }

    fn next_due(&self) -> StoreFuture<'_, Option<i64>> {
        Box::pin(async move {
            let inner = self.lock()?;
            let due = inner.due.first().map(|&(at, _)| at);
            let lease = inner.leased.first().map(|&(at, _)| at);
            Ok(due.into_iter().chain(lease).min())
        })
    }

    fn finish(&self, id: i64, result: JobResult, _now_ms: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            let Some(job) = inner.jobs.get_mut(&id) else {
                if id <= inner.next_id {
                    // Its delivery is settled (a late result from a run whose lease had
                    // expired, after another run succeeded) or gone from the history.
                    return Ok(());
                }
                return Err(StoreError(format!("no job {id}")));
            };
            let lease = (job.lease_until, id);
            let delivery = job.delivery;
            let mut requeue = None;
            let succeeded = matches!(result, JobResult::Succeeded);
            match result {
                JobResult::Succeeded => {
                    job.status = JobStatus::Succeeded;
                }
                JobResult::Failed { error, retry_at_ms } => {
                    job.last_error = Some(error);
                    match retry_at_ms {
                        Some(at) => {
                            job.status = JobStatus::Retrying;
                            job.next_at = at;
                            requeue = Some((at, id));
                        }
                        None => job.status = JobStatus::Dead,
                    }
                }
            }
            inner.leased.remove(&lease);
            if let Some(due) = requeue {
                inner.due.insert(due);
            }
            if succeeded && inner.settle(delivery) {
                let evicted = inner.evict(self.keep, self.keep_bytes);
                drop(inner);
                evicted.release(&self.spares);
            }
            Ok(())
        })
    }

    fn replay(
        &self,
        delivery: i64,
        jobs: Vec<NewJob>,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreFuture<'_, Vec<i64>> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            if !inner.deliveries.contains_key(&delivery) {
                return Err(StoreError(format!("no delivery {delivery}")));
            }
            let until = now_ms.saturating_add(lease_ms);
            inner.reopen(delivery);
            let mut ids = Vec::with_capacity(jobs.len());
            for new in jobs {
                let existing = inner.deliveries[&delivery]
                    .jobs(&inner.jobs)
                    .find(|(_, j)| j.handler == new.handler)
                    .map(|(id, _)| id);
                let id = match existing {
                    Some(id) => id,
                    None => {
                        let id = next_id(&mut inner.next_id);
                        inner.jobs.insert(
                            id,
                            Job {
                                delivery,
                                handler: new.handler.clone(),
                                status: JobStatus::Pending,
                                attempts: 0,
                                max_attempts: new.max_attempts,
                                last_error: None,
                                next_at: now_ms,
                                lease_until: 0,
                                order_key: None,
                            },
                        );
                        if let Some(Entry {
                            work: Work::Open(ids),
                            ..
                        }) = inner.deliveries.get_mut(&delivery)
                        {
                            ids.push(id);
                        }
                        id
                    }
                };
                let Some(job) = inner.jobs.get_mut(&id) else {
                    continue;
                };
                let (old_due, old_lease) = ((job.next_at, id), (job.lease_until, id));
                job.status = JobStatus::Running;
                job.attempts = 1;
                job.lease_until = until;
                inner.due.remove(&old_due);
                inner.leased.remove(&old_lease);
                inner.leased.insert((until, id));
                ids.push(id);
            }
            // Replayed to no handler, it is finished again.
            inner.settle(delivery);
            Ok(ids)
        })
    }

    fn purge(&self, policy: Retention) -> StoreFuture<'_, (u64, u64)> {
        Box::pin(async move {
            // In slices, each under the lock on its own and with a yield after it: keys are
            // kept for days, and one walk over a million of them held every request in flight
            // (and, on one worker thread, the whole runtime) for milliseconds, once a minute.
            let overflow = match policy.keep_at_most {
                Some(keep) => {
                    let keep = usize::try_from(keep).unwrap_or(usize::MAX);
                    self.finished_count().await?.saturating_sub(keep)
                }
                None => 0,
            };
            let deliveries = self
                .purge_history(overflow, policy.history_before_ms)
                .await?;
            let keys = self.purge_keys(policy.keys_before_ms).await?;
            Ok((deliveries, keys))
        })
    }

    fn release<'a>(&'a self, jobs: &'a [i64], now_ms: i64) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            for &id in jobs {
                let Some(job) = inner.jobs.get_mut(&id) else {
                    continue;
                };
                if job.status != JobStatus::Running {
                    continue;
                }
                let lease = (job.lease_until, id);
                job.status = JobStatus::Retrying;
                job.next_at = now_ms;
                job.lease_until = 0;
                inner.leased.remove(&lease);
                inner.due.insert((now_ms, id));
            }
            Ok(())
        })
    }

    fn queue_depth(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let inner = self.lock()?;
            let open = inner
                .jobs
                .values()
                .filter(|j| {
                    matches!(
                        j.status,
                        JobStatus::Pending | JobStatus::Running | JobStatus::Retrying
                    )
                })
                .count();
            Ok(open as u64)
        })
    }

    fn put_connection(&self, connection: Connection) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.lock()?
                .connections
                .insert(connection.name.clone(), connection);
            Ok(())
        })
    }

    fn connection<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Connection>> {
        Box::pin(async move { Ok(self.lock()?.connections.get(name).cloned()) })
    }

    fn connections(&self) -> StoreFuture<'_, Vec<Connection>> {
        Box::pin(async move { Ok(self.lock()?.connections.values().cloned().collect()) })
    }

    fn delete_connection<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move { Ok(self.lock()?.connections.remove(name).is_some()) })
    }

    fn requeue_dead(&self, limit: usize, now_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            let dead: Vec<i64> = inner
                .jobs
                .iter()
                .filter(|(_, j)| j.status == JobStatus::Dead)
                .map(|(id, _)| *id)
                .take(limit)
                .collect();
            for id in &dead {
                if let Some(job) = inner.jobs.get_mut(id) {
                    job.status = JobStatus::Pending;
                    job.attempts = 0;
                    job.next_at = now_ms;
                }
                inner.due.insert((now_ms, *id));
            }
            Ok(dead.len() as u64)
        })
    }

    fn renew(&self, id: i64, lease_ms: i64, now_ms: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            let until = now_ms.saturating_add(lease_ms);
            let Some(job) = inner.jobs.get_mut(&id) else {
                return Ok(());
            };
            if job.status != JobStatus::Running {
                return Ok(());
            }
            let old = (job.lease_until, id);
            job.lease_until = until;
            inner.leased.remove(&old);
            inner.leased.insert((until, id));
            Ok(())
        })
    }

    fn list<'a>(&'a self, query: &'a DeliveryQuery) -> StoreFuture<'a, Vec<DeliverySummary>> {
        Box::pin(async move {
            let inner = self.lock()?;
            let upper = query.before.unwrap_or(i64::MAX);
            let summaries = inner
                .deliveries
                .range(..upper)
                .rev()
                .filter(|(_, e)| {
                    let r = &e.record;
                    query.endpoint.as_ref().is_none_or(|v| *v == r.endpoint)
                        && query.event.as_ref().is_none_or(|v| *v == r.event)
                        && query
                            .delivery_id
                            .as_ref()
                            .is_none_or(|v| *v == r.delivery_id)
                        && query
                            .received_since_ms
                            .is_none_or(|t| r.received_at_ms >= t)
                        && query.received_until_ms.is_none_or(|t| r.received_at_ms < t)
                })
                .map(|(_, e)| inner.summary(e))
                .filter(|s| query.status.is_none_or(|status| status == s.status))
                .take(query.limit)
                .collect();
            Ok(summaries)
        })
    }

    fn get(&self, id: i64) -> StoreFuture<'_, Option<(DeliverySummary, Arc<StoredDelivery>)>> {
        Box::pin(async move {
            let inner = self.lock()?;
            Ok(inner
                .deliveries
                .get(&id)
                .map(|e| (inner.summary(e), e.record.clone())))
        })
    }
}

/// The next id from the store's one counter (deliveries and jobs share it).
fn next_id(counter: &mut i64) -> i64 {
    *counter += 1;
    *counter
}

/// Reads the first byte of every buffer an old delivery's record owns, and every cache line of
/// a small body, before it is dropped. The history's oldest record has long left the cache, and
/// each `free` reads its chunk's header: one after another, the drop waits for a dozen misses in
/// a row. Independent reads issued together wait for them at once. The allocator's per-thread
/// cache hands the chunks it takes back to the next allocations of their size — the next
/// delivery's body is copied into this one's buffer — so the body's lines read here are the ones
/// that copy writes; left cold, each of its stores would wait for its line instead.
fn warm(r: &StoredDelivery, jobs: &[(i64, Job)]) {
    let (text, ends) = r.headers.buffers();
    let mut sum = [
        r.key.as_bytes(),
        r.endpoint.as_bytes(),
        r.event.as_bytes(),
        r.delivery_id.as_bytes(),
        text,
        &r.body,
    ]
    .iter()
    .fold(0u8, |sum, b| {
        sum.wrapping_add(b.first().copied().unwrap_or(0))
    });
    sum = sum.wrapping_add(ends.first().map_or(0, |e| e.0 as u8));
    // Larger bodies go to the spares, whose copy the processor streams on its own.
    if r.body.len() < SPARE_MIN {
        for line in r.body.iter().step_by(64).skip(1) {
            sum = sum.wrapping_add(*line);
        }
    }
    for (_, job) in jobs {
        sum = sum.wrapping_add(job.handler.as_bytes().first().copied().unwrap_or(0));
    }
    std::hint::black_box(sum);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::{
        BuildHasherDefault, DeliveryQuery, DigestHasher, Digests, IdHasher, Ingest, Keys,
        MemoryStore, NewDelivery, Retention, SHARDS, Spares, Store, owned,
    };
    use crate::store::HeaderList;

    fn delivery(key: &str, received_at_ms: i64) -> NewDelivery {
        NewDelivery {
            key: key.to_owned(),
            endpoint: "/hooks".to_owned(),
            connection: None,
            event: "push".to_owned(),
            delivery_id: key.to_owned(),
            headers: HeaderList::new(),
            body: Bytes::from_static(b"{}"),
            received_at_ms,
            jobs: Vec::new(),
        }
    }

    /// A purge walks the history and every key kept for days; on a runtime with one thread,
    /// walking them in one go held up every request in flight until it was done. It takes them
    /// a slice at a time and lets other tasks run in between: a delivery arriving meanwhile is
    /// stored before the purge ends, and the purge still takes what it should.
    #[tokio::test(flavor = "current_thread")]
    async fn a_purge_lets_deliveries_in_between_its_slices() {
        let store = Arc::new(MemoryStore::keeping(3_000));
        for i in 0..5_000 {
            store
                .ingest(delivery(&format!("old {i}"), 1_000))
                .await
                .unwrap();
        }
        let purging = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .purge(Retention {
                        history_before_ms: 2_000,
                        keep_at_most: None,
                        keys_before_ms: 2_000,
                    })
                    .await
            }
        });
        tokio::task::yield_now().await;
        assert!(!purging.is_finished(), "the purge is under way");
        let late = store.ingest(delivery("late", 3_000)).await.unwrap();
        assert!(matches!(late, Ingest::Stored { .. }));
        assert!(
            !purging.is_finished(),
            "stored while the purge was under way"
        );
        let (deliveries, keys) = purging.await.unwrap().unwrap();
        // The 3,000 old deliveries the history held went, with all 5,000 old keys; the late
        // delivery and its key stay.
        assert_eq!((deliveries, keys), (3_000, 5_000));
        let query = DeliveryQuery {
            limit: 10,
            ..DeliveryQuery::default()
        };
        let held = store.list(&query).await.unwrap();
        assert_eq!(held.len(), 1);
        assert!(matches!(
            store.ingest(delivery("late", 4_000)).await.unwrap(),
            Ingest::Duplicate { .. }
        ));
    }

    /// Counted and dropped a slice at a time, a history longer than one slice still keeps
    /// exactly its newest `keep_at_most` finished deliveries.
    #[tokio::test(flavor = "current_thread")]
    async fn a_purge_keeps_the_newest_deliveries_across_slices() {
        let store = MemoryStore::new();
        for i in 0..2_500 {
            store
                .ingest(delivery(&format!("d {i}"), 1_000))
                .await
                .unwrap();
        }
        let policy = Retention {
            history_before_ms: 0,
            keep_at_most: Some(100),
            keys_before_ms: 0,
        };
        assert_eq!(store.purge(policy).await.unwrap(), (2_400, 0));
        let query = DeliveryQuery {
            limit: 1_000,
            ..DeliveryQuery::default()
        };
        let held = store.list(&query).await.unwrap();
        let mut ids: Vec<&str> = held.iter().map(|d| d.delivery_id.as_str()).collect();
        ids.sort_by_key(|id| id[2..].parse::<u32>().unwrap());
        let newest: Vec<String> = (2_400..2_500).map(|i| format!("d {i}")).collect();
        assert_eq!(ids, newest);
    }

    /// The history keeps a body gathered into a buffer of its own as it is, and copies out one
    /// that is a slice of a larger buffer — shared with the connection's reads, or alone in it
    /// once the connection is gone — so it never pins more memory than the body's.
    #[test]
    fn the_history_copies_a_body_only_when_it_is_part_of_a_larger_buffer() {
        let mut gathered = bytes::BytesMut::with_capacity(20_000);
        gathered.extend_from_slice(&[1; 20_000]);
        let gathered = gathered.freeze();
        let at = gathered.as_ptr();
        let kept = owned(gathered, &Spares::default());
        assert_eq!(kept.as_ptr(), at, "a buffer of its own is not copied");
        assert_eq!(kept, vec![1u8; 20_000]);

        let mut read_buffer = bytes::BytesMut::with_capacity(64 * 1024);
        read_buffer.extend_from_slice(&[2; 3_000]);
        let read_buffer = read_buffer.freeze();
        let slice = read_buffer.slice(100..1_100);
        let at = slice.as_ptr();
        let kept = owned(slice.clone(), &Spares::default());
        assert_ne!(kept.as_ptr(), at, "a slice still shared is copied");
        assert_eq!(kept, slice);
        drop(read_buffer);
        let kept = owned(slice, &Spares::default());
        assert_ne!(
            kept.as_ptr(),
            at,
            "a slice alone in a larger buffer is copied"
        );
        assert_eq!(kept, vec![2u8; 1_000]);
    }

    /// Bodies go into buffers that held bodies dropped from the history (see [`Spares`]), and no
    /// body ever changes under a reader: each held body reads back as received, and a record
    /// still held elsewhere — by a handler run, say — keeps its own.
    #[tokio::test(flavor = "current_thread")]
    async fn no_body_changes_when_the_history_reuses_buffers() {
        let store = MemoryStore::keeping(3);
        // A connection's read buffer, each body a slice of it, so the history copies it out.
        let read = |fill: u8, len: usize| {
            let mut buf = bytes::BytesMut::with_capacity(len + 512);
            buf.extend_from_slice(&vec![fill; len + 512]);
            buf.freeze().slice(256..256 + len)
        };
        let ingest = |key: String, body: Bytes| {
            let mut new = delivery(&key, 1_000);
            new.body = body;
            store.ingest(new)
        };
        let Ingest::Stored { record: held, .. } =
            ingest("0".into(), read(0, 20_000)).await.unwrap()
        else {
            panic!("stored")
        };
        for i in 1..40u8 {
            // Sizes vary a little, as real deliveries' do: some fit a spare, some do not.
            let len = 19_000 + usize::from(i % 5) * 500;
            let Ingest::Stored { id, record, .. } =
                ingest(i.to_string(), read(i, len)).await.unwrap()
            else {
                panic!("stored")
            };
            drop(record);
            let (_, stored) = store.get(id).await.unwrap().unwrap();
            assert_eq!(
                stored.body,
                vec![i; len],
                "delivery {i} reads back as received"
            );
        }
        assert_eq!(
            held.body,
            vec![0; 20_000],
            "a record held elsewhere keeps its body"
        );
        let query = DeliveryQuery {
            limit: 10,
            ..DeliveryQuery::default()
        };
        let listed = store.list(&query).await.unwrap();
        assert_eq!(listed.len(), 3);
        for summary in listed {
            let (_, stored) = store.get(summary.id).await.unwrap().unwrap();
            let fill = summary.delivery_id.parse::<u8>().unwrap();
            assert!(
                stored.body.iter().all(|&b| b == fill),
                "{fill} reads back as received"
            );
        }
    }

    /// A dropped body's buffer is taken by the next body that fills most of it — not by one
    /// much smaller, which would pin several times its size, nor by one too large — and a record
    /// something else still holds lends nothing.
    #[test]
    fn spare_buffers_go_to_bodies_that_fit_them() {
        let spares = Spares::default();
        let record = |body: Bytes| {
            let mut new = delivery("k", 0);
            new.body = body;
            Arc::new(new.into_record(1))
        };
        let dropped = record(Bytes::from(vec![1; 20_000]));
        let at = dropped.body.as_ptr();
        spares.keep(dropped);
        assert!(spares.copy(&[2; 5_000]).is_none(), "too small for it");
        assert!(spares.copy(&[2; 20_001]).is_none(), "too large for it");
        let copied = spares.copy(&[3; 18_000]).expect("fits");
        assert_eq!(copied.as_ptr(), at, "the dropped body's buffer");
        assert_eq!(copied, vec![3; 18_000]);
        assert!(spares.copy(&[3; 18_000]).is_none(), "lent once");

        let held = record(Bytes::from(vec![4; 20_000]));
        spares.keep(held.clone());
        assert!(
            spares.copy(&[5; 20_000]).is_none(),
            "a record held elsewhere lends nothing"
        );
        assert_eq!(held.body, vec![4; 20_000]);

        spares.keep(record(Bytes::from(vec![6; 1_000])));
        assert!(
            spares.copy(&[7; 1_000]).is_none(),
            "small bodies are left to the allocator"
        );
    }

    /// The sharded keys answer as one map would: every key found under its own value, the count
    /// across shards, and retention applied to all of them.
    #[test]
    fn keys_in_shards_behave_as_one_map() {
        let mut keys = Keys::default();
        let digests = Digests::default();
        let n = 10_000;
        for i in 0..n {
            keys.insert(digests.digest(&format!("key {i}")), (i, i * 10));
        }
        assert!(keys.shards.iter().all(|shard| !shard.is_empty()));
        assert_eq!(keys.len(), 10_000);
        for i in 0..n {
            let digest = digests.digest(&format!("key {i}"));
            assert_eq!(keys.get(&digest), Some(&(i, i * 10)));
        }
        assert_eq!(keys.get(&digests.digest("key 10000")), None);
        let removed: usize = (0..SHARDS)
            .map(|shard| keys.retain(shard, |&(id, _)| id % 2 == 0))
            .sum();
        assert_eq!((removed, keys.len()), (5_000, 5_000));
        assert_eq!(keys.get(&digests.digest("key 3")), None);
        assert_eq!(keys.get(&digests.digest("key 4")), Some(&(4, 40)));
    }

    /// A key's digest depends on the store's secret, so a sender cannot aim keys at one place of
    /// a map; within a map, a digest's hash is its bytes 8 to 15 (the first byte, which picked
    /// the map, is the same for all of its keys).
    #[test]
    fn key_digests_are_keyed_and_hashed_by_their_own_bytes() {
        use std::hash::BuildHasher;
        let (one, other) = (Digests::default(), Digests::default());
        assert_eq!(one.digest("a key"), one.digest("a key"));
        assert_ne!(one.digest("a key"), other.digest("a key"));
        assert_ne!(one.digest("a key"), one.digest("another key"));
        let digest = one.digest("a key");
        let hasher = BuildHasherDefault::<DigestHasher>::default();
        assert_eq!(
            hasher.hash_one(digest),
            u64::from_le_bytes(digest[8..].try_into().unwrap())
        );
    }

    #[test]
    fn consecutive_job_ids_spread_over_the_table() {
        use std::hash::BuildHasher;
        let hasher = BuildHasherDefault::<IdHasher>::default();
        let hashes: Vec<u64> = (1..=65_536_i64).map(|id| hasher.hash_one(id)).collect();
        // Every id its own position in a table of 65,536 buckets (the low bits)…
        let positions: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 0xFFFF).collect();
        assert_eq!(positions.len(), 65_536);
        // …and every value of the 7 top bits hashbrown compares while probing, evenly.
        let mut tags = [0_u32; 128];
        for h in &hashes {
            tags[usize::try_from(h >> 57).unwrap()] += 1;
        }
        assert!(tags.iter().all(|&n| (384..=640).contains(&n)), "{tags:?}");
    }
}
