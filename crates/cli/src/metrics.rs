//! `--metrics-addr`: the run's counters ([`Metrics`]) served for Prometheus
//! at `GET /metrics`, for as long as the run goes. One request per
//! connection, answered and closed: a scraper needs no more.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use mssql_pg_migrate::transfer::events::{Event, EventSink};
use mssql_pg_migrate::transfer::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::exit::{CliError, Exit};

/// The largest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST: usize = 8192;

/// Counters fed by the engine's events and served over HTTP.
#[derive(Clone, Default)]
pub struct Exporter {
    metrics: Arc<Mutex<Metrics>>,
}

impl Exporter {
    /// Listens on `addr` and serves until the runtime ends.
    ///
    /// # Errors
    /// The address cannot be listened on (in use, not local, no permission).
    pub async fn serve(addr: SocketAddr) -> Result<Exporter, CliError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::new(Exit::Config, format!("--metrics-addr {addr}: cannot listen there: {e}")))?;
        let exporter = Exporter::default();
        let served = exporter.clone();
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "serving Prometheus metrics at /metrics");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let exporter = served.clone();
                tokio::spawn(async move { exporter.answer(stream).await });
            }
        });
        Ok(exporter)
    }

    /// The sink that counts events, chained before `next`.
    pub fn sink(&self, next: Option<EventSink>) -> EventSink {
        let metrics = Arc::clone(&self.metrics);
        Arc::new(move |event: &Event| {
            if let Ok(mut m) = metrics.lock() {
                m.apply(event);
            }
            if let Some(next) = &next {
                next(event);
            }
        })
    }

    async fn answer(&self, mut stream: TcpStream) {
        let mut head = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        let response = match request_line.split(|&b| b == b' ').collect::<Vec<_>>().as_slice() {
            [b"GET", path, ..] if path.split(|&b| b == b'?').next() == Some(b"/metrics") => {
                let body = self.metrics.lock().map(|m| m.render()).unwrap_or_default();
                response("200 OK", "text/plain; version=0.0.4; charset=utf-8", &body)
            }
            [b"GET", ..] => response("404 Not Found", "text/plain", "metrics are at /metrics\n"),
            _ => response("405 Method Not Allowed", "text/plain", "only GET\n"),
        };
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
