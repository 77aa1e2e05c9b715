//! The app: builder, router, workers, serving with graceful shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use tokio::sync::{Notify, watch};

use crate::__private::{Registered, Registration};
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::extract::StateMap;
use crate::registry::{self, EndpointRt, GeneratedSecret, HandlerRt, SecretLookup};
use crate::store::{MemoryStore, Store};
use crate::{admin, pipeline, worker};

/// The default listening address of [`App::serve`].
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// How long finished deliveries stay in the history by default (three days).
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(3 * 24 * 3600);

/// How long an idempotency key outlives its purged delivery by default (seven days; seed 002's
/// `idempotency_ttl_seconds`). It must be at least the history window.
pub const DEFAULT_DEDUP_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The store of an app configured from the environment without `HOOKSMITH_STORE`.
pub const DEFAULT_STORE: &str = "sqlite:hooksmith.db";

/// Tunables of the runtime.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) lease_ms: i64,
    pub(crate) concurrency: usize,
    pub(crate) shutdown_grace: Duration,
    pub(crate) public_url: Option<String>,
    pub(crate) history: Duration,
    pub(crate) history_max: Option<u64>,
    pub(crate) dedup_ttl: Duration,
    pub(crate) purge_every: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) body_idle_timeout: Duration,
    pub(crate) body_deadline: Duration,
    pub(crate) header_read_timeout: Duration,
}

impl Config {
    /// What to purge now.
    pub(crate) fn retention(&self, now_ms: i64) -> crate::store::Retention {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        crate::store::Retention {
            history_before_ms: now_ms.saturating_sub(ms(self.history)),
            keep_at_most: self.history_max,
            keys_before_ms: now_ms.saturating_sub(ms(self.dedup_ttl)),
        }
    }
}

/// What requests and workers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) endpoints: Vec<Arc<EndpointRt>>,
    pub(crate) handlers: HashMap<&'static str, Arc<HandlerRt>>,
    pub(crate) state: Arc<StateMap>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Config,
    pub(crate) wake: Arc<Notify>,
    /// This instance's worker slots.
    pub(crate) slots: Arc<worker::Slots>,
    pub(crate) admin_token: Option<crate::scheme::Secret>,
    pub(crate) tenants: crate::tenants::Tenants,
    pub(crate) transitions: tokio::sync::broadcast::Sender<crate::observe::Transition>,
    /// Whether [`App::subscribe`] was ever called: [`Shared::publish`] skips the channel until then.
    pub(crate) subscribed: std::sync::atomic::AtomicBool,
    pub(crate) in_flight: InFlight,
}

/// Requests being handled, against the instance's cap.
#[derive(Debug, Default)]
pub(crate) struct InFlight(std::sync::atomic::AtomicUsize);

/// One request's place; dropping it frees the place.
pub(crate) struct Slot<'a>(&'a InFlight);

impl InFlight {
    /// A place, or `None` when `cap` requests are already in flight.
    pub(crate) fn enter(&self, cap: usize) -> Option<Slot<'_>> {
        use std::sync::atomic::Ordering;
        let previous = self.0.fetch_add(1, Ordering::AcqRel);
        if previous >= cap {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Shared {
    pub(crate) fn wake_workers(&self) {
        self.wake.notify_one();
    }

    /// Publishes a transition that is already stored (or, for a rejection, final).
    pub(crate) fn publish(
        &self,
        endpoint: &str,
        delivery_id: &str,
        record_id: Option<i64>,
        kind: impl FnOnce() -> crate::observe::TransitionKind,
    ) {
        // Nothing is built unless someone listens; until someone has subscribed, not even the
        // channel's lock is taken to count them.
        if self.subscribed.load(std::sync::atomic::Ordering::Acquire)
            && self.transitions.receiver_count() > 0
        {
            let _ = self.transitions.send(crate::observe::Transition {
                endpoint: endpoint.to_owned(),
                delivery_id: delivery_id.to_owned(),
                record_id,
                kind: kind(),
                at_ms: self.clock.now_ms(),
            });
        }
    }
}

/// Builds an [`App`]: handlers, secrets, store, state. Start from [`App::builder`].
#[must_use]
pub struct AppBuilder {
    registrations: Vec<Registration>,
    collect: bool,
    vars: HashMap<String, String>,
    read_env: bool,
    store: Option<Arc<dyn Store>>,
    store_url: Option<String>,
    state: StateMap,
    clock: Arc<dyn Clock>,
    dev_secrets: bool,
    admin_token: Option<String>,
    addr: Option<String>,
    disabled: Vec<String>,
    config: Config,
    file: Result<crate::config_file::ConfigFile, String>,
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("registrations", &self.registrations.len())
            .field("collect", &self.collect)
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Default for AppBuilder {
    fn default() -> Self {
        Self {
            registrations: Vec::new(),
            collect: true,
            vars: HashMap::new(),
            read_env: true,
            store: None,
            store_url: None,
            state: StateMap::new(),
            clock: Arc::new(SystemClock),
            dev_secrets: false,
            admin_token: None,
            addr: None,
            disabled: Vec::new(),
            file: Ok(crate::config_file::ConfigFile::default()),
            config: Config {
                lease_ms: 5 * 60 * 1000,
                concurrency: 256,
                shutdown_grace: Duration::from_secs(30),
                public_url: None,
                history: DEFAULT_HISTORY,
                history_max: None,
                dedup_ttl: DEFAULT_DEDUP_TTL,
                purge_every: Duration::from_secs(60),
                max_in_flight: 1024,
                body_idle_timeout: Duration::from_secs(10),
                body_deadline: Duration::from_secs(60),
                header_read_timeout: Duration::from_secs(10),
            },
        }
    }
}

impl AppBuilder {
    /// Registers a `#[webhook]` handler explicitly, by the name of its function:
    /// `.handler::<pr_opened>()`. Use it where `inventory` cannot collect (see the crate docs);
    /// a handler registered both ways counts once.
    pub fn handler<H: Registered>(mut self) -> Self {
        self.registrations.push(H::REGISTRATION);
        self
    }

    /// Uses only the handlers given with [`AppBuilder::handler`], not every `#[webhook]` linked
    /// into the binary.
    pub fn only_explicit_handlers(mut self) -> Self {
        self.collect = false;
        self
    }

    /// Sets a configuration variable (a secret's variable, `HOOKSMITH_*`) as if it were in the
    /// environment; it wins over the environment.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Reads nothing from the process environment: only [`AppBuilder::var`] values count.
    pub fn ignore_env(mut self) -> Self {
        self.read_env = false;
        self
    }

    /// The store; wins over `HOOKSMITH_STORE`. Without either, [`MemoryStore`].
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A value handlers take as `State<S>`, looked up by type.
    pub fn state<S: Clone + Send + Sync + 'static>(mut self, value: S) -> Self {
        self.state.insert(value);
        self
    }

    /// The clock used for timestamps, retries and leases.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Development mode: a secret whose variable is unset is generated and printed once, loudly,
    /// with a ready-to-paste command, instead of stopping the app. Never use it in production.
    pub fn dev_secrets(mut self, enabled: bool) -> Self {
        self.dev_secrets = enabled;
        self
    }

    /// Mounts the admin API under `/admin`, behind `Authorization: Bearer <token>`.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// The address [`App::serve`] listens on (default [`DEFAULT_ADDR`]).
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = Some(addr.into());
        self
    }

    /// Answers 404 on this endpoint path without a rebuild (`HOOKSMITH_DISABLED` lists paths too).
    pub fn disable(mut self, path: impl Into<String>) -> Self {
        self.disabled.push(path.into());
        self
    }

    /// How many handler runs may be in flight at once (default 256). It is also the most jobs one
    /// claim takes from the store: on a durable store each claim waits for a commit, so a small
    /// number caps how many handlers finish per second.
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.config.concurrency = jobs.max(1);
        self
    }

    /// How long a claimed job's lease lasts before another worker may run it (default 5 min).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1);
        self
    }

    /// Reads per-endpoint and per-handler settings from a `hooksmith.toml` (see the guide's
    /// Operations chapter); `HOOKSMITH_CONFIG` names it too, and `hooksmith.toml` in the working
    /// directory is read when present. An unreadable file, an unknown key, or a path or handler
    /// the app does not have stops the app.
    pub fn config_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        let path = path.as_ref();
        let name = path.display().to_string();
        self.file = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {name}: {e}"))
            .and_then(|text| crate::config_file::ConfigFile::parse(&name, &text));
        self
    }

    /// How long finished (`acknowledged`, `unhandled`) deliveries stay in the history (default
    /// [`DEFAULT_HISTORY`]); pending, retrying and dead work is never purged.
    pub fn history(mut self, keep: Duration) -> Self {
        self.config.history = keep;
        self
    }

    /// Keeps at most this many finished deliveries (seed 003's `event_history_size`). Without it
    /// the durable stores cap history by age only; the `memory` store keeps at most
    /// [`MemoryStore::DEFAULT_KEEP`].
    pub fn history_max(mut self, deliveries: u64) -> Self {
        self.config.history_max = Some(deliveries.max(1));
        self
    }

    /// How long de-duplication remembers a delivery id (default [`DEFAULT_DEDUP_TTL`]); at least
    /// the history window, or the app refuses to start.
    pub fn dedup_ttl(mut self, ttl: Duration) -> Self {
        self.config.dedup_ttl = ttl;
        self
    }

    /// How often old history is purged (default every minute).
    pub fn purge_every(mut self, every: Duration) -> Self {
        self.config.purge_every = every;
        self
    }

    /// How many requests may be in flight at once (default 1,024); past it, requests are answered
    /// 503 with `Retry-After` at once instead of queueing (`HOOKSMITH_MAX_IN_FLIGHT`).
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.config.max_in_flight = requests.max(1);
        self
    }

    /// How long a client may take to send its request line and headers (default 10 s); a slower
    /// one is disconnected.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.config.header_read_timeout = timeout;
        self
    }

    /// The longest wait between two chunks of a body, and for the whole body (defaults 10 s and
    /// 60 s); a slower client is answered 408.
    pub fn body_timeouts(mut self, idle: Duration, total: Duration) -> Self {
        self.config.body_idle_timeout = idle;
        self.config.body_deadline = total;
        self
    }

    /// How long shutdown waits for running handlers (default 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// The public base URL providers call (`https://hooks.example.com`), for schemes that sign
    /// the URL (Twilio) when a proxy sits in front; also read from `HOOKSMITH_PUBLIC_URL`.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.config.public_url = Some(url.into());
        self
    }

    /// Reads `HOOKSMITH_ADDR`, `HOOKSMITH_STORE` (default [`DEFAULT_STORE`]),
    /// `HOOKSMITH_ADMIN_TOKEN`, `HOOKSMITH_DISABLED`, `HOOKSMITH_PUBLIC_URL` and
    /// `HOOKSMITH_LEASE_MS`.
    pub fn from_env(mut self) -> Result<Self, Error> {
        match self.lookup("HOOKSMITH_CONFIG") {
            Some(path) => self = self.config_file(path),
            None if std::path::Path::new("hooksmith.toml").exists() => {
                self = self.config_file("hooksmith.toml")
            }
            None => {}
        }
        let seconds = |this: &Self, name: &str| -> Result<Option<u64>, Error> {
            this.lookup(name)
                .map(|v| {
                    v.parse::<u64>().map_err(|_| {
                        Error::Config(vec![format!("{name}=`{v}` is not a whole number")])
                    })
                })
                .transpose()
        };
        if let Some(secs) = seconds(&self, "HOOKSMITH_HISTORY_SECS")? {
            self.config.history = Duration::from_secs(secs);
        }
        if let Some(secs) = seconds(&self, "HOOKSMITH_DEDUP_SECS")? {
            self.config.dedup_ttl = Duration::from_secs(secs);
        }
        if let Some(max) = seconds(&self, "HOOKSMITH_HISTORY_MAX")? {
            self.config.history_max = Some(max.max(1));
        }
        if let Some(max) = seconds(&self, "HOOKSMITH_MAX_IN_FLIGHT")? {
            self.config.max_in_flight = usize::try_from(max).unwrap_or(usize::MAX).max(1);
        }
        if let Some(grace) = self.lookup("HOOKSMITH_SHUTDOWN_GRACE_MS") {
            let ms: u64 = grace.parse().map_err(|_| {
                Error::Config(vec![format!(
                    "HOOKSMITH_SHUTDOWN_GRACE_MS=`{grace}` is not a whole number of milliseconds"
                )])
            })?;
            self.config.shutdown_grace = Duration::from_millis(ms);
        }
        if let Some(lease) = self.lookup("HOOKSMITH_LEASE_MS") {
            let ms: i64 = lease.parse().ok().filter(|ms| *ms > 0).ok_or_else(|| {
                Error::Config(vec![format!(
                    "HOOKSMITH_LEASE_MS=`{lease}` is not a positive number of milliseconds"
                )])
            })?;
            self.config.lease_ms = ms;
        }
        if let Some(url) = self
            .lookup("HOOKSMITH_PUBLIC_URL")
            .filter(|u| !u.is_empty())
        {
            self.config.public_url = Some(url);
        }
        if let Some(addr) = self.lookup("HOOKSMITH_ADDR") {
            self.addr = Some(addr);
        }
        if let Some(token) = self
            .lookup("HOOKSMITH_ADMIN_TOKEN")
            .filter(|t| !t.is_empty())
        {
            self.admin_token = Some(token);
        }
        if let Some(paths) = self.lookup("HOOKSMITH_DISABLED") {
            self.disabled.extend(
                paths
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
            );
        }
        // The durable embedded store is the default of an app configured from the environment.
        self.store_url = Some(
            self.lookup("HOOKSMITH_STORE")
                .unwrap_or_else(|| DEFAULT_STORE.to_owned()),
        );
        Ok(self)
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned().or_else(|| {
            if self.read_env {
                std::env::var(name).ok()
            } else {
                None
            }
        })
    }

    /// Validates everything and starts the workers. Must run inside a Tokio runtime.
    pub fn build(self) -> Result<App, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        crate::telemetry::install();
        if self.config.dedup_ttl < self.config.history {
            return Err(Error::Config(vec![format!(
                "de-duplication must remember deliveries at least as long as the history keeps them: the idempotency TTL ({} s) is shorter than the history ({} s); raise HOOKSMITH_DEDUP_SECS or lower HOOKSMITH_HISTORY_SECS",
                self.config.dedup_ttl.as_secs(),
                self.config.history.as_secs()
            )]));
        }
        let mut registrations = self.registrations.clone();
        if self.collect {
            registrations.extend(inventory::iter::<Registration>.into_iter().copied());
        }
        let var = |name: &str| self.lookup(name);
        let lookup = SecretLookup {
            var: &var,
            generate_missing: self.dev_secrets,
        };
        let file = self.file.clone().map_err(|e| Error::Config(vec![e]))?;
        let built = registry::build(registrations, &self.state, &lookup, &self.disabled, &file)
            .map_err(Error::Config)?;
        let handlers = built
            .endpoints
            .iter()
            .flat_map(|e| e.handlers.iter())
            .map(|h| (h.name, h.clone()))
            .collect();
        let store = match (self.store, self.store_url.as_deref()) {
            (Some(store), _) => store,
            // The memory store holds its history in the process: at most `history_max`
            // finished deliveries (10,000 unless set) and 64 MiB of bodies, evicted oldest first
            // as new ones come.
            (None, Some("memory")) | (None, None) => Arc::new(match self.config.history_max {
                Some(n) => MemoryStore::keeping(usize::try_from(n).unwrap_or(usize::MAX)),
                None => MemoryStore::new(),
            }),
            (None, Some(url)) => crate::store::open(url).map_err(|e| Error::Config(vec![e.0]))?,
        };
        let slots = Arc::new(worker::Slots::new(self.config.concurrency));
        let shared = Arc::new(Shared {
            store,
            endpoints: built.endpoints,
            handlers,
            state: Arc::new(self.state),
            clock: self.clock,
            config: self.config,
            wake: Arc::new(Notify::new()),
            slots,
            admin_token: self.admin_token.map(crate::scheme::Secret::new),
            tenants: crate::tenants::Tenants::default(),
            transitions: tokio::sync::broadcast::channel(crate::observe::CAPACITY).0,
            subscribed: std::sync::atomic::AtomicBool::new(false),
            in_flight: InFlight::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let worker = runtime.spawn(worker::run(
            Arc::downgrade(&shared),
            shared.slots.clone(),
            shared.wake.clone(),
            stop_rx,
            shared.config.shutdown_grace,
        ));
        let router = router_for(&shared);
        let addr = self.addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned());
        let app = App {
            shared,
            router,
            addr,
            generated: built.generated,
            stop,
            worker,
        };
        app.log_banner();
        Ok(app)
    }
}

/// How `App::serve` hands each request on. A request to an endpoint whose path is a literal
/// (every endpoint but the per-tenant ones), matched by the request's path as it is — as the router
/// matches it — goes straight to that endpoint, skipping the router's lookup and layers: its
/// route's service cloned and boxed, its future boxed, the matched path and URL parameters put into
/// the request's extensions — six allocations and a walk of the routing tree per delivery, for
/// values the pipeline never reads. Everything else (per-tenant endpoints, `/healthz`, `/metrics`,
/// the admin API, unknown paths) goes through the router.
#[derive(Clone)]
struct Dispatch {
    shared: Arc<Shared>,
    endpoints: Arc<[Arc<EndpointRt>]>,
    router: Router,
}

/// Where [`Dispatch`] sends a request.
enum Route {
    Endpoint(Arc<Shared>, Arc<EndpointRt>),
    Router(Router),
}

impl Dispatch {
    fn new(shared: &Arc<Shared>, router: Router) -> Self {
        Self {
            shared: shared.clone(),
            endpoints: shared
                .endpoints
                .iter()
                .filter(|ep| !ep.tenant)
                .cloned()
                .collect(),
            router,
        }
    }

    /// Answers one request. The endpoints are scanned: apps have a handful, and paths of other
    /// lengths are passed over at the first comparison.
    fn call(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> impl std::future::Future<
        Output = Result<axum::response::Response, std::convert::Infallible>,
    > + Send
    + use<> {
        let request = request.map(axum::body::Body::new);
        let path = request.uri().path();
        let route = match self.endpoints.iter().find(|ep| ep.path == path) {
            Some(endpoint) => Route::Endpoint(self.shared.clone(), endpoint.clone()),
            None => Route::Router(self.router.clone()),
        };
        async move {
            Ok(match route {
                Route::Endpoint(shared, endpoint) => {
                    pipeline::receive(shared, endpoint, None, request).await
                }
                Route::Router(mut router) => {
                    tower_service::Service::call(&mut router, request).await?
                }
            })
        }
    }
}

fn router_for(shared: &Arc<Shared>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics_text));
    for endpoint in &shared.endpoints {
        let (shared, ep) = (shared.clone(), endpoint.clone());
        let route = if endpoint.tenant {
            any(
                move |axum::extract::Path(connection): axum::extract::Path<String>,
                      request: http::Request<axum::body::Body>| {
                    pipeline::receive(shared.clone(), ep.clone(), Some(connection), request)
                },
            )
        } else {
            any(move |request: http::Request<axum::body::Body>| {
                pipeline::receive(shared.clone(), ep.clone(), None, request)
            })
        };
        router = router.route(endpoint.path, route);
    }
    if shared.admin_token.is_some() {
        router = router.merge(admin::router(shared.clone()));
    }
    // Each route's handler made a service once, here. Left as it is, a router turns its handler
    // into a service for every request (a boxed clone and its drop), unless it is served through
    // `axum::serve`, which does this itself; `App::serve` drives the router directly.
    router.with_state(())
}

async fn metrics_text() -> axum::response::Response {
    use axum::response::IntoResponse;
    match crate::telemetry::render() {
        Some(text) => (
            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        )
            .into_response(),
        None => (
            http::StatusCode::NOT_FOUND,
            "this process installed its own metrics recorder; hooksmith's metrics are there\n",
        )
            .into_response(),
    }
}

/// A built hooksmith app: its router, its workers, and the address it serves on.
pub struct App {
    pub(crate) shared: Arc<Shared>,
    router: Router,
    addr: String,
    generated: Vec<GeneratedSecret>,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for App {
    /// Names what the app serves; never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("addr", &self.addr)
            .field(
                "endpoints",
                &self
                    .shared
                    .endpoints
                    .iter()
                    .map(|e| e.path)
                    .collect::<Vec<_>>(),
            )
            .field("store", &self.shared.store.info().kind)
            .field("admin_api", &self.shared.admin_token.is_some())
            .finish_non_exhaustive()
    }
}

impl App {
    /// A builder that collects every `#[webhook]` in the binary and reads the environment.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    /// `App::builder().from_env()?.build()`.
    pub fn from_env() -> Result<App, Error> {
        Self::builder().from_env()?.build()
    }

    /// The app's axum router, to `merge` or `nest` into an existing app; the workers run as long
    /// as the app or a router from it is alive.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The secrets development mode generated, as `(variable, value)`; print them to the one
    /// person who needs them, never to a log.
    pub fn generated_secrets(&self) -> Vec<(&'static str, &str)> {
        self.generated
            .iter()
            .map(|g| (g.var, g.value.as_str()))
            .collect()
    }

    /// The headers that sign `body` for the endpoint at `path` with its first secret, now, as a
    /// provider would send them (with a fresh delivery id where the scheme signs one); for tests
    /// and the development-mode banner. `None` for an unknown path, or a scheme whose configured
    /// key cannot sign (a public key).
    pub fn sign(
        &self,
        path: &str,
        body: &[u8],
    ) -> Option<Vec<(http::HeaderName, http::HeaderValue)>> {
        let id = format!(
            "msg_{}",
            registry::random_secret().get(..24).unwrap_or_default()
        );
        let url = format!(
            "{}{path}",
            self.shared
                .config
                .public_url
                .as_deref()
                .unwrap_or("https://localhost")
        );
        self.sign_with(
            path,
            &crate::scheme::SignInput {
                body,
                timestamp: self.shared.clock.now_ms().div_euclid(1000),
                id: &id,
                url: &url,
                content_type: None,
            },
        )
    }

    /// [`App::sign`] with every input given.
    pub fn sign_with(
        &self,
        path: &str,
        input: &crate::scheme::SignInput<'_>,
    ) -> Option<Vec<(http::HeaderName, http::HeaderValue)>> {
        let ep = self.shared.endpoints.iter().find(|e| e.path == path)?;
        let signing = ep.signing.as_ref()?;
        (signing.sign)(&signing.params(), signing.secret.expose_str(), input).ok()
    }

    /// Every delivery transition from now on, each published after it is stored. A receiver that
    /// falls more than 4,096 transitions behind is told how many it missed.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::observe::Transition> {
        let receiver = self.shared.transitions.subscribe();
        self.shared
            .subscribed
            .store(true, std::sync::atomic::Ordering::Release);
        receiver
    }

    /// The address `serve` listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Binds the configured address and serves until SIGTERM or Ctrl+C, then stops accepting,
    /// finishes in-flight requests and lets running handlers finish within the grace period.
    pub async fn serve(self) -> Result<(), Error> {
        let listener = tokio::net::TcpListener::bind(&self.addr)
            .await
            .map_err(|source| Error::Bind {
                addr: self.addr.clone(),
                source,
            })?;
        // The first signal drains; a second one exits at once.
        let signals = async {
            shutdown_signal().await;
            tokio::spawn(async {
                shutdown_signal().await;
                tracing::warn!(target: "hooksmith", "second signal: exiting at once");
                std::process::exit(130);
            });
        };
        self.serve_on(listener, signals).await
    }

    /// Serves on a bound listener until `shutdown` completes, then drains as [`App::serve`] does.
    ///
    /// A request to an endpoint's own path goes straight to that endpoint; every other request
    /// (per-tenant endpoints, `/healthz`, `/metrics`, the admin API) through the routes of
    /// [`App::router`], which answers every request alike when it is merged into an app of your
    /// own, at the cost of its lookup.
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let local: Option<SocketAddr> = listener.local_addr().ok();
        tracing::info!(target: "hooksmith", addr = ?local, "listening");
        let mut builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        // A client that does not finish its request head in time is disconnected.
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.shared.config.header_read_timeout);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let dispatch = Dispatch::new(&self.shared, self.router.clone());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            // Out of file descriptors and the like: wait a moment, keep serving.
                            tracing::warn!(target: "hooksmith", %error, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let dispatch = dispatch.clone();
                    let service = hyper::service::service_fn(move |request| dispatch.call(request));
                    let connection = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service);
                    let connection = graceful.watch(connection.into_owned());
                    // Its requests' handler runs start here, after their answers (see
                    // `AfterAnswers`), rather than in a task each.
                    let connection = worker::AfterAnswers(Box::pin(connection));
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        // In-flight requests finish (within the grace period); then the workers drain.
        if tokio::time::timeout(self.shared.config.shutdown_grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(target: "hooksmith", "requests still in flight after the grace period");
        }
        self.shutdown().await;
        Ok(())
    }

    /// Stops the workers: no new job is claimed; running handlers get the grace period.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.worker.await;
        tracing::info!(target: "hooksmith", "stopped");
    }

    fn log_banner(&self) {
        let info = self.shared.store.info();
        if self.shared.endpoints.is_empty() {
            tracing::warn!(
                target: "hooksmith",
                "no #[webhook] handlers are registered: if your handlers live in another crate, make sure it is linked (use one of its items) or register them with `App::builder().handler::<name>()`"
            );
        }
        for ep in &self.shared.endpoints {
            let handlers: Vec<String> = ep
                .handlers
                .iter()
                .map(|h| match h.ack {
                    crate::Ack::Stored => h.name.to_owned(),
                    crate::Ack::Handled => format!("{} (ack=handled)", h.name),
                })
                .collect();
            tracing::info!(
                target: "hooksmith",
                route = ep.path,
                name = ep.name.unwrap_or(""),
                methods = %ep.allow.to_str().unwrap_or(""),
                sig = ep.scheme,
                secrets = ?ep.secret_names,
                max_body = ep.max_body,
                tolerance_secs = ep.tolerance_secs,
                enabled = ep.enabled.load(std::sync::atomic::Ordering::Relaxed),
                handlers = %handlers.join(", "),
                "mounted"
            );
        }
        if info.durable {
            tracing::info!(target: "hooksmith", store = info.kind, "store is durable");
        } else {
            tracing::warn!(
                target: "hooksmith",
                store = info.kind,
                "store is NOT durable: deliveries are lost when the process stops"
            );
        }
    }
}

/// Builds the app from the environment and returns its router (see [`App::router`]).
pub fn router() -> Result<Router, Error> {
    // The router keeps the shared state alive; the workers stop when it is dropped.
    Ok(App::from_env()?.router())
}

/// Completes on Ctrl+C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!(target: "hooksmith", "shutdown signal received");
}
