//! A TCP proxy on loopback that can be cut and restored: what a network
//! outage looks like to a client, while the server behind it keeps its
//! state (moto loses everything when it restarts).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards connections from its own port to `target`.
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Starts forwarding from a free loopback port to `target_port`.
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let proxy = Proxy {
            addr: listener.local_addr().expect("address"),
            target: SocketAddr::from((Ipv4Addr::LOCALHOST, target_port)),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.serve(listener);
        proxy
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let target = self.target;
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("tasks").push(conn);
            }
        });
        self.tasks.lock().expect("tasks").push(accept);
    }

    /// Cuts the link: stops listening and drops every open connection.
    pub fn cut(&self) {
        for task in self.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }

    /// Restores the link on the same port.
    pub async fn restore(&self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// One DynamoDB call a [`CountingProxy`] saw: the operation
/// (`X-Amz-Target` without its `DynamoDB_20120810.` prefix) and the item's
/// partition key when the body names one of cfpurge's two (`lease`,
/// `ledger`; a transaction names both, `ledger` is kept).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Seen {
    pub operation: String,
    pub item: &'static str,
}

/// A proxy like [`Proxy`] (without cut and restore) that reads the HTTP/1.1
/// requests going through it and records every AWS JSON call: for counting
/// a client's DynamoDB calls by operation and item.
pub struct CountingProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(std::time::Instant, Seen)>>>,
    accept: JoinHandle<()>,
}

impl CountingProxy {
    pub async fn start(target_port: u16) -> CountingProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("address");
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target_port));
        let seen: Arc<Mutex<Vec<(std::time::Instant, Seen)>>> = Arc::default();
        let record = seen.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut in_read, mut in_write) = inbound.into_split();
                    let (mut out_read, mut out_write) = outbound.into_split();
                    let upstream = async {
                        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                        let mut reader = Requests::default();
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match in_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            for s in reader.feed(&buf[..n]) {
                                record
                                    .lock()
                                    .expect("seen")
                                    .push((std::time::Instant::now(), s));
                            }
                            if out_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = out_write.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        CountingProxy { addr, seen, accept }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call seen so far, with when it was seen.
    pub fn seen(&self) -> Vec<(std::time::Instant, Seen)> {
        self.seen.lock().expect("seen").clone()
    }

    /// Calls seen from `from` until `to`, counted by operation and item.
    pub fn count_between(
        &self,
        from: std::time::Instant,
        to: std::time::Instant,
    ) -> std::collections::BTreeMap<Seen, u64> {
        let mut counts = std::collections::BTreeMap::new();
        for (at, s) in self.seen() {
            if at >= from && at < to {
                *counts.entry(s).or_insert(0) += 1;
            }
        }
        counts
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Splits a client's byte stream into HTTP/1.1 requests (headers, then a
/// body of `Content-Length` bytes) and names each.
#[derive(Default)]
struct Requests {
    buf: Vec<u8>,
}

impl Requests {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Seen> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return out;
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            let header = |name: &str| {
                head.lines().find_map(|l| {
                    let (key, value) = l.split_once(':')?;
                    key.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| value.trim().to_owned())
                })
            };
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let total = end + 4 + length;
            if self.buf.len() < total {
                return out;
            }
            let body = String::from_utf8_lossy(&self.buf[end + 4..total]).into_owned();
            if let Some(target) = header("x-amz-target") {
                let operation = target.rsplit('.').next().unwrap_or_default().to_owned();
                let item = if body.contains("\"S\":\"ledger\"") {
                    "ledger"
                } else if body.contains("\"S\":\"lease\"") {
                    "lease"
                } else {
                    "-"
                };
                out.push(Seen { operation, item });
            }
            self.buf.drain(..total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_across_reads_and_bodies() {
        let lease = "{\"Key\":{\"pk\":{\"S\":\"lease\"}}}";
        let ledger = "{\"TransactItems\":[{\"ConditionCheck\":{\"Key\":{\"pk\":{\"S\":\"lease\"}}}},\
                      {\"Put\":{\"Item\":{\"pk\":{\"S\":\"ledger\"}}}}]}";
        let stream = format!(
            "POST / HTTP/1.1\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\ncontent-length: {}\r\n\r\n{lease}\
             POST / HTTP/1.1\r\nx-amz-target: DynamoDB_20120810.TransactWriteItems\r\nContent-Length: {}\r\n\r\n{ledger}\
             GET /metrics HTTP/1.1\r\n\r\n",
            lease.len(),
            ledger.len()
        );
        let mut reader = Requests::default();
        let mut seen = Vec::new();
        // Byte by byte: a request split anywhere is still read whole.
        for b in stream.as_bytes() {
            seen.extend(reader.feed(std::slice::from_ref(b)));
        }
        assert_eq!(
            seen,
            [
                Seen {
                    operation: "GetItem".into(),
                    item: "lease"
                },
                Seen {
                    operation: "TransactWriteItems".into(),
                    item: "ledger"
                },
            ]
        );
        assert!(reader.buf.is_empty());
    }
}
