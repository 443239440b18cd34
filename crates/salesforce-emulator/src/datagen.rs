//! Deterministic, lazy row generation.
//!
//! Row `i` of an object is a pure function of (seed, object, i): nothing is stored, so ten million
//! rows cost no memory. Rows are generated in stamp order (`SystemModstamp`, or the object's
//! last-modified/created stamp when it has none), so a scan by row index is a scan in stamp order.
//! Stamps have second precision and come in tie clusters (§4.2: "emulator should generate tie
//! clusters").

use crate::ids;
use crate::schema::{
    COUNTRY_CODES, FieldDef, FieldType, Gen, ObjectDef, STATE_CODES, Schema, Source, StageAttr,
};
use crate::value::Value;
use std::sync::Arc;

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger",
    "Jean", "Niklaus", "Radia", "Tim", "Hedy", "Claude", "José", "Zoë",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Sammet",
    "Wirth",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "Shannon",
    "O'Brien",
    "Müller",
];
const COMPANY: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Vandelay",
    "Wonka",
];
const SUFFIX: &[&str] = &[
    "Inc.",
    "LLC",
    "Ltd",
    "GmbH",
    "S.A.",
    "& Sons",
    "Group, Inc.",
];
const WORDS: &[&str] = &[
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "quote\"d",
    "comma,ed",
    "naïve",
    "über",
    "line\nbreak",
];
const CITY: &[&str] = &[
    "Paris",
    "Berlin",
    "Tokyo",
    "San Francisco",
    "Lagos",
    "São Paulo",
    "Sydney",
    "Toronto",
];
const STATE: &[&str] = &["CA", "NY", "TX", "Île-de-France", "Bayern", "Tokyo"];
const COUNTRY: &[&str] = &[
    "France",
    "Germany",
    "Japan",
    "United States",
    "Nigeria",
    "Brazil",
];

/// Appends `n` in decimal, zero-padded to `width`.
fn push_num(s: &mut String, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut k = buf.len();
    let mut n = n;
    loop {
        k -= 1;
        buf[k] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in (buf.len() - k)..width {
        s.push('0');
    }
    for &c in &buf[k..] {
        s.push(c as char);
    }
}

/// Everything row generation depends on.
#[derive(Debug, Clone)]
pub struct GenCtx {
    /// Generator seed.
    pub seed: u64,
    /// Generated rows per object (schema order).
    pub rows: Vec<u64>,
    /// First stamp (ms).
    pub start_ms: i64,
    /// Last stamp (ms).
    pub end_ms: i64,
    /// Rows per stamp tie cluster (≥ 1).
    pub tie: u64,
    /// Soft-deleted generated rows, per thousand (only visible through queryAll).
    pub deleted_per_mille: u64,
}

/// SplitMix64 finaliser.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(h: u64, xs: &[&'a str]) -> &'a str {
    xs[(h % xs.len() as u64) as usize]
}

impl GenCtx {
    /// Hash of (seed, object, row, salt).
    pub fn h(&self, obj: usize, i: u64, salt: u64) -> u64 {
        mix(self.seed ^ mix(obj as u64 + 1) ^ mix(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt))
    }

    /// Stamp (scan-order key) of generated row `i`, whole seconds, non-decreasing in `i`.
    pub fn stamp(&self, obj: usize, i: u64) -> i64 {
        let n = self.rows.get(obj).copied().unwrap_or(0).max(1);
        let group = i - i % self.tie.max(1);
        let span = (self.end_ms - self.start_ms).max(0) as u128;
        let ms = self.start_ms + (u128::from(group) * span / u128::from(n)) as i64;
        ms - ms.rem_euclid(1000)
    }

    /// CreatedDate of generated row `i` (≤ stamp).
    pub fn created(&self, def: &ObjectDef, obj: usize, i: u64) -> i64 {
        let stamp = self.stamp(obj, i);
        if matches!(
            def.fields.get(def.stamp).map(|f| f.name.as_str()),
            Some("CreatedDate")
        ) {
            return stamp;
        }
        let back = (self.h(obj, i, 11) % (30 * 86_400)) as i64 * 1000;
        (stamp - back)
            .max(self.start_ms - self.start_ms.rem_euclid(1000))
            .min(stamp)
    }

    /// LastModifiedDate of generated row `i` (created ≤ it ≤ stamp, §4.4).
    pub fn last_modified(&self, def: &ObjectDef, obj: usize, i: u64) -> i64 {
        let stamp = self.stamp(obj, i);
        if def.fields[def.stamp].name != "SystemModstamp" {
            return stamp;
        }
        let h = self.h(obj, i, 12);
        if h.is_multiple_of(10) {
            (stamp - (h / 10 % 3600) as i64 * 1000).max(self.created(def, obj, i))
        } else {
            stamp
        }
    }

    /// Whether generated row `i` is soft-deleted (its deletion time is its stamp).
    pub fn deleted(&self, def: &ObjectDef, obj: usize, i: u64) -> bool {
        def.deletable && self.h(obj, i, 13) % 1000 < self.deleted_per_mille
    }

    /// A user id (CreatedById, OwnerId, ...).
    pub fn user(&self, schema: &Schema, obj: usize, i: u64, salt: u64) -> Value {
        let users = schema
            .index("User")
            .map(|u| self.rows[u])
            .unwrap_or(0)
            .max(1);
        Value::str(ids::make("005", self.h(obj, i, salt) % users))
    }

    /// Value of a generated (non-system, non-computed) field of row `i`.
    pub fn value(&self, schema: &Schema, obj: usize, field: usize, i: u64) -> Value {
        let def = &schema.objects[obj];
        let f = &def.fields[field];
        let salt = 1000 + field as u64;
        let h = self.h(obj, i, salt);
        match &f.source {
            Source::Id => Value::str(ids::make(&def.key_prefix, i)),
            Source::IsDeleted => Value::Bool(self.deleted(def, obj, i)),
            Source::Stamp => Value::DateTime(self.stamp(obj, i)),
            Source::CreatedDate => Value::DateTime(self.created(def, obj, i)),
            Source::LastModifiedDate => Value::DateTime(self.last_modified(def, obj, i)),
            Source::UserRef => self.user(schema, obj, i, salt),
            Source::Gen(g) => {
                if f.null_pct > 0 && h % 100 < u64::from(f.null_pct) {
                    return Value::Null;
                }
                self.gen_value(schema, obj, f, g, i, mix(h))
            }
            _ => Value::Null,
        }
    }

    fn gen_value(
        &self,
        schema: &Schema,
        obj: usize,
        f: &FieldDef,
        g: &Gen,
        i: u64,
        h: u64,
    ) -> Value {
        let span_days = ((self.end_ms - self.start_ms) / 86_400_000).max(1) as u64;
        match g {
            Gen::Name(p) => {
                let mut s = String::with_capacity(p.len() + 12);
                s.push_str(p);
                s.push(' ');
                push_num(&mut s, i, 1);
                Value::Str(s)
            }
            Gen::FirstName => Value::Lit(pick(h, FIRST)),
            Gen::LastName => Value::Lit(pick(h, LAST)),
            Gen::Company => {
                let mut s = String::with_capacity(32);
                s.push_str(pick(h, COMPANY));
                s.push(' ');
                s.push_str(pick(h >> 20, SUFFIX));
                s.push(' ');
                push_num(&mut s, i, 1);
                Value::Str(s)
            }
            Gen::Words(n) => {
                let n = 1 + h % u64::from((*n).max(1));
                let mut s = String::new();
                for k in 0..n {
                    if k > 0 {
                        s.push(' ');
                    }
                    s.push_str(pick(mix(h ^ k), WORDS));
                }
                Value::str(s)
            }
            Gen::Pick => match f.picklist.len() {
                0 => Value::Null,
                n => Value::Lit(f.picklist[(h % n as u64) as usize]),
            },
            Gen::Multi => {
                let chosen: Vec<&str> = f
                    .picklist
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| (h >> k) & 1 == 1)
                    .map(|(_, v)| *v)
                    .collect();
                if chosen.is_empty() {
                    Value::Null
                } else {
                    Value::str(chosen.join(";"))
                }
            }
            Gen::Bool(p) => Value::Bool(h % 100 < u64::from(*p)),
            Gen::Int(lo, hi) => Value::Int(lo + (h % ((hi - lo).max(0) as u64 + 1)) as i64),
            Gen::Num(lo, hi) => {
                let x = lo + (hi - lo) * ((h >> 11) as f64 / (1u64 << 53) as f64);
                let p = 10f64.powi(f.scale.min(15) as i32);
                Value::Double((x * p).round() / p)
            }
            Gen::Date => Value::Date(((self.start_ms / 86_400_000) as u64 + h % span_days) as i32),
            Gen::DateTime => {
                let span = (self.end_ms - self.start_ms).max(1000) as u64 / 1000;
                Value::DateTime(
                    self.start_ms - self.start_ms.rem_euclid(1000) + (h % span) as i64 * 1000,
                )
            }
            Gen::Time => Value::Time(((h % 86_400) * 1000) as u32),
            Gen::Email => Value::str(format!(
                "{}.{}{i}@example.com",
                pick(h, FIRST).to_lowercase(),
                pick(h >> 8, LAST).to_lowercase().replace(['\'', ' '], "")
            )),
            Gen::Phone => {
                let mut s = String::with_capacity(16);
                s.push_str("+1 555 ");
                push_num(&mut s, h % 1000, 3);
                s.push(' ');
                push_num(&mut s, (h >> 10) % 10_000, 4);
                Value::Str(s)
            }
            Gen::Url => Value::str(format!(
                "https://www.example.com/{}/{i}",
                pick(h, COMPANY).to_lowercase()
            )),
            Gen::Ref => {
                let targets = &f.reference_to;
                if targets.is_empty() {
                    return Value::Null;
                }
                let t = &targets[(h % targets.len() as u64) as usize];
                match schema.index(t) {
                    Some(ti) if self.rows[ti] > 0 => Value::str(ids::make(
                        &schema.objects[ti].key_prefix,
                        (h >> 8) % self.rows[ti],
                    )),
                    _ => Value::Null,
                }
            }
            Gen::Street => {
                let mut s = String::with_capacity(32);
                push_num(&mut s, 1 + h % 999, 1);
                s.push(' ');
                s.push_str(pick(h >> 10, LAST));
                s.push_str(" Street");
                Value::Str(s)
            }
            Gen::City => Value::Lit(pick(h, CITY)),
            Gen::State => Value::Lit(pick(h, STATE)),
            Gen::Postal => {
                let mut s = String::with_capacity(5);
                push_num(&mut s, h % 100_000, 5);
                Value::Str(s)
            }
            Gen::Country => Value::Lit(pick(h, COUNTRY)),
            Gen::Lat => Value::Double(((h % 180_000_000) as i64 - 90_000_000) as f64 / 1e6),
            Gen::Lon => Value::Double(((h % 360_000_000) as i64 - 180_000_000) as f64 / 1e6),
            Gen::Blob => Value::Blob(self.blob(obj, i).into()),
            Gen::BlobLen => Value::Int(self.blob(obj, i).len() as i64),
            Gen::Key(p) => {
                let mut s = String::with_capacity(p.len() + 12);
                s.push_str(p);
                s.push('-');
                push_num(&mut s, i, 1);
                Value::Str(s)
            }
            Gen::Username => Value::str(format!("user{i}@emulator.example.com")),
            Gen::Json => Value::str(
                serde_json::json!({"n": i, "tag": pick(h, WORDS), "ok": h.is_multiple_of(2)})
                    .to_string(),
            ),
            Gen::CountryCode => {
                Value::Lit(COUNTRY_CODES[(h % COUNTRY_CODES.len() as u64) as usize].0)
            }
            Gen::StateCode => {
                // The state must belong to the row's country (dependent picklist).
                let def = &schema.objects[obj];
                let country = f
                    .controller_name
                    .as_deref()
                    .and_then(|c| def.index(c))
                    .map(|c| self.value(schema, obj, c, i));
                let Some(country) = country.as_ref().and_then(Value::as_str) else {
                    return Value::Null;
                };
                let states: Vec<&'static str> = STATE_CODES
                    .iter()
                    .filter(|(_, _, c)| *c == country)
                    .map(|(s, _, _)| *s)
                    .collect();
                match states.len() {
                    0 => Value::Null,
                    n => Value::Lit(states[(h % n as u64) as usize]),
                }
            }
            Gen::Stage(attr) => {
                let def = &schema.objects[obj];
                let stage = def
                    .index("StageName")
                    .map(|k| self.value(schema, obj, k, i));
                let derived = stage
                    .as_ref()
                    .and_then(Value::as_str)
                    .and_then(|s| attr.of_stage(s));
                derived.unwrap_or(match attr {
                    StageAttr::Probability => Value::Null,
                    _ => Value::Bool(false),
                })
            }
            Gen::CategoryGroup => Value::Lit(pick(h, &["Products", "Regions", "Channels"])),
            Gen::RecordTypes => {
                let mut infos = vec![serde_json::json!({
                    "active": true, "available": true, "defaultRecordTypeMapping": h.is_multiple_of(2),
                    "developerName": "Master", "master": true, "name": "Master",
                    "recordTypeId": "012000000000000AAA"
                })];
                if h % 2 == 1 {
                    infos.push(serde_json::json!({
                        "active": true, "available": true, "defaultRecordTypeMapping": true,
                        "developerName": "Express", "master": false, "name": "Express",
                        "recordTypeId": ids::make("012", h % 1000)
                    }));
                }
                Value::str(serde_json::json!({ "recordTypeInfos": infos }).to_string())
            }
            Gen::HistField => Value::str(self.hist_field(f, obj, i)),
            Gen::HistDataType => Value::str(match self.hist_field_of(schema, obj, i).as_str() {
                "created" => "Text",
                "Amount__c" => "Currency",
                "Status__c" | "Industry" | "Type" => "DynamicEnum",
                _ => "Text",
            }),
            Gen::HistOld | Gen::HistNew => {
                let field = self.hist_field_of(schema, obj, i);
                let new = matches!(g, Gen::HistNew);
                match field.as_str() {
                    "created" => Value::Null,
                    "Amount__c" => Value::Double(((h % 1_000_000) as f64) / 100.0),
                    "Status__c" => Value::str(pick(h, &["Draft", "Sent", "Paid", "Void"])),
                    _ if !new && h.is_multiple_of(4) => Value::Null,
                    _ => Value::str(format!("{} {i}", pick(h, COMPANY))),
                }
            }
        }
    }

    fn hist_field(&self, f: &FieldDef, obj: usize, i: u64) -> String {
        let h = self.h(obj, i, 77);
        match f.picklist.len() {
            0 => "created".into(),
            n => f.picklist[(h % n as u64) as usize].to_string(),
        }
    }

    fn hist_field_of(&self, schema: &Schema, obj: usize, i: u64) -> String {
        let def = &schema.objects[obj];
        match def.field("Field") {
            Some(f) if f.ty == FieldType::Picklist => self.hist_field(f, obj, i),
            _ => "created".into(),
        }
    }

    /// Body of a generated attachment.
    pub fn blob(&self, obj: usize, i: u64) -> Vec<u8> {
        let reps = 1 + self.h(obj, i, 99) % 4;
        let mut v = Vec::new();
        for k in 0..reps {
            v.extend_from_slice(format!("emulator attachment {i} part {k}\n").as_bytes());
        }
        v.push(0xff);
        v
    }
}

/// Shared, immutable generation context.
pub type SharedGen = Arc<GenCtx>;

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> (Schema, GenCtx) {
        let s = Schema::standard();
        let rows = vec![100; s.objects.len()];
        let g = GenCtx {
            seed: 42,
            rows,
            start_ms: 1_577_836_800_000,
            end_ms: 1_767_225_600_000,
            tie: 3,
            deleted_per_mille: 10,
        };
        (s, g)
    }

    #[test]
    fn stamps_are_monotone_with_ties_and_created_precedes_them() {
        let (s, g) = ctx();
        let acc = s.index("Account").unwrap();
        let def = &s.objects[acc];
        let mut prev = i64::MIN;
        for i in 0..100 {
            let st = g.stamp(acc, i);
            assert!(st >= prev);
            assert_eq!(st % 1000, 0);
            assert!(g.created(def, acc, i) <= g.last_modified(def, acc, i));
            assert!(g.last_modified(def, acc, i) <= st);
            prev = st;
        }
        assert_eq!(g.stamp(acc, 0), g.stamp(acc, 2), "tie cluster of three");
        assert!(g.stamp(acc, 2) < g.stamp(acc, 3));
    }

    #[test]
    fn generation_is_a_pure_function_of_seed_object_and_row() {
        let (s, g) = ctx();
        let acc = s.index("Account").unwrap();
        let name = s.objects[acc].index("Name").unwrap();
        assert_eq!(g.value(&s, acc, name, 7), g.value(&s, acc, name, 7));
        let other = GenCtx {
            seed: 43,
            ..g.clone()
        };
        let differs = (0..20).any(|i| g.value(&s, acc, name, i) != other.value(&s, acc, name, i));
        assert!(differs);
    }
}
