//! `encrypt: false` against a server that offers no TLS: the connector must
//! log in in clear text at once, not start a TLS handshake the server never
//! answers (which stalled for the 15 s handshake timeout). A fake server on
//! 127.0.0.1 answers PRELOGIN with ENCRYPT_NOT_SUP and reports what the
//! client sends next.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use std::time::{Duration, Instant};

use mssql_pg_migrate_config::Secret;
use mssql_pg_migrate_dialect::Side;
use mssql_pg_migrate_mssql::MssqlEndpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A PRELOGIN response with ENCRYPTION = NOT_SUP (2).
fn not_supported_response() -> Vec<u8> {
    // Options: VERSION at 11 (6 bytes), ENCRYPTION at 17 (1 byte), terminator.
    let payload = [0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xff, 16, 0, 0x10, 0, 0, 0, 2];
    let mut packet = vec![0x04, 0x01, 0, (8 + payload.len()) as u8, 0, 0, 1, 0];
    packet.extend_from_slice(&payload);
    packet
}

async fn read_packet(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.unwrap();
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut packet = header.to_vec();
    packet.resize(len, 0);
    stream.read_exact(&mut packet[8..]).await.unwrap();
    packet
}

#[tokio::test]
async fn encrypt_false_logs_in_clear_text_to_a_server_without_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        // The connector may ask on a connection of its own first; every
        // connection gets the same PRELOGIN answer.
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().await.unwrap();
            let prelogin = read_packet(&mut stream).await;
            assert_eq!(prelogin[0], 0x12, "the first packet is PRELOGIN");
            stream.write_all(&not_supported_response()).await.unwrap();
            let mut next = [0u8; 1];
            match tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut next)).await {
                Ok(Ok(_)) => {
                    seen.push(next[0]);
                    return seen;
                }
                Ok(Err(_)) => seen.push(0), // closed after PRELOGIN: the probe
                Err(_) => panic!("the client sent nothing after PRELOGIN"),
            }
        }
        seen
    });
    let endpoint = MssqlEndpoint {
        host: "127.0.0.1".into(),
        port,
        database: "master".into(),
        user: "sa".into(),
        password: Secret::new("not-used-Passw0rd"),
        encrypt: false,
        strict: false,
        trust_server_cert: false,
        ca_cert: None,
        side: Side::Source,
    };
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), endpoint.connect()).await;
    let seen = server.await.unwrap();
    // 0x10 is LOGIN7 in the clear; a TLS handshake would come wrapped in 0x12.
    assert_eq!(seen.last(), Some(&0x10), "the packet after PRELOGIN: {seen:?}");
    let result = result.expect("the connection attempt ended instead of stalling");
    assert!(result.is_err(), "the fake server never completes a login");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
