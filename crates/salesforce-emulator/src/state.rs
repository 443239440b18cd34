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
    /// Calls per `"<METHOD> <route pattern>"`.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Calls counted against the daily allocation.
    pub daily_used: u64,
}

/// What the background mutation task did (see [`crate::config::Mutations`]); served by
/// `GET /__emulator/mutations`.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MutationStats {
    /// Ticks run.
    pub ticks: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Rows updated.
    pub updated: u64,
    /// Rows soft-deleted.
    pub deleted: u64,
    /// Operations the store refused (e.g. a row another writer deleted in between).
    pub failed: u64,
    /// Per object: `[inserted, updated, deleted]`.
    pub by_object: BTreeMap<String, [u64; 3]>,
}

/// An in-flight API request (see [`EmulatorState::begin_request`]); dropping it ends the request.
#[derive(Debug)]
pub struct InFlight {
    book: Arc<Mutex<BTreeMap<u64, i64>>>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.book).remove(&self.id);
    }
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
    /// Background mutation counters.
    pub mutations: Mutex<MutationStats>,
    /// API requests in flight: sequence number → start instant (ms).
    pub in_flight: Arc<Mutex<BTreeMap<u64, i64>>>,
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
            view_encrypted_data: config.view_encrypted_data,
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
            mutations: Mutex::new(MutationStats::default()),
            in_flight: Arc::new(Mutex::new(BTreeMap::new())),
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

    /// Objects the background mutation task writes (see [`crate::config::Mutations::objects`]).
    pub fn mutation_objects(&self) -> Vec<String> {
        let m = &self.config.mutations;
        let names: Vec<String> = if !m.objects.is_empty() {
            m.objects.clone()
        } else if !self.config.rows.is_empty() {
            self.config.rows.keys().cloned().collect()
        } else {
            vec!["Account".to_string()]
        };
        let schema = self.store.schema();
        names
            .into_iter()
            .filter_map(|n| schema.object(&n))
            .filter(|o| o.createable && o.updateable && o.deletable)
            .map(|o| o.name.clone())
            .collect()
    }

    /// Runs mutation tick number `tick`: for each mutation object, `batch` operations chosen by
    /// hashing (seed, tick, object, slot): 40 % inserts (a copy of a generated row's createable,
    /// non-unique values), 40 % updates (one updateable field set to another generated row's
    /// value) and 20 % soft deletes of live rows. Writes go through [`Store::apply`], which stamps
    /// them now (§4.4) and keeps deleted rows for queryAll (§4.5).
    pub fn mutate_tick(&self, tick: u64) -> MutationStats {
        use crate::store::{FieldInput, RowOutcome, WriteOp};
        let batch = match self.config.mutations.batch {
            0 => 10,
            n => n,
        };
        let mut delta = MutationStats {
            ticks: 1,
            ..MutationStats::default()
        };
        for name in self.mutation_objects() {
            let snap = self.snapshot();
            let schema = snap.schema.clone();
            let Some(obj) = schema.index(&name) else {
                continue;
            };
            let def = &schema.objects[obj];
            let base_rows = snap.objs[obj].base_rows;
            let next_idx = snap.objs[obj].overlay.next_idx;
            let copyable = |f: &crate::schema::FieldDef| {
                !f.unique && !f.is_computed() && !f.auto_number && f.compound_field_name.is_none()
            };
            let updatable: Vec<usize> = def
                .fields
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    f.updateable
                        && copyable(f)
                        && matches!(f.source, crate::schema::Source::Gen(_))
                        && f.name != "StageName"
                })
                .map(|(i, _)| i)
                .collect();
            let mut ops = Vec::new();
            let mut kinds = Vec::new();
            for slot in 0..u64::from(batch) {
                let h = mix(self.config.seed
                    ^ mix(tick.wrapping_mul(0x9E37_79B9) ^ 0x4D75_7461)
                    ^ mix(((obj as u64) << 32) | slot));
                let kind = h % 10;
                let pick = |salt: u64, n: u64| mix(h ^ salt) % n.max(1);
                if kind < 4 {
                    if base_rows == 0 {
                        continue;
                    }
                    let Some(src) = snap.row(obj, pick(1, base_rows)) else {
                        continue;
                    };
                    let values = def
                        .fields
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.createable && copyable(f))
                        .filter_map(|(i, f)| {
                            let v = src.get(i);
                            (!v.is_null()).then(|| {
                                (
                                    f.name.clone(),
                                    FieldInput::Json(crate::engine::value_json(&v, f.ty)),
                                )
                            })
                        })
                        .collect();
                    ops.push(WriteOp::Insert(values));
                    kinds.push(0);
                    continue;
                }
                let Some(target) = snap.row(obj, pick(2, next_idx)) else {
                    continue;
                };
                if !target.visible(false) {
                    continue;
                }
                let id = target.id();
                if kind < 8 {
                    if updatable.is_empty() || base_rows == 0 {
                        continue;
                    }
                    let f = updatable[pick(3, updatable.len() as u64) as usize];
                    let fd = &def.fields[f];
                    let v = snap.generator.value(&schema, obj, f, pick(4, base_rows));
                    let input = if v.is_null() {
                        FieldInput::Null
                    } else {
                        FieldInput::Json(crate::engine::value_json(&v, fd.ty))
                    };
                    ops.push(WriteOp::Update {
                        id,
                        values: vec![(fd.name.clone(), input)],
                    });
                    kinds.push(1);
                } else {
                    ops.push(WriteOp::Delete { id });
                    kinds.push(2);
                }
            }
            let outcomes = match self.store.apply(&name, &ops, &self.write_options()) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(object = %name, error = %e, "mutation batch refused");
                    delta.failed += ops.len() as u64;
                    continue;
                }
            };
            let per = delta.by_object.entry(name.clone()).or_insert([0; 3]);
            for (o, k) in outcomes.iter().zip(&kinds) {
                match o {
                    RowOutcome::Ok { .. } => {
                        per[*k] += 1;
                        match k {
                            0 => delta.inserted += 1,
                            1 => delta.updated += 1,
                            _ => delta.deleted += 1,
                        }
                    }
                    RowOutcome::Err(e) => {
                        tracing::debug!(object = %name, error = %e, "mutation refused");
                        delta.failed += 1;
                    }
                }
            }
        }
        let mut total = lock(&self.mutations);
        total.ticks += delta.ticks;
        total.inserted += delta.inserted;
        total.updated += delta.updated;
        total.deleted += delta.deleted;
        total.failed += delta.failed;
        for (k, v) in &delta.by_object {
            let e = total.by_object.entry(k.clone()).or_insert([0; 3]);
            for i in 0..3 {
                e[i] += v[i];
            }
        }
        delta
    }

    /// Registers an API request as in flight until the returned guard drops.
    pub fn begin_request(&self) -> InFlight {
        let id = self.next_seq();
        lock(&self.in_flight).insert(id, now_ms());
        InFlight {
            book: self.in_flight.clone(),
            id,
        }
    }

    /// Requests in flight for at least `min_age_ms`.
    pub fn long_running(&self, min_age_ms: u64) -> usize {
        let now = now_ms();
        lock(&self.in_flight)
            .values()
            .filter(|&&start| (now - start).max(0) as u64 >= min_age_ms)
            .count()
    }

    /// Drops a finished cursor.
    pub fn drop_cursor(&self, id: &str) {
        let mut g = lock(&self.cursors);
        g.0.remove(id);
        g.1.retain(|x| x != id);
    }
}
