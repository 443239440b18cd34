//! Background mutations over time (`Config::mutations`): inserts, updates and soft deletes that
//! an incremental query and queryAll can find.

use crate::util::*;
use salesforce_emulator::config::Mutations;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn mutating(interval_ms: u64) -> salesforce_emulator::Config {
    let mut c = config(&[("Account", 300)]);
    c.mutations = Mutations {
        interval_ms,
        batch: 20,
        objects: vec!["Account".into()],
    };
    c
}

async fn stats(o: &Org) -> Value {
    o.http
        .get(format!("{}/__emulator/mutations", o.h.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `SystemModstamp` of now, truncated to the second, in SOQL literal form.
fn soql_instant(ms: i64) -> String {
    let secs = ms / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[tokio::test]
async fn mutations_are_off_by_default() {
    let o = org(config(&[("Account", 50)])).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let s = stats(&o).await;
    assert_eq!(s["ticks"], 0);
    assert_eq!(s["interval_ms"], 0);
    let (_, b) = o.query("SELECT COUNT() FROM Account").await;
    let live = b["totalSize"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, b) = o.query("SELECT COUNT() FROM Account").await;
    assert_eq!(b["totalSize"].as_u64().unwrap(), live);
}

#[tokio::test]
async fn incremental_query_finds_inserts_updates_and_query_all_finds_deletes() {
    let o = org(mutating(60)).await;
    let before: BTreeSet<String> = o
        .query_all_pages("SELECT Id FROM Account", "queryAll")
        .await
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(before.len(), 300);
    // Everything generated lies before the data end (2026-01-01); mutations stamp "now".
    let t = soql_instant(1_767_225_600_000);
    let mut s = stats(&o).await;
    for _ in 0..400 {
        if s["ticks"].as_u64().unwrap() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        s = stats(&o).await;
    }
    assert!(s["ticks"].as_u64().unwrap() >= 3, "{s}");
    let (ins, upd, del) = (
        s["inserted"].as_u64().unwrap(),
        s["updated"].as_u64().unwrap(),
        s["deleted"].as_u64().unwrap(),
    );
    assert!(ins > 0 && upd > 0 && del > 0, "{s}");
    assert_eq!(s["objects"], serde_json::json!(["Account"]));

    // Stop counting further ticks from here on: read the stats again after the queries and
    // accept rows from ticks that ran in between (the sets only grow).
    let changed = o
        .query_all_pages(
            &format!(
                "SELECT Id, IsDeleted, SystemModstamp, LastModifiedDate FROM Account \
                 WHERE SystemModstamp > {t}"
            ),
            "queryAll",
        )
        .await;
    let after = stats(&o).await;
    let new_ids: BTreeSet<&str> = changed
        .iter()
        .map(|r| r["Id"].as_str().unwrap())
        .filter(|id| !before.contains(*id))
        .collect();
    let updated_or_deleted: Vec<&Value> = changed
        .iter()
        .filter(|r| before.contains(r["Id"].as_str().unwrap()))
        .collect();
    let deleted = changed.iter().filter(|r| r["IsDeleted"] == true).count() as u64;
    assert!(new_ids.len() as u64 >= ins, "{} < {ins}", new_ids.len());
    assert!(new_ids.len() as u64 <= after["inserted"].as_u64().unwrap());
    assert!(!updated_or_deleted.is_empty());
    assert!(deleted >= 1 && deleted <= after["deleted"].as_u64().unwrap());
    for r in changed.iter().filter(|r| r["IsDeleted"] == false) {
        assert_eq!(
            r["SystemModstamp"], r["LastModifiedDate"],
            "a mutation stamps both: {r}"
        );
    }
    // query (not queryAll) hides the deletes.
    let live = o
        .query_all_pages(
            &format!("SELECT Id FROM Account WHERE SystemModstamp > {t}"),
            "query",
        )
        .await;
    assert_eq!(live.len() as u64, changed.len() as u64 - deleted);
}

#[tokio::test]
async fn mutation_ticks_are_deterministic_from_the_seed() {
    // Same seed, same tick numbers → the same rows change the same way (run the ticks directly
    // so no timing is involved).
    async fn run(seed: u64) -> BTreeMap<String, Value> {
        let mut c = mutating(0);
        c.seed = seed;
        let o = org(c).await;
        for tick in 0..3 {
            o.h.state.mutate_tick(tick);
        }
        o.query_all_pages(
            "SELECT Id, Name, IsDeleted, Industry, Phone FROM Account WHERE SystemModstamp > 2026-01-01T00:00:00Z",
            "queryAll",
        )
        .await
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("attributes");
            (r["Id"].as_str().unwrap().to_string(), r)
        })
        .collect()
    }
    let a = run(7).await;
    let b = run(7).await;
    let c = run(8).await;
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_ne!(a, c);
}
