//! Shared emulator state: the org, issued tokens, API-call counters, faults, query cursors and
//! Bulk jobs.

use crate::bulk::QueryJob;
use crate::config::{Config, Faults, Switches};
use crate::datagen::{GenCtx, mix};
use crate::engine::{Exec, Pos};
use crate::ids;
use crate::schema::{Schema, SchemaOptions};
use crate::store::{Snapshot, Store, WriteOptions};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Locks a mutex, recovering from poisoning (a panicked handler must not wedge the emulator).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct AccessToken {
    /// Issue instant (ms).
    pub issued_ms: i64,
    /// Last use (ms).
    pub last_used_ms: i64,
    /// Refresh-token family it came from (for rotation revocation).
    pub family: u64,
}

/// A refresh token.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    /// Family id.
    pub family: u64,
    /// Still the current token of its family (rotation).
    pub current: bool,
    /// Revoked.
    pub revoked: bool,
}

/// Issued tokens.
#[derive(Debug, Default)]
pub struct Tokens {
    /// Access token → info.
    pub access: HashMap<String, AccessToken>,
    /// Refresh token → info.
    pub refresh: HashMap<String, RefreshToken>,
}

/// API call counters.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Calls since the last reset.
    pub total: u64,
    /// Calls per "<METHOD> <route pattern>".
    pub by_endpoint: BTreeMap<String, u64>,
    /// Calls counted against the daily allocation.
    pub daily_used: u64,
}

/// A REST query cursor (`nextRecordsUrl`, §2.5).
#[derive(Debug)]
pub struct Cursor {
    /// The running query.
    pub exec: Arc<Exec>,
    /// Ordinal → position after that many rows.
    pub positions: HashMap<u64, Pos>,
    /// Matching rows (totalSize).
    pub total: u64,
    /// Rows per page.
    pub batch: u64,
}

/// Open cursors by id, plus their creation order for eviction.
pub type CursorBook = (HashMap<String, Arc<Mutex<Cursor>>>, VecDeque<String>);

/// Everything the handlers share.
#[derive(Debug)]
pub struct EmulatorState {
    /// The configuration the emulator started with.
    pub config: Config,
    /// The org.
    pub store: Store,
    /// Switches (changeable at run time).
    pub switches: RwLock<Switches>,
    /// Faults (changeable at run time).
    pub faults: Mutex<Faults>,
    /// Tokens.
    pub tokens: Mutex<Tokens>,
    /// Counters.
    pub counters: Mutex<Counters>,
    /// Query cursors by id, plus their creation order for eviction.
    pub cursors: Mutex<CursorBook>,
    /// Bulk query jobs.
    pub jobs: Mutex<BTreeMap<String, Arc<QueryJob>>>,
    /// The server's base URL (`http://127.0.0.1:PORT`), set when bound.
    pub base_url: RwLock<String>,
    /// Sequence for ids of tokens, cursors and jobs.
    seq: AtomicU64,
    /// Fault RNG state.
    rng: Mutex<u64>,
}

impl EmulatorState {
    /// Builds the org and state from a configuration.
    pub fn new(config: Config) -> EmulatorState {
        let schema = Arc::new(Schema::with_options(&SchemaOptions {
            extra_custom_objects: config.extra_custom_objects,
            content_document_link: config.content_document_link,
            wide_object_fields: config.wide_object_fields,
        }));
        let now = now_ms();
        let end = config
            .data_end_ms
            .unwrap_or(now - now.rem_euclid(86_400_000));
        let rows = schema
            .objects
            .iter()
            .map(|o| {
                config
                    .rows
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&o.name))
                    .map(|(_, v)| *v)
                    .unwrap_or(config.default_rows)
            })
            .collect::<Vec<_>>();
        let mut rows = rows;
        if let Some(u) = schema.index("User") {
            rows[u] = rows[u].max(1);
        }
        let generator = Arc::new(GenCtx {
            seed: config.seed,
            rows,
            start_ms: config.data_start_ms,
            end_ms: end.max(config.data_start_ms),
            tie: config.tie_cluster.max(1),
            deleted_per_mille: config.deleted_per_mille,
        });
        let mut tokens = Tokens::default();
        tokens.refresh.insert(
            config.credentials.refresh_token.expose().to_string(),
            RefreshToken {
                family: 0,
                current: true,
                revoked: false,
            },
        );
        EmulatorState {
            store: Store::new(schema, generator),
            switches: RwLock::new(config.switches.clone()),
            faults: Mutex::new(config.faults.clone()),
            tokens: Mutex::new(tokens),
            counters: Mutex::new(Counters::default()),
            cursors: Mutex::new((HashMap::new(), VecDeque::new())),
            jobs: Mutex::new(BTreeMap::new()),
            base_url: RwLock::new(String::new()),
            seq: AtomicU64::new(1),
            rng: Mutex::new(mix(config.seed ^ 0xFA17)),
            config,
        }
    }

    /// Next sequence number.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A deterministic pseudo-random number in [0, 1) for fault decisions.
    pub fn roll(&self) -> f64 {
        let mut s = lock(&self.rng);
        *s = mix(*s);
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Current switches.
    pub fn switches(&self) -> Switches {
        match self.switches.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The org id (`00D...`).
    pub fn org_id(&self) -> String {
        ids::make("00D", 1)
    }

    /// The API user's id (row 0 of User).
    pub fn user_id(&self) -> String {
        ids::make("005", 0)
    }

    /// Base URL of the running server.
    pub fn base_url(&self) -> String {
        match self.base_url.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// A read snapshot at the current instant.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.store.snapshot(now_ms())
    }

    /// Write options for a write happening now (late-visibility fault applied).
    pub fn write_options(&self) -> WriteOptions {
        let late = lock(&self.faults).late_visible_ms;
        WriteOptions {
            now_ms: now_ms(),
            visible_after_ms: late as i64,
            bump_stamp_on_delete: self.switches().bump_stamp_on_delete,
            user_id: self.user_id(),
        }
    }

    /// The daily API allocation in force.
    pub fn daily_limit(&self) -> u64 {
        lock(&self.faults)
            .daily_limit
            .unwrap_or(self.config.daily_api_limit)
    }

    /// Counts one API call against `endpoint`.
    pub fn count_call(&self, endpoint: &str) {
        let mut c = lock(&self.counters);
        c.total += 1;
        c.daily_used += 1;
        *c.by_endpoint.entry(endpoint.to_string()).or_insert(0) += 1;
    }

    /// Calls used today.
    pub fn used(&self) -> u64 {
        lock(&self.counters).daily_used
    }

    /// Registers a cursor and returns its id; old cursors are evicted past 1,000.
    pub fn add_cursor(&self, c: Cursor) -> String {
        let id = ids::make("01g", self.next_seq())[..15].to_string() + "AAA";
        let id = ids::to18(&id[..15]).unwrap_or(id);
        let mut g = lock(&self.cursors);
        g.0.insert(id.clone(), Arc::new(Mutex::new(c)));
        g.1.push_back(id.clone());
        while g.1.len() > 1000 {
            if let Some(old) = g.1.pop_front() {
                g.0.remove(&old);
            }
        }
        id
    }

    /// A cursor by id.
    pub fn cursor(&self, id: &str) -> Option<Arc<Mutex<Cursor>>> {
        lock(&self.cursors).0.get(id).cloned()
    }

    /// Drops a finished cursor.
    pub fn drop_cursor(&self, id: &str) {
        let mut g = lock(&self.cursors);
        g.0.remove(id);
        g.1.retain(|x| x != id);
    }
}
