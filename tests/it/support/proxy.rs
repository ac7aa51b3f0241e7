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

/// An HTTP/1.1 proxy on loopback for AWS JSON calls: it records every
/// call going through it (for counting a client's DynamoDB calls by
/// operation and item), and the id of every SQS message its answers to
/// ReceiveMessage hand out; made with [`CountingProxy::serial`], it lets
/// one call at a time through to the server behind it.
///
/// One at a time because moto 5.2.5 evaluates a conditional write and
/// applies it without a lock: two concurrent `UpdateItem`s whose condition
/// only one may pass both succeed now and then (measured: 1 of 100 trials
/// of three simultaneous calls). DynamoDB applies each conditional write
/// atomically; serialised calls give moto the same behaviour.
pub struct CountingProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(std::time::Instant, Seen)>>>,
    received: Arc<Mutex<Vec<(tokio::time::Instant, String)>>>,
    accept: JoinHandle<()>,
}

/// What a [`CountingProxy`] records.
#[derive(Clone, Default)]
struct Records {
    seen: Arc<Mutex<Vec<(std::time::Instant, Seen)>>>,
    received: Arc<Mutex<Vec<(tokio::time::Instant, String)>>>,
}

impl CountingProxy {
    /// A proxy to `target_port` that lets calls through as they come.
    pub async fn start(target_port: u16) -> CountingProxy {
        CountingProxy::with_gate(target_port, None).await
    }

    /// A proxy to `target_port` that lets one call at a time through.
    pub async fn serial(target_port: u16) -> CountingProxy {
        CountingProxy::with_gate(target_port, Some(Arc::default())).await
    }

    async fn with_gate(
        target_port: u16,
        gate: Option<Arc<tokio::sync::Mutex<()>>>,
    ) -> CountingProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("address");
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target_port));
        let records = Records::default();
        let (seen, received) = (records.seen.clone(), records.received.clone());
        let record = records;
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let (record, gate) = (record.clone(), gate.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = exchange(inbound, outbound, &record, gate.as_deref()).await;
                });
            }
        });
        CountingProxy {
            addr,
            seen,
            received,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every call seen so far, with when it was seen.
    pub fn seen(&self) -> Vec<(std::time::Instant, Seen)> {
        self.seen.lock().expect("seen").clone()
    }

    /// Every SQS message handed out by a ReceiveMessage answer so far: when
    /// the answer went through, and the message's id. A message received
    /// again is listed again.
    pub fn received(&self) -> Vec<(tokio::time::Instant, String)> {
        self.received.lock().expect("received").clone()
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

/// Carries one client connection's requests and their responses, one
/// exchange at a time (HTTP/1.1 without pipelining, as the SDK speaks it).
async fn exchange(
    mut inbound: TcpStream,
    mut outbound: TcpStream,
    record: &Records,
    gate: Option<&tokio::sync::Mutex<()>>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let (mut from_client, mut from_server) = (Vec::new(), Vec::new());
    loop {
        let Some(request) = read_message(&mut inbound, &mut from_client).await? else {
            return Ok(());
        };
        let seen = name(&request);
        if let Some(seen) = &seen {
            record
                .seen
                .lock()
                .expect("seen")
                .push((std::time::Instant::now(), seen.clone()));
        }
        let response = {
            let _turn = match gate {
                Some(g) => Some(g.lock().await),
                None => None,
            };
            outbound.write_all(&request).await?;
            read_message(&mut outbound, &mut from_server).await?
        };
        let Some(response) = response else {
            return Ok(());
        };
        if seen.is_some_and(|s| s.operation == "ReceiveMessage") {
            let now = tokio::time::Instant::now();
            record
                .received
                .lock()
                .expect("received")
                .extend(message_ids(&response).into_iter().map(|id| (now, id)));
        }
        inbound.write_all(&response).await?;
    }
}

/// Reads one whole HTTP/1.1 message from `stream` (bytes already read in
/// `buf`, what follows it kept there); `None` at the end of the stream.
async fn read_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt as _;
    loop {
        if let Some(len) = message_len(buf) {
            return Ok(Some(buf.drain(..len).collect()));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A header's value in a message's head, by case-insensitive name.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (key, value) = l.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// The length of the first whole message in `buf` (a body of
/// `Content-Length` bytes, or chunked), if it is all there.
fn message_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let chunked = header(&head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if !chunked {
        let length: usize = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        return (buf.len() >= end + length).then_some(end + length);
    }
    // Chunks: a hexadecimal size line, the data, CRLF; size 0 ends it
    // (no trailers here).
    let mut at = end;
    loop {
        let line = buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&buf[at..at + line]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at += line + 2;
        if size == 0 {
            return (buf.len() >= at + 2).then_some(at + 2);
        }
        at += size + 2;
        if buf.len() < at {
            return None;
        }
    }
}

/// The `MessageId`s of an SQS ReceiveMessage answer (JSON protocol).
fn message_ids(message: &[u8]) -> Vec<String> {
    let Some(end) = message.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let head = String::from_utf8_lossy(&message[..end + 4]);
    let mut body = message[end + 4..].to_vec();
    if header(&head, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        body = dechunk(&body);
    }
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Vec::new();
    };
    json["Messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["MessageId"].as_str().map(str::to_owned))
        .collect()
}

/// A chunked body's data.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    while let Some(line) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line]);
        let Some(size) = size_text
            .split(';')
            .next()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            break;
        };
        let start = line + 2;
        if size == 0 || body.len() < start + size {
            break;
        }
        data.extend_from_slice(&body[start..start + size]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    data
}

/// Names a request by its `X-Amz-Target` and the item its body names.
fn name(message: &[u8]) -> Option<Seen> {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&message[..end]);
    let target = header(&head, "x-amz-target")?;
    let body = String::from_utf8_lossy(&message[end..]);
    let item = if body.contains("\"S\":\"ledger\"") {
        "ledger"
    } else if body.contains("\"S\":\"lease\"") {
        "lease"
    } else {
        "-"
    };
    Some(Seen {
        operation: target.rsplit('.').next().unwrap_or_default().to_owned(),
        item,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_whole_and_named() {
        let lease = "{\"Key\":{\"pk\":{\"S\":\"lease\"}}}";
        let ledger = "{\"TransactItems\":[{\"ConditionCheck\":{\"Key\":{\"pk\":{\"S\":\"lease\"}}}},\
                      {\"Put\":{\"Item\":{\"pk\":{\"S\":\"ledger\"}}}}]}";
        let first = format!(
            "POST / HTTP/1.1\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\ncontent-length: {}\r\n\r\n{lease}",
            lease.len()
        );
        let second = format!(
            "POST / HTTP/1.1\r\nx-amz-target: DynamoDB_20120810.TransactWriteItems\r\nContent-Length: {}\r\n\r\n{ledger}",
            ledger.len()
        );
        let stream = format!("{first}{second}");
        // Cut anywhere before its end, a message is not whole.
        for cut in 0..first.len() {
            assert_eq!(message_len(&stream.as_bytes()[..cut]), None, "{cut}");
        }
        assert_eq!(message_len(stream.as_bytes()), Some(first.len()));
        assert_eq!(
            name(first.as_bytes()),
            Some(Seen {
                operation: "GetItem".into(),
                item: "lease"
            })
        );
        assert_eq!(
            name(second.as_bytes()),
            Some(Seen {
                operation: "TransactWriteItems".into(),
                item: "ledger"
            })
        );
        assert_eq!(name(b"GET /metrics HTTP/1.1\r\n\r\n"), None);
        assert_eq!(message_len(b"HTTP/1.1 200 OK\r\n\r\nrest"), Some(19));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        for cut in 0..chunked.len() {
            assert_eq!(message_len(&chunked[..cut]), None, "{cut}");
        }
        assert_eq!(message_len(chunked), Some(chunked.len()));
    }

    #[test]
    fn the_ids_of_received_messages_are_read_whole_or_chunked() {
        let body = r#"{"Messages":[{"MessageId":"m-1","ReceiptHandle":"h","Body":"{\"MessageId\":\"x\"}"},{"MessageId":"m-2"}]}"#;
        let plain = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(message_ids(plain.as_bytes()), ["m-1", "m-2"]);
        let (a, b) = body.split_at(20);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
            a.len(),
            b.len()
        );
        assert_eq!(message_ids(chunked.as_bytes()), ["m-1", "m-2"]);
        assert!(message_ids(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").is_empty());
    }
}
