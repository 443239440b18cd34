//! What goes over the wire byte for byte, below what an HTTP client library shows.

use crate::util::config;
use salesforce_emulator::spawn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Salesforce sends header names capitalised; some clients (Airbyte's Python source, which looks
/// up `"content-type"` in a plain dict) behave differently when they arrive in lower case.
#[tokio::test]
async fn response_header_names_are_capitalised_as_salesforce_sends_them() {
    let h = spawn(config(&[])).await.unwrap();
    let addr = h.base_url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"GET /services/data/ HTTP/1.1\r\nHost: login.salesforce.com\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let head = text.split("\r\n\r\n").next().unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/json"),
        "{head}"
    );
    assert!(!head.contains("\r\ncontent-type:"), "{head}");
}
