//! Connections whose socket is read through a large buffer.
//!
//! tokio-postgres frames the server's messages in an 8 KiB buffer and asks
//! the socket for at most what is free in it, so a reader of narrow rows
//! makes one `recvfrom` per 8 KiB: about 200,000 system calls for 1.7 GB,
//! and a wake-up of the row reader after each. Under the driver we put a
//! buffer of [`READ_BUFFER_BYTES`]: one system call fetches what the kernel
//! holds (up to that size), and the driver's small reads are copies from
//! memory. On their way out of the buffer, the rows of a COPY OUT are
//! joined into fewer messages ([`crate::copy_join`]), in the same copy.
//! Writes pass straight through.
//!
//! tokio-postgres opens its own sockets, so the pool connects through
//! [`BufferedConnect`]: it opens the TCP socket as tokio-postgres would
//! (no delay, keep-alives, the connect timeout) and hands it to
//! `Config::connect_raw`, which does TLS and the startup on it. What it does
//! not do itself (Unix sockets, several hosts) it leaves to
//! `Config::connect`, which reports those cases as it always has.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use deadpool_postgres::Connect;
use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::copy_join::CopyJoiner;

/// Bytes read from the socket at once, at most. 256 KiB is what a loaded
/// local socket holds between two reads; more only costs memory.
pub const READ_BUFFER_BYTES: usize = 256 << 10;

/// A [`deadpool_postgres::Connect`] whose connections read through [`BufferedSocket`].
#[derive(Clone)]
pub struct BufferedConnect {
    pub tls: MakeRustlsConnect,
}

impl std::fmt::Debug for BufferedConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BufferedConnect")
    }
}

impl Connect for BufferedConnect {
    fn connect(&self, config: &Config) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        let config = config.clone();
        let mut tls = self.tls.clone();
        Box::pin(async move {
            let tcp = match (config.get_hosts(), config.get_ports()) {
                ([Host::Tcp(host)], [port]) => Some((host.clone(), *port)),
                _ => None,
            };
            let Some((host, port)) = tcp else {
                return spawn_connection(config.connect(tls).await?);
            };
            // Infallible: rustls checks the name during the handshake.
            let Ok(tls_connect) = MakeTlsConnect::<BufferedSocket>::make_tls_connect(&mut tls, &host);
            let socket = match open_tcp(&host, port, &config).await {
                Ok(stream) => BufferedSocket::Open(Box::new(JoiningReader::new(stream))),
                // The driver reports it as it reports any socket failure,
                // keeping the error kind that says the server is unreachable.
                Err(e) => BufferedSocket::Failed(Some(io::Error::new(
                    e.kind(),
                    format!("could not connect to {host}:{port}: {e}"),
                ))),
            };
            spawn_connection(config.connect_raw(socket, tls_connect).await?)
        })
    }
}

fn spawn_connection<S, T>(
    (client, connection): (Client, tokio_postgres::Connection<S, T>),
) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A connection that ends in error fails its client's next call, which
    // reports it; the task has no one else to tell.
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

/// Connects to the first address of `host` that accepts, as tokio-postgres does.
async fn open_tcp(host: &str, port: u16, config: &Config) -> io::Result<TcpStream> {
    let attempt = async {
        let mut last = None;
        for address in tokio::net::lookup_host((host, port)).await? {
            match TcpStream::connect(address).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host name resolved to no address")))
    };
    let stream = match config.get_connect_timeout() {
        Some(&limit) => tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {}s", limit.as_secs())))??,
        None => attempt.await?,
    };
    stream.set_nodelay(true)?;
    if config.get_keepalives() {
        let keepalive =
            socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle().max(Duration::from_secs(1)));
        socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
    }
    Ok(stream)
}

/// The socket under the driver: open and read through a buffer, or a
/// connect that failed, whose error the driver meets on its first write.
#[derive(Debug)]
enum BufferedSocket {
    Open(Box<JoiningReader>),
    Failed(Option<io::Error>),
}

/// A TCP stream read through a buffer of [`READ_BUFFER_BYTES`], whose
/// bytes reach the reader through a [`CopyJoiner`].
struct JoiningReader {
    tcp: TcpStream,
    buffer: Box<[u8]>,
    /// The bytes read and not yet passed on: `buffer[start..end]`.
    start: usize,
    end: usize,
    joiner: CopyJoiner,
}

impl std::fmt::Debug for JoiningReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoiningReader").field("tcp", &self.tcp).field("buffered", &(self.end - self.start)).finish()
    }
}

impl JoiningReader {
    fn new(tcp: TcpStream) -> JoiningReader {
        JoiningReader {
            tcp,
            buffer: vec![0; READ_BUFFER_BYTES].into(),
            start: 0,
            end: 0,
            joiner: CopyJoiner::default(),
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.start < self.end {
                let room = out.remaining();
                let step = self.joiner.step(&self.buffer[self.start..self.end], room, |bytes| out.put_slice(bytes));
                self.start += step.consumed;
                if step.produced > 0 {
                    return Poll::Ready(Ok(()));
                }
                if step.consumed > 0 {
                    continue;
                }
            }
            // Nothing to pass on without more bytes: at most a cut header is left.
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            if self.end == self.buffer.len() {
                // Cannot happen (a header is 5 bytes); if it did, the
                // driver gets the bytes as they came.
                self.joiner.input_ended();
                continue;
            }
            let mut read = ReadBuf::new(&mut self.buffer[self.end..]);
            std::task::ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut read))?;
            let n = read.filled().len();
            if n == 0 {
                if self.start == self.end {
                    return Poll::Ready(Ok(()));
                }
                // The server closed mid-message: the driver reports it.
                self.joiner.input_ended();
                continue;
            }
            self.end += n;
        }
    }
}

/// The failed connect's error, once; any later call finds the socket not connected.
fn failure(error: &mut Option<io::Error>) -> io::Error {
    error.take().unwrap_or_else(|| io::ErrorKind::NotConnected.into())
}

impl AsyncRead for BufferedSocket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BufferedSocket::Open(s) => s.poll_read(cx, buf),
            BufferedSocket::Failed(e) => Poll::Ready(Err(failure(e))),
        }
    }
}

impl AsyncWrite for BufferedSocket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BufferedSocket::Open(s) => {
                s.joiner.client_wrote(data);
                Pin::new(&mut s.tcp).poll_write(cx, data)
            }
            BufferedSocket::Failed(e) => Poll::Ready(Err(failure(e))),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BufferedSocket::Open(s) => {
                if let Some(first) = data.iter().find(|d| !d.is_empty()) {
                    s.joiner.client_wrote(first);
                }
                Pin::new(&mut s.tcp).poll_write_vectored(cx, data)
            }
            BufferedSocket::Failed(e) => Poll::Ready(Err(failure(e))),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BufferedSocket::Open(s) => s.tcp.is_write_vectored(),
            BufferedSocket::Failed(_) => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BufferedSocket::Open(s) => Pin::new(&mut s.tcp).poll_flush(cx),
            BufferedSocket::Failed(e) => Poll::Ready(Err(failure(e))),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BufferedSocket::Open(s) => Pin::new(&mut s.tcp).poll_shutdown(cx),
            BufferedSocket::Failed(_) => Poll::Ready(Ok(())),
        }
    }
}
