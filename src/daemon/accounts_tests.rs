//! Several AWS accounts in one daemon, run whole on paused time against the
//! local queue and the simulated CloudFront: each account's budget and
//! CreateInvalidation rate are its own.

use super::*;
use crate::budget::MemoryStore;
use crate::cloudfront::simulate::SimulatedCloudFront;
use crate::source::local::LocalQueue;

const WWW: &str = "E1WWWWWWWWWWWW";
const BLOG: &str = "E2BBBBBBBBBBBB";
const SHOP: &str = "E3SSSSSSSSSSSS";

/// `www` and `blog` in the default account, `shop` in `prod`.
fn config(extra: &str) -> Config {
    config_in("prod", extra)
}

/// `www` and `blog` in the default account, `shop` in `account`.
fn config_in(account: &str, extra: &str) -> Config {
    let toml = format!(
        r#"
[source]
kind = "local"
visibility_timeout_seconds = 60
[distributions.www]
id = "{WWW}"
[distributions.blog]
id = "{BLOG}"
[distributions.shop]
id = "{SHOP}"
account = "{account}"
[accounts.{account}]
monthly_paths = 1000
[batching]
quiet_seconds = 1
max_delay_seconds = 5
[coalesce]
wildcard_threshold = 1000
[cloudfront]
mode = "simulate"
poll_interval_seconds = 5
simulate_completion_seconds = 30
{extra}
"#
    );
    Config::from_parts(Some(&toml), "test", std::iter::empty()).expect("config")
}

struct Run {
    queue: LocalQueue,
    cloudfront: SimulatedCloudFront,
    default_ledger: MemoryStore,
    prod_ledger: MemoryStore,
    observers: Observers,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Totals>,
}

type Local = Daemon<LocalQueue, SimulatedCloudFront>;

/// The daemon on `config`, each account's ledger in memory.
fn start(config: &Config) -> Run {
    let (default_ledger, prod_ledger) = (MemoryStore::new(), MemoryStore::new());
    let (default_store, prod_store) = (default_ledger.clone(), prod_ledger.clone());
    Run {
        default_ledger,
        prod_ledger,
        ..start_with(config, |daemon| {
            daemon
                .with_account_ledger("default", AnyStore::Memory(default_store))
                .with_account_ledger("prod", AnyStore::Memory(prod_store))
        })
    }
}

/// The daemon on `config`, its ledgers given by `ledgers` (the run's own
/// `default_ledger` and `prod_ledger` are then not the daemon's).
fn start_with(config: &Config, ledgers: impl FnOnce(Local) -> Local) -> Run {
    let queue = LocalQueue::new(Duration::from_secs(60));
    let cloudfront = SimulatedCloudFront::new(
        [WWW, BLOG, SHOP].map(str::to_owned),
        Duration::from_secs(30),
    );
    let daemon = ledgers(Daemon::new(config, queue.clone(), cloudfront.clone()));
    let observers = daemon.observers();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(daemon.run(cancel.clone()));
    Run {
        queue,
        cloudfront,
        default_ledger: MemoryStore::new(),
        prod_ledger: MemoryStore::new(),
        observers,
        cancel,
        task,
    }
}

impl Run {
    async fn send(&self, distribution: &str, paths: &[String]) {
        for p in paths {
            self.queue
                .send(&format!(
                    r#"{{"distribution":"{distribution}","paths":["{p}"]}}"#
                ))
                .await
                .expect("send");
        }
    }

    /// Billed paths CloudFront holds for the distribution `id`.
    fn billed(&self, id: &str) -> usize {
        self.cloudfront
            .created()
            .into_iter()
            .filter(|(target, _)| target == id)
            .map(|(_, inv)| inv.paths.len())
            .sum()
    }

    fn invalidations(&self, id: &str) -> usize {
        self.cloudfront
            .created()
            .into_iter()
            .filter(|(target, _)| target == id)
            .count()
    }

    async fn stop(self) -> Totals {
        self.cancel.cancel();
        self.task.await.expect("run ends")
    }
}

fn spent(store: &MemoryStore) -> u64 {
    let state = store.load().expect("load").expect("a ledger");
    state.spent + state.external
}

/// Paths at the top, which no wildcard but the disallowed `/*` covers:
/// each is billed on its own.
fn paths(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/{prefix}-{i}.html")).collect()
}

#[tokio::test(start_paused = true)]
async fn one_account_spent_does_not_hold_another() {
    let run = start(&config(
        r#"
create_per_second = 100
create_burst = 100
[budget]
monthly_paths = 5
pacing = "none"
on_exhausted = "hold"
"#,
    ));
    // The default account's 5 paths are spent by www; what is left of it
    // waits.
    run.send("www", &paths("www", 8)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(run.billed(WWW), 5);
    assert_eq!(spent(&run.default_ledger), 5);
    // blog shares that budget: held.
    run.send("blog", &paths("blog", 2)).await;
    // shop's account has 1,000 of its own: all of it goes out.
    run.send("shop", &paths("shop", 40)).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(run.billed(SHOP), 40, "prod's budget is its own");
    assert_eq!(spent(&run.prod_ledger), 40);
    assert_eq!(run.billed(BLOG), 0, "blog shares the spent default budget");
    assert_eq!(spent(&run.default_ledger), 5);
    // Each account's budget is shown, and counted under its name.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = run.observers.status.snapshot();
    assert_eq!(status.accounts["default"].budget.used, 5);
    assert_eq!(status.accounts["default"].budget.limit, 5);
    assert_eq!(status.accounts["prod"].budget.used, 40);
    assert_eq!(status.accounts["prod"].budget.limit, 1000);
    assert_eq!(
        status.distributions["shop"].account.as_deref(),
        Some("prod")
    );
    let json = serde_json::to_value(&*status).expect("json");
    assert_eq!(json["accounts"]["prod"]["used"], 40);
    let text = crate::metrics::encode(&run.observers.registry);
    assert!(
        text.contains("cfpurge_budget_paths_used{account=\"prod\"} 40"),
        "{text}"
    );
    assert!(
        text.contains("cfpurge_budget_paths_used{account=\"default\"} 5"),
        "{text}"
    );
    // Each account's price has its series (under pacing "none" the price
    // is coalesce.blast_per_path).
    for account in ["default", "prod"] {
        assert!(
            text.contains(&format!(
                "cfpurge_budget_price{{account=\"{account}\"}} 50\n"
            )),
            "{text}"
        );
        assert_eq!(status.accounts[account].budget.price, 50.0);
    }
    assert!(
        run.observers.readiness.is_ready(),
        "{:?}",
        run.observers.readiness.reasons()
    );
    let held = run.queue.len();
    assert_eq!(held, 3 + 2, "www's last 3 and blog's 2 wait");
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn each_account_has_its_own_create_rate() {
    // One CreateInvalidation per 100 s per account, no burst.
    let run = start(&config(
        r#"
create_per_second = 0.01
create_burst = 1
[budget]
pacing = "none"
"#,
    ));
    run.send("www", &paths("www", 1)).await;
    run.send("blog", &paths("blog", 1)).await;
    run.send("shop", &paths("shop", 1)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    // The default account's one call went to www or blog; prod's to shop,
    // at once, not after the default account's interval.
    assert_eq!(run.invalidations(SHOP), 1, "prod's rate is its own");
    assert_eq!(
        run.invalidations(WWW) + run.invalidations(BLOG),
        1,
        "www and blog share the default account's rate"
    );
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(run.invalidations(WWW) + run.invalidations(BLOG), 2);
    let totals = run.stop().await;
    assert_eq!(totals.invalidations, 3);
}

#[tokio::test(start_paused = true)]
async fn a_ledger_that_cannot_be_written_holds_only_its_own_account() {
    let config = config(
        r#"
create_per_second = 100
create_burst = 100
[budget]
pacing = "none"
"#,
    );
    // prod's ledger file sits under a regular file: it can never be
    // written.
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").expect("write");
    let prod = AnyStore::File(crate::budget::FileStore::new(blocker.join("ledger.json")));
    let run = start_with(&config, |daemon| {
        daemon
            .with_account_ledger("default", AnyStore::Memory(MemoryStore::new()))
            .with_account_ledger("prod", prod)
    });
    run.send("www", &paths("www", 3)).await;
    run.send("shop", &paths("shop", 3)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(run.billed(WWW), 3, "the default account goes on");
    assert_eq!(run.billed(SHOP), 0, "nothing is spent without its ledger");
    let reasons = run.observers.readiness.reasons();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("ledger:prod: the budget ledger of account prod is not usable")),
        "{reasons:?}"
    );
    assert!(
        !reasons
            .iter()
            .any(|r| r.starts_with("ledger:") && !r.starts_with("ledger:prod")),
        "{reasons:?}"
    );
    assert_eq!(run.queue.len(), 3, "shop's requests wait");
    // The folder is fixed: prod's ledger opens at its next try, and shop's
    // requests go out without a restart.
    std::fs::remove_file(&blocker).expect("remove");
    std::fs::create_dir(&blocker).expect("mkdir");
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(
        run.billed(SHOP),
        3,
        "{:?}",
        run.observers.readiness.reasons()
    );
    assert!(
        run.observers.readiness.is_ready(),
        "{:?}",
        run.observers.readiness.reasons()
    );
    assert!(blocker.join("ledger.json").exists());
    run.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_status_budget_stays_the_default_accounts_beside_an_account_named_before_it() {
    // "ads" sorts before "default".
    let config = config_in(
        "ads",
        r#"
create_per_second = 100
create_burst = 100
[budget]
monthly_paths = 5
pacing = "none"
"#,
    );
    let run = start_with(&config, |daemon| {
        daemon
            .with_ledger(AnyStore::Memory(MemoryStore::new()))
            .with_account_ledger("ads", AnyStore::Memory(MemoryStore::new()))
    });
    run.send("www", &paths("www", 2)).await;
    run.send("shop", &paths("shop", 3)).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!((run.billed(WWW), run.billed(SHOP)), (2, 3));
    let status = run.observers.status.snapshot();
    assert_eq!(status.accounts["ads"].budget.used, 3);
    assert_eq!(
        (status.budget.used, status.budget.limit),
        (2, 5),
        "`budget` is the default account's"
    );
    run.stop().await;
}
