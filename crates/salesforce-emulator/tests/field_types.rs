//! Every describe `type` of §2.4 exists in the org: `long`, `complexvalue`,
//! `datacategorygroupreference` and a custom address compound field on `Shipment__c`.

use crate::util::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn field<'a>(describe: &'a Value, name: &str) -> &'a Value {
    describe["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

#[tokio::test]
async fn the_org_has_every_wsdl_field_type() {
    let o = org(config(&[])).await;
    let (_, global) = o.get_json("/sobjects/").await;
    let mut types = BTreeSet::new();
    for obj in global["sobjects"].as_array().unwrap() {
        let name = obj["name"].as_str().unwrap();
        let (s, d) = o.get_json(&format!("/sobjects/{name}/describe")).await;
        assert_eq!(s, 200, "{name}");
        for f in d["fields"].as_array().unwrap() {
            types.insert(f["type"].as_str().unwrap().to_string());
        }
    }
    // §2.4 WSDL fieldType enum.
    for t in salesforce_emulator::schema::WSDL_FIELD_TYPES {
        assert!(types.contains(*t), "no field of type {t} in the org");
    }
}

#[tokio::test]
async fn new_types_describe_with_their_attributes() {
    let o = org(config(&[])).await;
    let (s, d) = o.get_json("/sobjects/Shipment__c/describe").await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["custom"], true);
    assert_eq!(d["keyPrefix"], "a03");

    let long = field(&d, "Weight_Grams__c");
    assert_eq!(long["type"], "long");
    assert_eq!(long["soapType"], "xsd:long");
    assert_eq!(long["digits"], 18);
    assert_eq!(long["filterable"], true);
    assert_eq!(long["sortable"], true);

    let cv = field(&d, "Record_Types__c");
    assert_eq!(cv["type"], "complexvalue");
    assert_eq!(cv["soapType"], "urn:RecordTypesSupported");
    assert_eq!(cv["filterable"], false);
    assert_eq!(cv["sortable"], false);
    assert_eq!(cv["createable"], false);

    let dc = field(&d, "Category_Group__c");
    assert_eq!(dc["type"], "datacategorygroupreference");
    assert_eq!(dc["soapType"], "xsd:string");
    assert_eq!(dc["filterable"], true);
    assert_eq!(
        dc["sortable"], false,
        "§4.2: data-category fields do not sort"
    );
    assert_eq!(dc["picklistValues"], json!([]));
}

#[tokio::test]
async fn custom_address_parent_and_components() {
    let o = org(config(&[])).await;
    let (_, d) = o.get_json("/sobjects/Shipment__c/describe").await;
    let parent = field(&d, "Shipping_Address__c");
    assert_eq!(parent["type"], "address");
    assert_eq!(parent["soapType"], "tns:address");
    assert_eq!(parent["custom"], true);
    assert_eq!(parent["createable"], false);
    assert_eq!(parent["compoundFieldName"], Value::Null);
    for part in [
        "Street",
        "City",
        "PostalCode",
        "StateCode",
        "CountryCode",
        "Latitude",
        "Longitude",
        "GeocodeAccuracy",
    ] {
        let f = field(&d, &format!("Shipping_Address__{part}__s"));
        assert_eq!(f["compoundFieldName"], "Shipping_Address__c", "{part}");
        assert_eq!(f["custom"], true, "{part}");
        assert_eq!(f["createable"], true, "{part}");
    }
    let state = field(&d, "Shipping_Address__StateCode__s");
    assert_eq!(state["type"], "picklist");
    assert_eq!(state["controllerName"], "Shipping_Address__CountryCode__s");
    assert_eq!(state["dependentPicklist"], true);
    assert_eq!(field(&d, "Shipping_Address__Latitude__s")["type"], "double");
}

#[tokio::test]
async fn rest_values_of_the_new_types() {
    let o = org(config(&[("Shipment__c", 200)])).await;
    let recs = o
        .query_all_pages(
            "SELECT Id, Weight_Grams__c, Record_Types__c, Category_Group__c, Shipping_Address__c, \
             Shipping_Address__StateCode__s, Shipping_Address__CountryCode__s FROM Shipment__c",
            "queryAll",
        )
        .await;
    assert_eq!(recs.len(), 200);
    let mut saw = (false, false, false, false);
    for r in &recs {
        if let Some(w) = r["Weight_Grams__c"].as_i64() {
            assert!(w >= 1);
            saw.0 |= w > i64::from(i32::MAX);
        } else {
            assert!(r["Weight_Grams__c"].is_null(), "{r}");
        }
        match &r["Record_Types__c"] {
            Value::Null => {}
            v => {
                assert!(v["recordTypeInfos"].is_array(), "complexvalue is JSON: {v}");
                saw.1 = true;
            }
        }
        if let Some(g) = r["Category_Group__c"].as_str() {
            assert!(["Products", "Regions", "Channels"].contains(&g));
            saw.2 = true;
        }
        let a = &r["Shipping_Address__c"];
        if a.is_null() {
            continue;
        }
        let keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "city",
                "country",
                "countryCode",
                "geocodeAccuracy",
                "latitude",
                "longitude",
                "postalCode",
                "state",
                "stateCode",
                "street"
            ]
        );
        assert_eq!(a["countryCode"], r["Shipping_Address__CountryCode__s"]);
        assert_eq!(a["stateCode"], r["Shipping_Address__StateCode__s"]);
        if a["countryCode"] == "US" && a["stateCode"] == "CA" {
            assert_eq!(a["country"], "United States");
            assert_eq!(a["state"], "California");
            saw.3 = true;
        }
        if a["countryCode"] == "FR" {
            assert!(a["stateCode"].is_null(), "no French states listed: {a}");
        }
        if a["stateCode"] == "BY" {
            assert_eq!(a["countryCode"], "DE", "state depends on country");
        }
    }
    assert_eq!(saw, (true, true, true, true));
}

#[tokio::test]
async fn soql_filters_and_orders_the_new_types() {
    let o = org(config(&[("Shipment__c", 150)])).await;
    let all = o
        .query_all_pages(
            "SELECT Id, Weight_Grams__c FROM Shipment__c WHERE Weight_Grams__c != null \
             ORDER BY Weight_Grams__c DESC",
            "queryAll",
        )
        .await;
    let w: Vec<i64> = all
        .iter()
        .map(|r| r["Weight_Grams__c"].as_i64().unwrap())
        .collect();
    assert!(w.len() > 100);
    assert!(w.windows(2).all(|p| p[0] >= p[1]), "descending");
    let pivot = w[w.len() / 2];
    let above = o
        .query_all_pages(
            &format!("SELECT Id FROM Shipment__c WHERE Weight_Grams__c > {pivot}"),
            "queryAll",
        )
        .await;
    assert_eq!(above.len(), w.iter().filter(|&&x| x > pivot).count());

    let (s, b) = o
        .query("SELECT Id FROM Shipment__c WHERE Category_Group__c = 'Regions'")
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["totalSize"].as_u64().unwrap() > 0);

    let (s, b) = o
        .query("SELECT Id FROM Shipment__c WHERE Record_Types__c = 'x'")
        .await;
    assert_eq!(s, 400);
    assert_eq!(error_code(&b), "INVALID_FIELD");
    assert!(
        b[0]["message"]
            .as_str()
            .unwrap()
            .contains("can not be filtered")
    );

    let (s, b) = o
        .query("SELECT Id FROM Shipment__c ORDER BY Category_Group__c")
        .await;
    assert_eq!(s, 400);
    assert!(
        b[0]["message"]
            .as_str()
            .unwrap()
            .contains("can not be sorted")
    );

    let (s, b) = o
        .query("SELECT Id FROM Shipment__c WHERE Weight_Grams__c = 'x'")
        .await;
    assert_eq!(s, 400);
    assert!(
        b[0]["message"].as_str().unwrap().contains("type long"),
        "{b}"
    );
}

#[tokio::test]
async fn bulk_csv_renders_long_and_category_components() {
    let o = org(config(&[("Shipment__c", 40)])).await;
    let (_, job) = o
        .http
        .post(o.url("/jobs/query"))
        .bearer_auth(&o.token)
        .json(&json!({"operation": "queryAll", "query":
            "SELECT Id, Weight_Grams__c, Category_Group__c, Shipping_Address__CountryCode__s FROM Shipment__c ORDER BY Id"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    let job: Value = job.json().await.unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    for _ in 0..200 {
        let (_, info) = o.get_json(&format!("/jobs/query/{id}")).await;
        if info["state"] == "JobComplete" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let body = o
        .get(&format!("/jobs/query/{id}/results"))
        .await
        .text()
        .await
        .unwrap();
    let rest = o
        .query_all_pages(
            "SELECT Id, Weight_Grams__c, Category_Group__c, Shipping_Address__CountryCode__s FROM Shipment__c ORDER BY Id",
            "queryAll",
        )
        .await;
    let mut lines = body.lines();
    assert_eq!(
        lines.next().unwrap(),
        r#""Id","Weight_Grams__c","Category_Group__c","Shipping_Address__CountryCode__s""#
    );
    let cell = |v: &Value| match v {
        Value::Null => "\"\"".to_string(),
        Value::String(s) => format!("\"{s}\""),
        other => format!("\"{other}\""),
    };
    for (line, r) in lines.zip(&rest) {
        let want = [
            "Id",
            "Weight_Grams__c",
            "Category_Group__c",
            "Shipping_Address__CountryCode__s",
        ]
        .iter()
        .map(|k| cell(&r[*k]))
        .collect::<Vec<_>>()
        .join(",");
        assert_eq!(line, want);
    }
    assert_eq!(body.lines().count(), 41);
}
