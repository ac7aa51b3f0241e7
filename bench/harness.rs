//! End-to-end benchmark: one trace replayed through an SQS emulator (moto,
//! or LocalStack with `--sqs localstack`) into three consumers in turn, each against a fresh fake CloudFront that behaves like
//! AWS in real time, then one table of what each cost and how fast it
//! drained. Run it through `bench/run`, which builds everything and starts
//! this program; `bench/run --help` lists the options.
//!
//! The consumers run as child processes, so that the peak RSS (`VmHWM`) and
//! CPU seconds (`utime + stime`) read from `/proc` are theirs alone:
//!
//! - `cfpurge`: the release binary, `cfpurge run` with the default settings
//!   except the queue, the endpoints, the ledger (fresh, in a temporary
//!   folder) and the HTTP port;
//! - `naive`: one CreateInvalidation per message (`bench/naive.rs`);
//! - `ceiling`: receive and delete only (`bench/ceiling.rs`).
//!
//! Time: the trace's gaps are divided by the compression; CloudFront is not
//! sped up (invalidations stay in progress for `--in-progress` seconds,
//! creates are limited to AWS's reported 0.5 a second with a burst of 6, and
//! the 3,000/15 in-flight limits hold), since that is what a consumer meets.
//! A compression that fits the trace into minutes therefore asks for far
//! more than 0.5 invalidations a second from a consumer that makes one per
//! message.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

#[allow(dead_code)] // the benchmark uses a few of the test fake's helpers
#[path = "../tests/it/support/fake_cloudfront.rs"]
mod fake_cloudfront;

use fake_cloudfront::{FakeCloudFront, Operation, RateLimit, coverage};

/// The distribution every request goes to.
const DIST: &str = "E3ASTRODOCS0001";
const REGION: &str = "us-east-1";
/// How often the queue's depth is asked once everything is sent.
const DEPTH_EVERY: Duration = Duration::from_millis(250);
/// How often the consumer's `/proc` figures are read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Queue visibility timeout: long enough that the naive consumer, which
/// holds ten messages while it works through them one create at a time, does
/// not see them delivered again mid-batch (AWS's advice for a Lambda
/// consumer is six times the function's timeout).
const QUEUE_VISIBILITY: &str = "300";
/// Generated messages: paths per message on average (1,000,000 in
/// 100,000).
const SCALE_PATHS_PER_MESSAGE: usize = 10;
/// `--ingest`: how long an invalidation stays in progress, CloudFront's
/// stated P95 completion time.
const INGEST_IN_PROGRESS: Duration = Duration::from_secs(25);
/// `--ingest`: the budget, far above what the run can spend, so that it
/// never binds.
const INGEST_BUDGET_PATHS: u64 = 100_000_000;
/// `--ingest`: SendMessageBatch calls under way at once while the queue is
/// filled before the consumer starts.
const FILL_SENDERS: usize = 8;

const USAGE: &str = "\
usage: bench/run [--sqs moto|localstack] [--compression N] [--trace FILE]
                 [--only cfpurge,naive,ceiling] [--deadline SECONDS]
                 [--in-progress SECONDS] [--budget-paths N]
       bench/run --ingest [--messages N] [--only ...]
       bench/run --storm [--messages N] [--on YYYY-MM-DD] [--only ...]
       bench/run --emulator [--in-flight N[,N...]]

  --sqs NAME         the SQS emulator: moto (default; what the tests use) or
                     localstack (LocalStack's SQS, whose calls do not slow
                     down with the messages held in flight)
  --compression N    divide the trace's gaps by N (default 300000: the astro-docs
                     trace, 829 days, is sent in 239 s); with --ingest and
                     --storm the messages go as fast as SQS takes them
  --trace FILE       JSON lines {\"t\": seconds, \"paths\": [...]}
                     (default benches/data/astro-docs-commits.jsonl)
  --only LIST        consumers to run, in this order (default all three;
                     --ingest: cfpurge,ceiling; --storm: cfpurge)
  --deadline S       stop a consumer that has not drained the queue S seconds
                     after the last send (default 120; --ingest 600,
                     --storm 1800)
  --in-progress S    how long an invalidation stays in progress (default 180)
  --budget-paths N   cfpurge's budget.monthly_paths (default: the default, 1000)
  --ingest           cfpurge's intake against the receive-and-delete ceiling:
                     the queue is filled first with messages of 10 of the
                     trace's paths each (they dedupe into few invalidations),
                     then each consumer drains it; the budget does not bind
                     and invalidations complete in 25 s (CloudFront's P95)
  --storm            generated messages of the trace's shape, 10 paths each
                     on average (1,000,000 paths in 100,000 messages), sent
                     as fast as SQS takes them, against the default budget
                     and pacing (default deadline 1800 s; --only cfpurge)
  --messages N       --ingest, --storm: how many messages (default 100000)
  --on DATE          --storm: run as if on this day of the month (bench/run
                     shifts every process's wall clock with faketime)
  --emulator         no consumer: time the emulator's SendMessageBatch, ReceiveMessage
                     and DeleteMessageBatch with a number of messages held in
                     flight (received, not deleted), to tell the emulator's
                     slowdown from a consumer's
  --in-flight LIST   --emulator: messages held in flight, one queue each
                     (default 0,500,1000,2000)";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consumer {
    Cfpurge,
    Naive,
    Ceiling,
}

impl Consumer {
    fn name(self) -> &'static str {
        match self {
            Consumer::Cfpurge => "cfpurge",
            Consumer::Naive => "naive",
            Consumer::Ceiling => "ceiling",
        }
    }

    fn parse(name: &str) -> Option<Consumer> {
        match name {
            "cfpurge" => Some(Consumer::Cfpurge),
            "naive" => Some(Consumer::Naive),
            "ceiling" => Some(Consumer::Ceiling),
            _ => None,
        }
    }
}

/// Which SQS emulator the run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sqs {
    Moto,
    LocalStack,
}

impl Sqs {
    fn name(self) -> &'static str {
        match self {
            Sqs::Moto => "moto",
            Sqs::LocalStack => "LocalStack",
        }
    }
}

/// What the run measures.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    /// The trace, sent at its own pace divided by the compression.
    Trace,
    /// `--ingest`: this many messages filled in first, then drained.
    Ingest(usize),
    /// `--storm`: this many generated messages sent as fast as SQS takes them.
    Storm(usize),
    /// `--emulator`: the numbers of messages to hold in flight.
    Emulator(Vec<usize>),
}

#[derive(Debug)]
struct Args {
    sqs: Sqs,
    /// `None`: as fast as possible.
    compression: Option<f64>,
    trace: PathBuf,
    only: Vec<Consumer>,
    deadline: Duration,
    in_progress: Duration,
    budget_paths: Option<u64>,
    mode: Mode,
    /// `--on`: the day the run stands for (bench/run has shifted the clock).
    on: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut sqs = Sqs::Moto;
    let mut compression: Option<Option<f64>> = None;
    let mut trace = root.join("benches/data/astro-docs-commits.jsonl");
    let mut only = None;
    let mut deadline = None;
    let mut in_progress = None;
    let mut budget_paths = None;
    let (mut ingest, mut storm, mut emulator) = (false, false, false);
    let mut messages = 100_000;
    let mut in_flight = vec![0, 500, 1_000, 2_000];
    let mut on = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--sqs" => {
                sqs = match value()?.as_str() {
                    "moto" => Sqs::Moto,
                    "localstack" => Sqs::LocalStack,
                    other => return Err(format!("--sqs {other}: want moto or localstack")),
                }
            }
            "--compression" => {
                let v = value()?;
                compression = Some(if v == "max" {
                    None
                } else {
                    Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|c| c.is_finite() && *c > 0.0)
                            .ok_or_else(|| format!("--compression {v}: want a number > 0"))?,
                    )
                });
            }
            "--trace" => trace = PathBuf::from(value()?),
            "--only" => {
                let v = value()?;
                only = Some(
                    v.split(',')
                        .map(|n| {
                            Consumer::parse(n.trim()).ok_or_else(|| format!("--only: unknown {n}"))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            "--deadline" => deadline = Some(Duration::from_secs_f64(number(&value()?, &arg)?)),
            "--in-progress" => {
                in_progress = Some(Duration::from_secs_f64(number(&value()?, &arg)?))
            }
            "--budget-paths" => budget_paths = Some(number(&value()?, &arg)? as u64),
            "--ingest" => ingest = true,
            "--storm" => storm = true,
            "--messages" => messages = counts(&value()?, &arg, 1)?[0],
            "--on" => on = Some(value()?),
            "--emulator" => emulator = true,
            "--in-flight" => in_flight = counts(&value()?, &arg, 0)?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let mode = match (ingest, storm, emulator) {
        (false, false, false) => Mode::Trace,
        (true, false, false) => Mode::Ingest(messages),
        (false, true, false) => Mode::Storm(messages),
        (false, false, true) => Mode::Emulator(in_flight),
        _ => return Err("--ingest, --storm and --emulator go one at a time".to_owned()),
    };
    if on.is_some() && !matches!(mode, Mode::Storm(_)) {
        return Err("--on goes with --storm".to_owned());
    }
    let default_only = match mode {
        Mode::Trace => vec![Consumer::Cfpurge, Consumer::Naive, Consumer::Ceiling],
        Mode::Ingest(_) => vec![Consumer::Cfpurge, Consumer::Ceiling],
        Mode::Storm(_) | Mode::Emulator(_) => vec![Consumer::Cfpurge],
    };
    let (default_in_progress, default_deadline) = match mode {
        Mode::Ingest(_) => (INGEST_IN_PROGRESS, 600),
        Mode::Storm(_) => (Duration::from_secs(180), 1_800),
        _ => (Duration::from_secs(180), 120),
    };
    Ok(Args {
        sqs,
        compression: compression.unwrap_or(match mode {
            Mode::Trace => Some(300_000.0),
            _ => None,
        }),
        trace,
        only: only.unwrap_or(default_only),
        deadline: deadline.unwrap_or(Duration::from_secs(default_deadline)),
        in_progress: in_progress.unwrap_or(default_in_progress),
        budget_paths: budget_paths.or(match mode {
            Mode::Ingest(_) => Some(INGEST_BUDGET_PATHS),
            _ => None,
        }),
        mode,
        on,
    })
}

/// A comma-separated list of counts, each at least `least`.
fn counts(text: &str, arg: &str, least: usize) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|n| {
            n.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= least)
                .ok_or_else(|| format!("{arg}: {n} is not a count of at least {least}"))
        })
        .collect()
}

fn number(text: &str, arg: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{arg} {text}: want a number ≥ 0"))
}

/// One purge request to send.
#[derive(Clone, Debug)]
struct Request {
    /// Seconds since the first request, before compression.
    t: f64,
    paths: Vec<String>,
}

fn load_trace(file: &Path) -> Vec<Request> {
    let text = std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("read trace {}: {e}", file.display()));
    let mut requests: Vec<Request> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("trace line is JSON");
            Request {
                t: v["t"].as_f64().expect("trace line has t"),
                paths: v["paths"]
                    .as_array()
                    .expect("trace line has paths")
                    .iter()
                    .map(|p| p.as_str().expect("path is a string").to_owned())
                    .collect(),
            }
        })
        .collect();
    requests.sort_by(|a, b| a.t.total_cmp(&b.t));
    let t0 = requests.first().map_or(0.0, |r| r.t);
    for r in &mut requests {
        r.t -= t0;
    }
    requests
}

/// `n` messages in the trace's shape with [`SCALE_PATHS_PER_MESSAGE`] paths
/// each on average: each message takes whole consecutive requests of the
/// trace (cycled) until the running total reaches its share, so a commit's
/// paths stay together and large commits stay large; every path of a
/// message gets the message's variant of its last segment (`/en/guides/x/`
/// becomes `/en/guides/x-7/`, one of `n / 10` variants), so the site grows
/// wider at the same depth and some paths repeat across messages. Gaps are
/// the trace's own. Deterministic. With `variants` 1 the paths stay the
/// trace's own, so that they repeat from one cycle of the trace to the next.
fn generate(trace: &[Request], n: usize, variants: u64, seed: u64) -> Vec<Request> {
    let span = trace.last().map_or(0.0, |r| r.t) + 1.0;
    let mut state = seed;
    let mut cursor = 0usize;
    let mut total = 0usize;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let v = splitmix(&mut state) % variants;
        let cycle = (cursor / trace.len()) as f64;
        let t = trace[cursor % trace.len()].t + cycle * span;
        let mut paths = Vec::new();
        while paths.is_empty() || total < SCALE_PATHS_PER_MESSAGE * (i + 1) {
            let r = &trace[cursor % trace.len()];
            cursor += 1;
            total += r.paths.len();
            if variants == 1 {
                paths.extend(r.paths.iter().cloned());
            } else {
                paths.extend(r.paths.iter().map(|p| with_variant(p, v)));
            }
            if paths.len() >= 3_000 {
                break;
            }
        }
        paths.truncate(3_000);
        out.push(Request { t, paths });
    }
    out
}

/// `/en/guides/x/` with variant 7 is `/en/guides/x-7/`; `/a.png` is `/a-7.png`.
fn with_variant(path: &str, v: u64) -> String {
    let trimmed = path.trim_end_matches('/');
    let slash = &path[trimmed.len()..];
    let cut = trimmed.rfind('/').map_or(0, |i| i + 1);
    let (dir, last) = trimmed.split_at(cut);
    match last.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{dir}{stem}-{v}.{ext}{slash}"),
        _ if last.is_empty() => path.to_owned(),
        _ => format!("{dir}{last}-{v}{slash}"),
    }
}

/// splitmix64: the sets only need to be the same on every run.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The SQS emulator on a free loopback port, under a shell that kills it
/// (by its PID) when the pipe to the shell's stdin closes: when this is
/// dropped, or however the benchmark ends.
struct Emulator {
    shell: std::process::Child,
    endpoint: String,
}

impl Emulator {
    /// `moto_server` (the program `CFPURGE_MOTO_SERVER` names).
    async fn moto(program: &Path, log: &Path) -> Emulator {
        let port = free_port();
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p "$1" & pid=$!; read _; kill "$pid"; wait "$pid""#)
            .arg(program)
            .arg(port.to_string());
        Emulator::start(command, port, "/moto-api/", "moto_server", log).await
    }

    /// LocalStack with SQS alone, run by the Python `CFPURGE_LOCALSTACK_PYTHON`
    /// names, without Docker; its files go under `root`.
    async fn localstack(python: &Path, root: &Path, log: &Path) -> Emulator {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(r#""$0" -m localstack.runtime.main & pid=$!; read _; kill "$pid"; wait "$pid""#)
            .arg(python)
            .env("SERVICES", "sqs")
            .env("GATEWAY_LISTEN", &listen)
            .env("LOCALSTACK_HOST", &listen)
            // Queue URLs as http://host:port/account/name, on this port.
            .env("SQS_ENDPOINT_STRATEGY", "path")
            .env("DNS_ADDRESS", "0")
            // Host mode, with every file it writes under the run's folder,
            // even where a container marker file is present.
            .env("OVERRIDE_IN_DOCKER", "0")
            .env("FILESYSTEM_ROOT", root)
            // Nothing to fetch or report: the benchmark runs offline.
            .env("DISABLE_EVENTS", "1")
            .env("SKIP_SSL_CERT_DOWNLOAD", "1");
        Emulator::start(command, port, "/_localstack/health", "LocalStack", log).await
    }

    async fn start(
        mut command: std::process::Command,
        port: u16,
        ready_path: &str,
        name: &str,
        log: &Path,
    ) -> Emulator {
        let log = std::fs::File::create(log).expect("emulator log file");
        let shell = command
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("emulator log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let answer = http.get(format!("{endpoint}{ready_path}")).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not start within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Emulator { shell, endpoint }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.shell.stdin.take());
        let _ = self.shell.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// Peak RSS and CPU of a process, from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    peak_rss_kib: u64,
    cpu_seconds: f64,
}

fn read_usage(pid: u32, ticks_per_second: f64) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(Usage {
        peak_rss_kib,
        cpu_seconds: (utime + stime) / ticks_per_second,
    })
}

fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// Where the programs are and what they share across runs.
struct Env {
    root: PathBuf,
    sqs: Emulator,
    work: PathBuf,
    ticks: f64,
    args: Args,
}

/// What one consumer's run measured.
#[derive(Debug)]
struct Run {
    consumer: Consumer,
    messages: usize,
    requested_paths: usize,
    billed_paths: usize,
    create_calls: usize,
    throttling: usize,
    too_many: usize,
    /// First send to last send.
    send_span: Duration,
    /// First send until the queue was seen empty; `None`: not by the
    /// deadline.
    drain: Option<Duration>,
    /// First send until the consumer was stopped.
    ran_for: Duration,
    /// Messages still in the queue when the consumer was stopped.
    left: u64,
    /// Send to covering invalidation, of the covered requests, sorted.
    latencies: Vec<Duration>,
    usage: Usage,
    /// cfpurge: the budget's allowance and spending at the start and end.
    budget: Option<(serde_json::Value, serde_json::Value)>,
    /// cfpurge: messages it held when it was sent SIGTERM.
    held_at_term: Option<u64>,
    /// SIGTERM to exit; `None`: killed after [`TERM_WAIT`].
    exit_after_term: Option<Duration>,
}

impl Run {
    /// Messages drained a second, when the queue drained.
    fn rate(&self) -> Option<f64> {
        self.drain
            .map(|d| self.messages as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE))
    }

    /// Nearest-rank percentile over all requests, uncovered ones counted as
    /// later than any covered one: `None` when the rank falls on those.
    fn percentile(&self, q: f64) -> Option<Duration> {
        let rank = ((q * self.messages as f64).ceil() as usize).clamp(1, self.messages.max(1));
        self.latencies.get(rank - 1).copied()
    }
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<u64> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .ok()?;
    let attrs = out.attributes()?;
    let get = |k: QueueAttributeName| -> Option<u64> { attrs.get(&k)?.parse().ok() };
    Some(
        get(QueueAttributeName::ApproximateNumberOfMessages)?
            + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?
            + get(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
    )
}

/// Starts a consumer process and waits until it is ready to receive.
async fn spawn_consumer(
    env: &Env,
    consumer: Consumer,
    queue_url: &str,
    cloudfront: &str,
    tag: &str,
) -> (Child, Option<String>) {
    let release = env.root.join("target/release");
    let log = std::fs::File::create(env.work.join(format!("{tag}.log"))).expect("consumer log");
    let mut command = match consumer {
        Consumer::Cfpurge => {
            let port = free_port();
            let ledger = env.work.join(format!("{tag}-ledger/ledger.json"));
            std::fs::create_dir_all(ledger.parent().expect("ledger folder"))
                .expect("create ledger folder");
            let budget = env
                .args
                .budget_paths
                .map(|n| format!("monthly_paths = {n}\n"))
                .unwrap_or_default();
            let config = format!(
                "[aws]\nregion = \"{REGION}\"\nsqs_endpoint_url = \"{}\"\n\
                 cloudfront_endpoint_url = \"{cloudfront}\"\n\
                 [source]\nqueue_url = \"{queue_url}\"\n\
                 [distributions.docs]\nid = \"{DIST}\"\n\
                 [budget]\n{budget}ledger_path = \"{}\"\n\
                 [http]\nlisten = \"127.0.0.1:{port}\"\n",
                env.sqs.endpoint,
                ledger.display(),
            );
            let file = env.work.join(format!("{tag}.toml"));
            std::fs::write(&file, config).expect("write cfpurge config");
            let mut c = Command::new(release.join("cfpurge"));
            c.arg("run").arg("-c").arg(&file);
            c.env("CFPURGE_BENCH_HTTP", format!("http://127.0.0.1:{port}"));
            c
        }
        Consumer::Naive => {
            let mut c = Command::new(release.join("examples/bench_naive"));
            c.arg(queue_url).arg(DIST);
            c
        }
        Consumer::Ceiling => {
            let mut c = Command::new(release.join("examples/bench_ceiling"));
            c.arg(queue_url);
            c
        }
    };
    command
        .env_remove("RUST_LOG")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_SQS", &env.sqs.endpoint)
        .env("AWS_ENDPOINT_URL_CLOUDFRONT", cloudfront)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    let http = command
        .as_std()
        .get_envs()
        .find(|(k, _)| *k == "CFPURGE_BENCH_HTTP")
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
    let mut child = command.spawn().expect("start consumer");
    let deadline = Instant::now() + Duration::from_secs(60);
    match &http {
        Some(base) => {
            // cfpurge: ready once its queue has answered.
            let client = reqwest::Client::new();
            loop {
                let ready = client.get(format!("{base}/readyz")).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cfpurge not ready within a minute; see {tag}.log"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        None => {
            let stdout = child.stdout.take().expect("piped stdout");
            let mut lines = BufReader::new(stdout).lines();
            let line = tokio::time::timeout_at(deadline, lines.next_line())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            assert_eq!(line.as_deref(), Some("ready"), "{tag} did not start");
        }
    }
    (child, http)
}

async fn budget_of(base: &str) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .get(format!("{base}/v1/status"))
        .send()
        .await;
    match answer {
        Ok(a) => a
            .json::<serde_json::Value>()
            .await
            .map(|v| v["budget"].clone())
            .unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// Replays `requests` into one consumer and measures it.
async fn run_one(env: &Env, consumer: Consumer, requests: &[Request], tag: &str) -> Run {
    let fake = FakeCloudFront::start(env.args.in_progress).await;
    fake.add_distribution(DIST);
    fake.faults().set_rate_limit(Some(RateLimit::AWS));
    let sqs = sqs_client(&env.sqs.endpoint);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("bench-{tag}"))
        .attributes(QueueAttributeName::VisibilityTimeout, QUEUE_VISIBILITY)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_owned();
    // --ingest: the queue is full before the consumer starts, and the clock
    // starts with the consumer.
    let prefilled = matches!(env.args.mode, Mode::Ingest(_));
    if prefilled {
        fill(&sqs, &queue_url, requests).await;
    }
    let spawned = Instant::now();
    let (mut child, http) = spawn_consumer(env, consumer, &queue_url, &fake.endpoint(), tag).await;
    let pid = child.id().expect("consumer pid");
    let budget_start = match &http {
        Some(base) => Some(budget_of(base).await),
        None => None,
    };

    // The consumer's figures, read until it is stopped.
    let ticks = env.ticks;
    let sampler = tokio::spawn(async move {
        let mut last = Usage::default();
        loop {
            match read_usage(pid, ticks) {
                Some(u) => last = u,
                None => return last,
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    });

    let start = if prefilled { spawned } else { Instant::now() };
    let mut sent = vec![start; requests.len()];
    let mut next = if prefilled { requests.len() } else { 0 };
    while next < requests.len() {
        if let Some(c) = env.args.compression {
            let due = start + Duration::from_secs_f64(requests[next].t / c);
            tokio::time::sleep_until(due).await;
        }
        // Whatever is due now goes in one batch of up to ten.
        let now = start.elapsed().as_secs_f64();
        let mut end = next + 1;
        while end < requests.len()
            && end - next < 10
            && env
                .args
                .compression
                .is_none_or(|c| requests[end].t / c <= now)
        {
            end += 1;
        }
        // The send time is when the sender asks, as a service would log it.
        let at = Instant::now();
        send_batch(&sqs, &queue_url, &requests[next..end]).await;
        for s in &mut sent[next..end] {
            *s = at;
        }
        next = end;
    }
    let send_span = sent.last().map_or(Duration::ZERO, |t| *t - start);

    let deadline = Instant::now() + env.args.deadline;
    let mut drain = None;
    let mut left = u64::MAX;
    while Instant::now() < deadline {
        if let Some(d) = depth(&sqs, &queue_url).await {
            left = d;
            if d == 0 {
                drain = Some(start.elapsed());
                break;
            }
        }
        tokio::time::sleep(DEPTH_EVERY).await;
    }
    let ran_for = start.elapsed();
    let budget_end = match &http {
        Some(base) => Some(budget_of(base).await),
        None => None,
    };
    // The last reading before the stop: what shutting down costs is not
    // part of the consumer's work on the trace.
    let usage = read_usage(pid, ticks).unwrap_or_default();
    sampler.abort();
    let held = match &http {
        Some(base) => held_of(base).await,
        None => None,
    };
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let termed = Instant::now();
    let exit_after_term = match tokio::time::timeout(TERM_WAIT, child.wait()).await {
        Ok(_) => Some(termed.elapsed()),
        Err(_) => {
            eprintln!("{tag}: no exit {TERM_WAIT:?} after SIGTERM; killing it");
            let _ = child.kill().await;
            None
        }
    };
    let _ = sqs.delete_queue().queue_url(&queue_url).send().await;

    let invalidations = fake.invalidations(DIST);
    let latencies = if consumer == Consumer::Ceiling {
        Vec::new()
    } else {
        // Requests never fully covered are left out.
        let mut waits: Vec<Duration> = coverage(
            requests
                .iter()
                .map(|r| r.paths.as_slice())
                .zip(sent.iter().copied()),
            &invalidations,
        )
        .into_iter()
        .flatten()
        .collect();
        waits.sort();
        waits
    };
    let creates = fake.calls_of(Operation::CreateInvalidation);
    let answered = |code: &str| creates.iter().filter(|c| c.outcome.code() == code).count();
    Run {
        consumer,
        messages: requests.len(),
        requested_paths: requests.iter().map(|r| r.paths.len()).sum(),
        billed_paths: invalidations.iter().map(|i| i.paths.len()).sum(),
        create_calls: creates.len(),
        throttling: answered("Throttling"),
        too_many: answered("TooManyInvalidationsInProgress"),
        send_span,
        drain,
        ran_for,
        left: if drain.is_some() { 0 } else { left },
        latencies,
        usage,
        budget: budget_start.zip(budget_end),
        held_at_term: held,
        exit_after_term,
    }
}

/// How long a consumer may take to exit after SIGTERM before it is killed.
const TERM_WAIT: Duration = Duration::from_secs(60);

/// Messages cfpurge holds, from its status.
async fn held_of(base: &str) -> Option<u64> {
    let answer = reqwest::Client::new()
        .get(format!("{base}/v1/status"))
        .send()
        .await
        .ok()?;
    let status = answer.json::<serde_json::Value>().await.ok()?;
    status["queue"]["pending_messages"].as_u64()
}

/// Sends every request before the consumer starts, [`FILL_SENDERS`] batches
/// of ten at a time.
async fn fill(sqs: &aws_sdk_sqs::Client, url: &str, requests: &[Request]) {
    let at = Instant::now();
    let requests: std::sync::Arc<Vec<Request>> = std::sync::Arc::new(requests.to_vec());
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..FILL_SENDERS {
        let (sqs, url) = (sqs.clone(), url.to_owned());
        let (requests, next) = (requests.clone(), next.clone());
        senders.spawn(async move {
            loop {
                let i = next.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
                if i >= requests.len() {
                    return;
                }
                send_batch(&sqs, &url, &requests[i..(i + 10).min(requests.len())]).await;
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.expect("a sender");
    }
    eprintln!(
        "filled the queue with {} messages in {}",
        thousands(requests.len() as u64),
        secs(at.elapsed())
    );
}

async fn send_batch(sqs: &aws_sdk_sqs::Client, url: &str, requests: &[Request]) {
    let entries: Vec<SendMessageBatchRequestEntry> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(serde_json::json!({ "paths": r.paths }).to_string())
                .build()
                .expect("an entry with an id and a body")
        })
        .collect();
    let mut pending = entries;
    for attempt in 0..10 {
        let result = sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(pending.clone()))
            .send()
            .await;
        match result {
            Ok(out) => {
                let failed: HashSet<&str> = out.failed().iter().map(|f| f.id()).collect();
                pending.retain(|e| failed.contains(e.id()));
                if pending.is_empty() {
                    return;
                }
            }
            Err(e) if attempt < 9 => eprintln!("send to SQS: {e}; again"),
            Err(e) => panic!("send to SQS: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("SQS refused {} messages ten times", pending.len());
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A figure of one run: its text, and a number for the ratios (with
/// `lower_bound` when the run only shows a lower bound, e.g. a drain that
/// did not finish).
#[derive(Clone)]
struct Cell {
    text: String,
    value: Option<f64>,
    lower_bound: bool,
}

impl Cell {
    fn count(n: usize) -> Cell {
        Cell {
            text: thousands(n as u64),
            value: Some(n as f64),
            lower_bound: false,
        }
    }

    fn na() -> Cell {
        Cell {
            text: "n/a".to_owned(),
            value: None,
            lower_bound: false,
        }
    }

    fn text(text: String) -> Cell {
        Cell {
            text,
            value: None,
            lower_bound: false,
        }
    }
}

fn ratio(a: &Cell, b: &Cell) -> String {
    match (a.value, b.value) {
        (Some(x), Some(y)) if y > 0.0 => {
            let r = x / y;
            let text = if r != 0.0 && r < 0.01 {
                format!("{r:.4}")
            } else {
                format!("{r:.2}")
            };
            match (a.lower_bound, b.lower_bound) {
                (false, false) => text,
                (false, true) => format!("< {text}"),
                (true, false) => format!("> {text}"),
                (true, true) => "–".to_owned(),
            }
        }
        _ => "–".to_owned(),
    }
}

fn latency_cell(run: &Run, q: f64) -> Cell {
    if run.consumer == Consumer::Ceiling {
        return Cell::na();
    }
    match run.percentile(q) {
        Some(d) => Cell {
            text: secs(d),
            value: Some(d.as_secs_f64()),
            lower_bound: false,
        },
        None => Cell::text("not covered by the end".to_owned()),
    }
}

fn drain_cell(run: &Run) -> Cell {
    match run.drain {
        Some(d) => Cell {
            text: secs(d),
            value: Some(d.as_secs_f64()),
            lower_bound: false,
        },
        None => Cell {
            text: format!(
                "> {} ({} of {} left)",
                secs(run.ran_for),
                thousands(run.left),
                thousands(run.messages as u64)
            ),
            value: Some(run.ran_for.as_secs_f64()),
            lower_bound: true,
        },
    }
}

fn rows(run: &Run) -> Vec<(&'static str, Cell)> {
    let creates = |n: usize| {
        if run.consumer == Consumer::Ceiling {
            Cell::na()
        } else {
            Cell::count(n)
        }
    };
    let covered = if run.consumer == Consumer::Ceiling {
        Cell::na()
    } else {
        Cell::text(format!(
            "{} of {}",
            thousands(run.latencies.len() as u64),
            thousands(run.messages as u64)
        ))
    };
    vec![
        ("messages", Cell::count(run.messages)),
        ("requested paths", Cell::count(run.requested_paths)),
        ("billed paths", creates(run.billed_paths)),
        ("CreateInvalidation calls", creates(run.create_calls)),
        ("Throttling answers", creates(run.throttling)),
        (
            "TooManyInvalidationsInProgress answers",
            creates(run.too_many),
        ),
        ("last message sent (after the first)", {
            Cell::text(secs(run.send_span))
        }),
        ("time to drain (first send to empty queue)", drain_cell(run)),
        (
            "send → covering invalidation created, p50",
            latency_cell(run, 0.50),
        ),
        (
            "send → covering invalidation created, p99",
            latency_cell(run, 0.99),
        ),
        (
            "requests fully covered by invalidations created after their send",
            covered,
        ),
        (
            "consumer peak RSS (VmHWM)",
            Cell {
                text: format!("{:.1} MiB", run.usage.peak_rss_kib as f64 / 1024.0),
                value: Some(run.usage.peak_rss_kib as f64),
                lower_bound: false,
            },
        ),
        (
            "exit after SIGTERM",
            Cell {
                text: exit_text(run),
                value: run.exit_after_term.map(|d| d.as_secs_f64()),
                lower_bound: false,
            },
        ),
        (
            "consumer CPU (user + system)",
            Cell {
                text: format!("{:.2} s", run.usage.cpu_seconds),
                value: Some(run.usage.cpu_seconds),
                lower_bound: false,
            },
        ),
    ]
}

fn table(runs: &[Run]) -> String {
    let find = |c: Consumer| runs.iter().position(|r| r.consumer == c);
    let cf = find(Consumer::Cfpurge);
    let mut ratio_columns: Vec<(String, usize)> = Vec::new();
    if cf.is_some() {
        for other in [Consumer::Naive, Consumer::Ceiling] {
            if let Some(o) = find(other) {
                ratio_columns.push((format!("cfpurge ÷ {}", other.name()), o));
            }
        }
    }
    let per_run: Vec<Vec<(&str, Cell)>> = runs.iter().map(rows).collect();
    let mut out = String::from("| |");
    for r in runs {
        out.push_str(&format!(" {} |", r.consumer.name()));
    }
    for (name, _) in &ratio_columns {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n|---|");
    for _ in 0..runs.len() + ratio_columns.len() {
        out.push_str("---:|");
    }
    out.push('\n');
    for (i, (label, _)) in per_run[0].iter().enumerate() {
        out.push_str(&format!("| {label} |"));
        for cells in &per_run {
            out.push_str(&format!(" {} |", cells[i].1.text));
        }
        for (_, o) in &ratio_columns {
            let cf = cf.expect("ratio columns need cfpurge");
            let text = if matches!(*label, "messages" | "requested paths")
                || label.starts_with("last message")
                || label.starts_with("requests fully covered")
            {
                "–".to_owned()
            } else {
                ratio(&per_run[cf][i].1, &per_run[*o][i].1)
            };
            out.push_str(&format!(" {text} |"));
        }
        out.push('\n');
    }
    out
}

fn budget_line(run: &Run) -> Option<String> {
    let (start, end) = run.budget.as_ref()?;
    Some(format!(
        "cfpurge budget ({}): limit {}, allowance at start {} (used {}), at end {} (used {}), \
         policy when spent: {}",
        start["month"].as_str().unwrap_or("?"),
        start["limit"],
        start["allowed"],
        start["used"],
        end["allowed"],
        end["used"],
        start["policy"].as_str().unwrap_or("?"),
    ))
}

/// `--emulator`: calls of each kind timed per level of messages in flight.
const PROBE_CALLS: usize = 20;

/// Times the emulator's SQS calls with `held` messages in flight, one fresh queue
/// per level: `held` messages are sent and received with a visibility
/// timeout of an hour (so they stay in flight, as messages waiting for their
/// batch do), then 20 SendMessageBatch calls of 10 messages, 20
/// ReceiveMessage calls (up to 10, no wait) and the DeleteMessageBatch calls
/// for what they received are timed one by one. Nothing else uses the emulator
/// meanwhile.
async fn probe_emulator(env: &Env, levels: &[usize]) {
    let sqs = sqs_client(&env.sqs.endpoint);
    println!(
        "{}'s SQS with messages held in flight: {PROBE_CALLS} calls of each kind, \
         10 messages a call, one call at a time; time per call, median / 90th percentile",
        env.args.sqs.name()
    );
    println!(
        "| in flight | SendMessageBatch | ReceiveMessage | DeleteMessageBatch | load average before |"
    );
    println!("|---:|---:|---:|---:|---|");
    let one = Request {
        t: 0.0,
        paths: vec!["/probe".to_owned()],
    };
    for (level, &held) in levels.iter().enumerate() {
        let load = load_average();
        let url = sqs
            .create_queue()
            .queue_name(format!("probe-{level}-{}", std::process::id()))
            .attributes(QueueAttributeName::VisibilityTimeout, "3600")
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .expect("queue url")
            .to_owned();
        for start in (0..held).step_by(10) {
            send_batch(&sqs, &url, &vec![one.clone(); (held - start).min(10)]).await;
        }
        let mut in_flight = 0;
        for _ in 0..held + 100 {
            if in_flight >= held {
                break;
            }
            in_flight += receive_ten(&sqs, &url).await.len();
        }
        assert_eq!(in_flight, held, "could not put {held} messages in flight");

        let mut send = Vec::with_capacity(PROBE_CALLS);
        for _ in 0..PROBE_CALLS {
            let at = Instant::now();
            send_batch(&sqs, &url, &vec![one.clone(); 10]).await;
            send.push(at.elapsed());
        }
        let mut receive = Vec::with_capacity(PROBE_CALLS);
        let mut handles = Vec::new();
        for _ in 0..PROBE_CALLS {
            let at = Instant::now();
            handles.extend(receive_ten(&sqs, &url).await);
            receive.push(at.elapsed());
        }
        let mut delete = Vec::new();
        for chunk in handles.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(h)
                        .build()
                        .expect("an entry with an id and a handle")
                })
                .collect();
            let at = Instant::now();
            sqs.delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("delete from the emulator");
            delete.push(at.elapsed());
        }
        println!(
            "| {} | {} | {} | {} | {load} |",
            thousands(held as u64),
            spread(&mut send),
            spread(&mut receive),
            spread(&mut delete),
        );
        let _ = sqs.delete_queue().queue_url(&url).send().await;
    }
}

/// Up to ten visible messages' receipt handles, without waiting.
async fn receive_ten(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .send()
        .await
        .expect("receive from the emulator");
    out.messages()
        .iter()
        .filter_map(|m| m.receipt_handle().map(str::to_owned))
        .collect()
}

/// "median / 90th percentile" of call times, in milliseconds.
fn spread(times: &mut [Duration]) -> String {
    times.sort();
    let at = |q: f64| {
        let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len().max(1));
        times
            .get(rank - 1)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    format!("{:.1} / {:.1} ms", at(0.5), at(0.9))
}

async fn bench(env: Env) {
    if let Mode::Emulator(levels) = &env.args.mode {
        probe_emulator(&env, levels).await;
        return;
    }
    let trace = load_trace(&env.args.trace);
    let fake = format!(
        "fake CloudFront, real time: in progress {} s, creates {}/s with a burst of {}, \
         3,000 exact / 15 wildcard paths in flight; one fresh fake and queue per consumer",
        env.args.in_progress.as_secs_f64(),
        RateLimit::AWS.per_second,
        RateLimit::AWS.burst,
    );
    match env.args.mode {
        Mode::Ingest(n) => ingest(&env, &trace, n, &fake).await,
        Mode::Storm(n) => storm(&env, &trace, n, &fake).await,
        Mode::Trace | Mode::Emulator(_) => {
            let span = trace.last().map_or(0.0, |r| r.t);
            println!(
                "trace: {} ({} messages, {} paths over {:.1} days), {}",
                env.args
                    .trace
                    .file_name()
                    .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
                thousands(trace.len() as u64),
                thousands(trace.iter().map(|r| r.paths.len() as u64).sum()),
                span / 86_400.0,
                match env.args.compression {
                    Some(c) => format!("compressed {c}× into {:.1} s", span / c),
                    None => "sent as fast as SQS takes it".to_owned(),
                }
            );
            println!("{fake}");
            let mut runs = Vec::new();
            for &consumer in &env.args.only {
                let load = load_average();
                let tag = format!("{}-{}", consumer.name(), std::process::id());
                eprintln!("running {} (load {load})", consumer.name());
                let run = run_one(&env, consumer, &trace, &tag).await;
                println!(
                    "{}: load average before {load}, after {}",
                    consumer.name(),
                    load_average()
                );
                if let Some(line) = budget_line(&run) {
                    println!("{line}");
                }
                runs.push(run);
            }
            println!();
            println!("{}", table(&runs));
        }
    }
}

/// `--ingest`: the same filled queue drained by each consumer in turn.
async fn ingest(env: &Env, trace: &[Request], n: usize, fake: &str) {
    let set = generate(trace, n, 1, 0x5EED);
    let distinct: HashSet<&str> = set
        .iter()
        .flat_map(|r| r.paths.iter().map(String::as_str))
        .collect();
    println!("{fake}");
    println!(
        "ingest: {} messages, {} paths ({} distinct), filled into {}'s SQS before each \
         consumer starts; drain timed from the consumer's start",
        thousands(n as u64),
        thousands(set.iter().map(|r| r.paths.len() as u64).sum()),
        thousands(distinct.len() as u64),
        env.args.sqs.name(),
    );
    let mut runs = Vec::new();
    for &consumer in &env.args.only {
        let load = load_average();
        let tag = format!("{}-ingest-{n}-{}", consumer.name(), std::process::id());
        eprintln!("running {} on {n} messages (load {load})", consumer.name());
        let run = run_one(env, consumer, &set, &tag).await;
        println!(
            "{}: load average before {load}, after {}",
            consumer.name(),
            load_average()
        );
        println!("{}", ingest_row(&run, None));
        runs.push(run);
    }
    let ceiling = runs
        .iter()
        .find(|r| r.consumer == Consumer::Ceiling)
        .and_then(Run::rate);
    println!();
    println!("{INGEST_HEADER}");
    for run in &runs {
        println!("{}", ingest_row(run, ceiling));
    }
}

const INGEST_HEADER: &str = "| consumer | messages | time to drain | messages/s | ÷ ceiling | \
     invalidations | billed paths | peak RSS | CPU | CPU per 1,000 messages | exit after SIGTERM |\n\
     |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

fn ingest_row(run: &Run, ceiling: Option<f64>) -> String {
    let rate = run.rate().map_or_else(
        || format!("< {:.0}", run.messages as f64 / run.ran_for.as_secs_f64()),
        |r| format!("{r:.0}"),
    );
    let ratio = match (run.rate(), ceiling) {
        (Some(r), Some(c)) if c > 0.0 => format!("{:.2}", r / c),
        _ => "–".to_owned(),
    };
    let na_or = |n: usize| {
        if run.consumer == Consumer::Ceiling {
            "n/a".to_owned()
        } else {
            thousands(n as u64)
        }
    };
    format!(
        "| {} | {} | {} | {rate} | {ratio} | {} | {} | {:.1} MiB | {:.2} s | {:.3} s | {} |",
        run.consumer.name(),
        thousands(run.messages as u64),
        drain_cell(run).text,
        na_or(run.create_calls),
        na_or(run.billed_paths),
        run.usage.peak_rss_kib as f64 / 1024.0,
        run.usage.cpu_seconds,
        run.usage.cpu_seconds * 1000.0 / run.messages as f64,
        exit_text(run),
    )
}

fn exit_text(run: &Run) -> String {
    match run.exit_after_term {
        Some(d) => secs(d),
        None => format!("killed after {}", secs(TERM_WAIT)),
    }
}

/// `--storm`: generated messages sent as fast as SQS takes them.
async fn storm(env: &Env, trace: &[Request], n: usize, fake: &str) {
    let set = generate(trace, n, (n / 10).max(1) as u64, 0x5EED);
    println!("{fake}");
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!(
        "storm: {} messages, {} paths, sent as fast as {}'s SQS takes them (batches of 10); \
         wall clock at the start: {} UTC{}",
        thousands(n as u64),
        thousands(set.iter().map(|r| r.paths.len() as u64).sum()),
        env.args.sqs.name(),
        utc(today),
        env.args
            .on
            .as_ref()
            .map_or_else(String::new, |d| format!(" (--on {d})")),
    );
    println!("{STORM_HEADER}");
    let mut rows = Vec::new();
    for &consumer in &env.args.only {
        let load = load_average();
        let tag = format!("{}-storm-{n}-{}", consumer.name(), std::process::id());
        eprintln!("running {} on {n} messages (load {load})", consumer.name());
        let run = run_one(env, consumer, &set, &tag).await;
        println!(
            "{}: load average before {load}, after {}",
            consumer.name(),
            load_average()
        );
        if let Some(line) = budget_line(&run) {
            println!("{line}");
        }
        // Each row as soon as it is known: a long run may be cut short.
        let row = storm_row(&run);
        println!("{row}");
        rows.push(row);
    }
    println!();
    println!("{STORM_HEADER}");
    for row in &rows {
        println!("{row}");
    }
}

const STORM_HEADER: &str = "| consumer | messages | paths | last sent | time until all covered | \
     billed paths | CreateInvalidation calls | TooMany answers | p50 / p99 send → covered | \
     peak RSS | CPU | held at SIGTERM | exit after SIGTERM |\n\
     |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

fn storm_row(run: &Run) -> String {
    let covered = if run.latencies.len() == run.messages {
        run.latencies
            .last()
            .map_or_else(|| "–".to_owned(), |d| secs(*d))
    } else {
        format!(
            "{} of {} not covered",
            thousands((run.messages - run.latencies.len()) as u64),
            thousands(run.messages as u64)
        )
    };
    format!(
        "| {} | {} | {} | {} | {covered} | {} | {} | {} | {} / {} | {:.1} MiB | {:.2} s | {} | {} |",
        run.consumer.name(),
        thousands(run.messages as u64),
        thousands(run.requested_paths as u64),
        secs(run.send_span),
        thousands(run.billed_paths as u64),
        thousands(run.create_calls as u64),
        thousands(run.too_many as u64),
        latency_cell(run, 0.5).text,
        latency_cell(run, 0.99).text,
        run.usage.peak_rss_kib as f64 / 1024.0,
        run.usage.cpu_seconds,
        run.held_at_term.map_or_else(|| "n/a".to_owned(), thousands),
        exit_text(run),
    )
}

/// `YYYY-MM-DD hh:mm` of seconds since the epoch (civil from days, after
/// Howard Hinnant's algorithm).
fn utc(epoch_seconds: u64) -> String {
    let days = (epoch_seconds / 86_400) as i64;
    let minutes = (epoch_seconds % 86_400) / 60;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        minutes / 60,
        minutes % 60
    )
}
#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("{e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = root.join(format!("target/bench/{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("create the run's folder");
    let sqs = match args.sqs {
        Sqs::Moto => {
            let program = std::env::var_os("CFPURGE_MOTO_SERVER")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".venv/bin/moto_server"));
            Emulator::moto(&program, &work.join("moto.log")).await
        }
        Sqs::LocalStack => {
            let python = std::env::var_os("CFPURGE_LOCALSTACK_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join(".localstack/venv/bin/python"));
            let files = work.join("localstack");
            std::fs::create_dir_all(&files).expect("create LocalStack's folder");
            Emulator::localstack(&python, &files, &work.join("localstack.log")).await
        }
    };
    eprintln!("logs and configurations in {}", work.display());
    let env = Env {
        root,
        sqs,
        work,
        ticks: ticks_per_second(),
        args,
    };
    // Ctrl-C drops the run: the consumer (kill_on_drop) and the emulator stop.
    tokio::select! {
        () = bench(env) => {}
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted"),
    }
}
