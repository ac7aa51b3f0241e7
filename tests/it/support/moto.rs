//! The moto emulator in server mode, for tests that run the real AWS SDK.
//!
//! A small pool of `moto_server`s serves the whole test binary: a test takes
//! one for its whole body ([`Moto::take`]), with its state reset first, so
//! that tests using moto run side by side, each with a server of its own.
//! A test that needs to stop and restart the emulator starts its own with
//! [`Moto::start_new`].
//!
//! The server is found at `$CFPURGE_MOTO_SERVER`, else
//! `<crate>/.venv/bin/moto_server` (where `scripts/test` installs it). It
//! runs under a small shell that kills it as soon as the pipe to its stdin
//! closes, and the test process holds the pipe's write end: however the test
//! process ends (even `kill -9`), the kernel closes the pipe and moto goes
//! with it, so no emulator outlives the tests.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::config::{Region, SharedCredentialsProvider};
use aws_sdk_sqs::types::QueueAttributeName;
use cfpurge::config::AwsConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Region every test client uses; moto accepts any.
pub const REGION: &str = "us-east-1";

/// How long moto may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Long-poll wait the test clients' timeouts are sized for (SQS's maximum).
const CLIENT_WAIT: Duration = Duration::from_secs(20);

/// A running (or stopped) moto server on a fixed loopback port.
pub struct Moto {
    port: u16,
    endpoint: String,
    server: Mutex<Option<Server>>,
    /// Held by a test for its whole body: the test owns the server's
    /// state.
    exclusive: tokio::sync::Mutex<()>,
}

/// Servers in the pool: tests using moto mostly wait (quiet windows,
/// leases, long polls), so a few run side by side even on two cores.
const POOL: usize = 4;

/// A pooled server taken by one test, given back when dropped.
pub struct Taken {
    moto: &'static Moto,
    _guard: tokio::sync::MutexGuard<'static, ()>,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

impl Taken {
    /// The server taken; the test must keep the [`Taken`] alive while it
    /// uses it (`let moto = Moto::take().await; let moto = moto.server();`
    /// keeps it, shadowed, to the end of the test).
    pub fn server(&self) -> &'static Moto {
        self.moto
    }
}

/// The shell running moto, and the pipe whose closing stops it.
struct Server {
    shell: Child,
    stdin: Option<ChildStdin>,
}

impl Moto {
    /// A server of the pool for the caller's exclusive use until the
    /// returned value drops, with its state reset. Servers start on first
    /// use.
    pub async fn take() -> Taken {
        static SERVERS: [OnceLock<Moto>; POOL] = [const { OnceLock::new() }; POOL];
        static FREE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(POOL);
        let permit = FREE
            .acquire()
            .await
            .expect("the pool's semaphore is never closed");
        // The permit guarantees that one of the servers is not taken.
        for slot in &SERVERS {
            let moto = slot.get_or_init(Moto::start_new);
            if let Ok(guard) = moto.exclusive.try_lock() {
                moto.reset().await;
                return Taken {
                    moto,
                    _guard: guard,
                    _permit: permit,
                };
            }
        }
        unreachable!("a permit was free but every server was taken")
    }

    /// A server of its own on a free port, for a test that stops and
    /// restarts it. Stopped when dropped.
    pub fn start_new() -> Moto {
        let port = free_port();
        let moto = Moto {
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
            server: Mutex::new(None),
            exclusive: tokio::sync::Mutex::new(()),
        };
        *moto.server() = Some(Server::start(port));
        moto
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The loopback port the server listens on (also while stopped).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server; calls to it then fail to connect. Waits until the
    /// port is free, so that [`Self::restart`] can take it again.
    pub fn stop(&mut self) {
        if let Some(server) = self.server().take() {
            server.stop();
        }
    }

    /// Starts the server again on the same port, with empty state.
    pub fn restart(&mut self) {
        self.stop();
        *self.server() = Some(Server::start(self.port));
    }

    /// Empties every emulated service (`POST /moto-api/reset`).
    pub async fn reset(&self) {
        let status = http_post_async(self.port, "/moto-api/reset")
            .await
            .unwrap_or_else(|e| panic!("moto reset on port {}: {e}", self.port));
        assert_eq!(status, 200, "moto reset answered HTTP {status}");
    }

    /// SDK configuration with static test credentials and [`REGION`], as the
    /// AWS chain would give it.
    pub fn sdk_config() -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "testing", "testing", None, None, "moto",
            )))
            .build()
    }

    /// An SQS client for `endpoint` built the way the daemon builds its own
    /// (`cfpurge::aws::sqs`), with test credentials.
    pub fn sqs_client_at(endpoint: &str) -> aws_sdk_sqs::Client {
        let aws = AwsConfig {
            endpoint_url: Some(endpoint.to_owned()),
            ..AwsConfig::default()
        };
        cfpurge::aws::sqs(&Self::sdk_config(), &aws, CLIENT_WAIT)
    }

    /// An SQS client for this server.
    pub fn sqs_client(&self) -> aws_sdk_sqs::Client {
        Self::sqs_client_at(&self.endpoint)
    }

    /// Creates a queue with attributes such as `("VisibilityTimeout", "1")`
    /// and returns its URL.
    pub async fn create_queue(&self, name: &str, attributes: &[(&str, &str)]) -> String {
        let mut request = self.sqs_client().create_queue().queue_name(name);
        for &(key, value) in attributes {
            request = request.attributes(QueueAttributeName::from(key), value);
        }
        let out = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("create queue {name}: {e:?}"));
        out.queue_url()
            .expect("CreateQueue returns the URL")
            .to_owned()
    }

    /// The ARN of the queue at `url` (for redrive policies).
    pub async fn queue_arn(&self, url: &str) -> String {
        let out = self
            .sqs_client()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("GetQueueAttributes QueueArn");
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .expect("QueueArn attribute")
            .clone()
    }

    fn server(&self) -> std::sync::MutexGuard<'_, Option<Server>> {
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Server {
    fn start(port: u16) -> Server {
        let program = moto_server();
        let log_path = std::env::temp_dir().join(format!("cfpurge-moto-{port}.log"));
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("clone log file handle");
        // `read` returns when the pipe closes: at `stop`, or when the test
        // process ends however it ends. `wait` lets `stop` know the port is
        // free once the shell has exited.
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p "$1" & pid=$!; read _; kill "$pid"; wait "$pid""#)
            .arg(&program)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let stdin = shell.stdin.take();
        let mut server = Server { shell, stdin };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(200) = http_post(port, "/moto-api/reset") {
                return server;
            }
            if let Ok(Some(status)) = server.shell.try_wait() {
                panic!(
                    "moto_server exited ({status}) before answering; see {}",
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                server.stop();
                panic!(
                    "moto_server did not answer on port {port} within {START_TIMEOUT:?}; see {}",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(mut self) {
        // Closing the pipe makes the shell kill moto and wait for it.
        drop(self.stdin.take());
        let _ = self.shell.wait();
    }
}

/// `$CFPURGE_MOTO_SERVER`, else the project's `.venv`.
fn moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("CFPURGE_MOTO_SERVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return path;
        }
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if path.is_file() {
        return path;
    }
    panic!("moto_server not found: run scripts/test (it installs moto into .venv)");
}

/// A loopback port nobody listens on right now. Another process could take
/// it before moto does; then moto fails to start and the test says so.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn request(port: u16, path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

fn status_of(response: &[u8]) -> std::io::Result<u16> {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:.60}")))
}

/// A bodiless POST over a raw HTTP/1.1 connection; the answer's status.
fn http_post(port: u16, path: &str) -> std::io::Result<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    stream.write_all(request(port, path).as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    status_of(&response)
}

/// [`http_post`] on tokio, for use inside tests.
async fn http_post_async(port: u16, path: &str) -> std::io::Result<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(request(port, path).as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        status_of(&response)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::other("timed out"))?
}
