//! Same seed → same rows; another seed → other rows.

use crate::util::*;

async fn rows(seed: u64) -> Vec<serde_json::Value> {
    let mut c = config(&[("Account", 300)]);
    c.seed = seed;
    let o = org(c).await;
    o.query_all_pages("SELECT Id, Name, Industry, AnnualRevenue, CreatedDate, SystemModstamp, BillingCity FROM Account ORDER BY Id", "queryAll").await
}

#[tokio::test]
async fn same_seed_gives_identical_rows() {
    let a = rows(7).await;
    let b = rows(7).await;
    assert_eq!(a.len(), 300);
    assert_eq!(a, b);
    let c = rows(8).await;
    assert_eq!(c.len(), 300);
    assert_ne!(a, c);
}
