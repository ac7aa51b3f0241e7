//! `[accounts.NAME]`: several AWS accounts in one daemon. AWS bills the
//! invalidation paths and limits CreateInvalidation per account, so the
//! budget (ledger, pacing, price) and the create rate are kept per account;
//! a distribution names its account with `account`. Without any
//! `[accounts]` table every distribution belongs to [`DEFAULT_ACCOUNT`],
//! reached with the default credentials: the single-account daemon.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{BudgetConfig, Config, Validator};

/// The account of a distribution that names none: the default credentials
/// of the AWS provider chain, and `[budget]` as written.
pub const DEFAULT_ACCOUNT: &str = "default";

/// The longest STS session name AWS accepts.
const MAX_SESSION_NAME: usize = 64;

/// `[accounts.NAME]`: one AWS account.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AccountConfig {
    /// The role cfpurge assumes (STS AssumeRole) to call CloudFront in this
    /// account; unset, the default credentials are used, as for an account
    /// that is the daemon's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy asks for, if it asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// This account's paths per month, instead of `budget.monthly_paths`:
    /// each account has its own free tier and its own bill.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monthly_paths: Option<u64>,
}

impl Config {
    /// The account `alias` belongs to ([`DEFAULT_ACCOUNT`] when it names
    /// none, or is not configured).
    pub fn account_of(&self, alias: &str) -> &str {
        self.distributions
            .get(alias)
            .and_then(|d| d.account.as_deref())
            .unwrap_or(DEFAULT_ACCOUNT)
    }

    /// Every account with a distribution, in name order: the budgets kept.
    /// Only [`DEFAULT_ACCOUNT`] without `[accounts]`.
    pub fn budget_accounts(&self) -> Vec<String> {
        let mut names: BTreeSet<&str> = self
            .distributions
            .keys()
            .map(|alias| self.account_of(alias))
            .collect();
        if names.is_empty() {
            names.insert(DEFAULT_ACCOUNT);
        }
        names.into_iter().map(str::to_owned).collect()
    }

    /// The account meant where one budget stands for all (`budget` in
    /// `/v1/status`, `ledger import` without `--account`, replay's ledger):
    /// the default account while a distribution is in it, so that adding
    /// `[accounts.NAME]` never changes what those mean; else the first by
    /// name.
    pub fn main_account(&self) -> String {
        let accounts = self.budget_accounts();
        if accounts.iter().any(|a| a == DEFAULT_ACCOUNT) {
            return DEFAULT_ACCOUNT.to_owned();
        }
        accounts
            .into_iter()
            .next()
            .unwrap_or_else(|| DEFAULT_ACCOUNT.to_owned())
    }

    /// Whether more than the default account is in use: the single-account
    /// daemon's names (files, items, readiness) stay as they were without.
    pub fn has_accounts(&self) -> bool {
        self.budget_accounts() != [DEFAULT_ACCOUNT]
    }

    /// The `[accounts.NAME]` table of `account`, if one is written.
    pub fn account(&self, account: &str) -> Option<&AccountConfig> {
        self.accounts.get(account)
    }

    /// `[budget]` as `account` applies it: its own `monthly_paths` when it
    /// sets one.
    pub fn budget_for(&self, account: &str) -> BudgetConfig {
        let mut budget = self.budget.clone();
        if let Some(paths) = self.account(account).and_then(|a| a.monthly_paths) {
            budget.monthly_paths = paths;
        }
        budget
    }

    /// The distributions of each account, for `check-config`'s summary.
    pub fn accounts_summary(&self) -> Vec<String> {
        let mut by_account: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for alias in self.distributions.keys() {
            by_account
                .entry(self.account_of(alias))
                .or_default()
                .push(alias);
        }
        by_account
            .into_iter()
            .map(|(account, aliases)| {
                let how = match self.account(account).and_then(|a| a.role_arn.as_deref()) {
                    Some(role) => format!("role {role}"),
                    None => "the default credentials".to_owned(),
                };
                let budget = self.budget_for(account);
                format!(
                    "account {account} ({how}, {} paths a month): {}",
                    budget.monthly_paths,
                    aliases.join(", ")
                )
            })
            .collect()
    }

    /// `[accounts.NAME]` tables no distribution names: no budget is kept
    /// for them and their role is never assumed, which is likely a typo in
    /// a distribution's `account`.
    pub(super) fn account_warnings(&self) -> Vec<String> {
        self.accounts
            .keys()
            .filter(|name| {
                !self
                    .distributions
                    .keys()
                    .any(|alias| self.account_of(alias) == name.as_str())
            })
            .map(|name| {
                format!(
                    "accounts.{name} is configured but no distribution names it \
                     (account = \"{name}\"): it is not used"
                )
            })
            .collect()
    }

    pub(super) fn check_accounts(&self, v: &mut Validator) {
        for (name, account) in &self.accounts {
            let key = format!("accounts.{name}");
            if !super::distributions::valid_alias(name) {
                v.push(
                    &key,
                    "has an invalid name: use 1 to 64 of a-z, 0-9, _ and - without \"__\" \
                     (names are lowercase because environment overrides \
                     CFPURGE__ACCOUNTS__NAME__KEY reach only lowercase keys)",
                );
            }
            if let Some(arn) = &account.role_arn
                && let Err(why) = role_arn_problem(arn)
            {
                v.push(&format!("{key}.role_arn"), why);
            }
            if let Some(id) = &account.external_id {
                // STS: 2 to 1,224 of letters, digits and +=,.@:/-
                let ok = (2..=1224).contains(&id.len())
                    && id.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b':' | b'/' | b'-')
                    });
                if !ok {
                    v.push(
                        &format!("{key}.external_id"),
                        "must be 2 to 1224 of A-Z, a-z, 0-9 and +=,.@:/- (STS's rule)",
                    );
                }
                if account.role_arn.is_none() {
                    v.push(
                        &format!("{key}.external_id"),
                        "is set without role_arn: it is only sent when a role is assumed",
                    );
                }
            }
            if let Some(paths) = account.monthly_paths {
                v.at_least(&format!("{key}.monthly_paths"), paths, 1);
            }
        }
        // A distribution belongs to one account: tenants of one
        // multi-tenant distribution too, since its calls go through one
        // account's credentials.
        let mut owner: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for (alias, d) in &self.distributions {
            let account = self.account_of(alias);
            if let Some(named) = &d.account
                && named != DEFAULT_ACCOUNT
                && !self.accounts.contains_key(named)
            {
                let known: Vec<&str> = self.accounts.keys().map(String::as_str).collect();
                v.push(
                    &format!("distributions.{alias}.account"),
                    format!(
                        "names {named:?}, which is not configured: add [accounts.{named}] \
                         (configured: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
            if let Some((other_alias, other_account)) = owner.insert(&d.id, (alias, account))
                && other_account != account
            {
                v.push(
                    &format!("distributions.{alias}.account"),
                    format!(
                        "is {account:?}, but distributions.{other_alias} has the same distribution id {:?} \
                         in account {other_account:?}: a distribution lives in one account",
                        d.id
                    ),
                );
            }
        }
    }
}

/// The session name of the role's sessions, as CloudTrail shows them:
/// `cfpurge-<account>`, cut to STS's limit.
pub fn session_name(account: &str) -> String {
    let mut name = format!("cfpurge-{account}");
    name.truncate(MAX_SESSION_NAME);
    name
}

/// Why `arn` is not an IAM role's ARN (`arn:PARTITION:iam::ACCOUNT:role/NAME`).
fn role_arn_problem(arn: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{arn:?} is not an IAM role ARN such as \"arn:aws:iam::123456789012:role/cfpurge\": {why}"
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return bad("it has fewer than six parts separated by ':'");
    };
    if prefix != "arn" {
        return bad("it does not start with \"arn:\"");
    }
    if !matches!(partition, "aws" | "aws-cn" | "aws-us-gov") {
        return bad("the partition is not aws, aws-cn or aws-us-gov");
    }
    if service != "iam" || !region.is_empty() {
        return bad("the service must be iam, with no region (\"arn:aws:iam::\")");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return bad("the account id must be 12 digits");
    }
    let Some(name) = resource.strip_prefix("role/") else {
        return bad("the resource must be role/NAME");
    };
    let role = name.rsplit('/').next().unwrap_or_default();
    let ok = (1..=64).contains(&role.len())
        && role.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b'_' | b'-')
        });
    if !ok {
        return bad("the role name must be 1 to 64 of A-Z, a-z, 0-9 and +=,.@_-");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[source]
kind = "local"

[distributions.www]
id = "E1AAAAAAAAAAAA"

[distributions.shop]
id = "E2BBBBBBBBBBBB"
account = "prod"
"#;

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_parts(Some(&format!("{BASE}{extra}")), "test.toml", Vec::new())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_distribution_names_its_account_and_the_budget_follows_it() {
        let cfg = load(
            r#"
[budget]
monthly_paths = 1000
[accounts.prod]
role_arn = "arn:aws:iam::123456789012:role/cfpurge"
external_id = "cfpurge-prod"
monthly_paths = 5000
"#,
        )
        .unwrap();
        assert_eq!(cfg.account_of("www"), DEFAULT_ACCOUNT);
        assert_eq!(cfg.account_of("shop"), "prod");
        assert_eq!(cfg.budget_accounts(), ["default", "prod"]);
        assert!(cfg.has_accounts());
        assert_eq!(cfg.budget_for("prod").monthly_paths, 5000);
        assert_eq!(cfg.budget_for(DEFAULT_ACCOUNT).monthly_paths, 1000);
        assert_eq!(
            cfg.accounts_summary(),
            [
                "account default (the default credentials, 1000 paths a month): www",
                "account prod (role arn:aws:iam::123456789012:role/cfpurge, 5000 paths a month): shop",
            ]
        );
    }

    #[test]
    fn the_main_account_is_the_default_one_while_a_distribution_is_in_it() {
        // "ads" sorts before "default": the default account stays the main
        // one, so adding an account never changes what `budget` means.
        let ads = format!("{}[accounts.ads]\n", BASE.replace("prod", "ads"));
        let cfg = Config::from_parts(Some(&ads), "test.toml", vec![]).unwrap();
        assert_eq!(cfg.budget_accounts(), ["ads", "default"]);
        assert_eq!(cfg.main_account(), DEFAULT_ACCOUNT);
        // With no distribution in it the default account keeps no budget:
        // the first by name is the main one.
        let only_named = Config::from_parts(
            Some(
                "[source]\nkind = \"local\"\n[distributions.shop]\nid = \"E2BBBBBBBBBBBB\"\n\
                 account = \"prod\"\n[distributions.lab]\nid = \"E3CCCCCCCCCCCC\"\n\
                 account = \"lab\"\n[accounts.prod]\n[accounts.lab]\n",
            ),
            "test.toml",
            vec![],
        )
        .unwrap();
        assert_eq!(only_named.budget_accounts(), ["lab", "prod"]);
        assert_eq!(only_named.main_account(), "lab");
    }

    #[test]
    fn without_accounts_everything_is_the_default_account() {
        let cfg = Config::from_parts(
            Some("[source]\nkind = \"local\"\n[distributions.www]\nid = \"E1AAAAAAAAAAAA\"\n"),
            "test.toml",
            Vec::new(),
        )
        .unwrap();
        assert_eq!(cfg.budget_accounts(), [DEFAULT_ACCOUNT]);
        assert!(!cfg.has_accounts());
        // The effective configuration prints nothing new.
        let text = toml::to_string(&cfg).unwrap();
        assert!(!text.contains("account"), "{text}");
    }

    #[test]
    fn an_unknown_account_is_named_with_those_configured() {
        let e = load("[accounts.staging]\n").unwrap_err();
        assert!(
            e.contains("distributions.shop.account names \"prod\", which is not configured: add [accounts.prod] (configured: staging)"),
            "{e}"
        );
    }

    #[test]
    fn bad_role_arns_and_external_ids_name_the_key() {
        for (arn, why) in [
            ("arn:aws:iam::12345:role/x", "12 digits"),
            ("arn:aws:s3::123456789012:role/x", "service must be iam"),
            ("arn:aws:iam::123456789012:user/x", "role/NAME"),
            ("role/x", "six parts"),
            ("arn:aws:iam::123456789012:role/", "role name"),
        ] {
            let e = load(&format!("[accounts.prod]\nrole_arn = \"{arn}\"\n")).unwrap_err();
            assert!(e.contains("accounts.prod.role_arn"), "{arn}: {e}");
            assert!(e.contains(why), "{arn}: {e}");
        }
        let ok =
            load("[accounts.prod]\nrole_arn = \"arn:aws:iam::123456789012:role/team/cfpurge\"\n");
        assert!(ok.is_ok(), "{ok:?}");
        let e = load("[accounts.prod]\nexternal_id = \"abc\"\n").unwrap_err();
        assert!(
            e.contains("accounts.prod.external_id is set without role_arn"),
            "{e}"
        );
        let e = load(
            "[accounts.prod]\nrole_arn = \"arn:aws:iam::123456789012:role/x\"\nexternal_id = \"a b\"\n",
        )
        .unwrap_err();
        assert!(e.contains("accounts.prod.external_id must be"), "{e}");
        let e = load("[accounts.prod]\nmonthly_paths = 0\n").unwrap_err();
        assert!(e.contains("accounts.prod.monthly_paths must be ≥ 1"), "{e}");
        let e = load("[accounts.Prod]\n[accounts.prod]\n").unwrap_err();
        assert!(e.contains("accounts.Prod has an invalid name"), "{e}");
    }

    #[test]
    fn one_distribution_id_lives_in_one_account() {
        let e = load(
            r#"
[accounts.prod]
[distributions.t1]
id = "E2BBBBBBBBBBBB"
tenant_id = "dt_1"
"#,
        )
        .unwrap_err();
        assert!(
            e.contains("distributions.t1.account is \"default\", but distributions.shop has the same distribution id"),
            "{e}"
        );
    }

    #[test]
    fn an_account_is_set_from_the_environment() {
        let cfg = Config::from_parts(
            Some(BASE),
            "test.toml",
            vec![
                (
                    "CFPURGE__ACCOUNTS__PROD__ROLE_ARN".to_owned(),
                    "arn:aws:iam::123456789012:role/cfpurge".to_owned(),
                ),
                (
                    "CFPURGE__ACCOUNTS__PROD__MONTHLY_PATHS".to_owned(),
                    "2000".to_owned(),
                ),
            ],
        )
        .unwrap();
        assert_eq!(cfg.budget_for("prod").monthly_paths, 2000);
        assert_eq!(
            cfg.account("prod").and_then(|a| a.role_arn.as_deref()),
            Some("arn:aws:iam::123456789012:role/cfpurge")
        );
    }

    #[test]
    fn an_account_no_distribution_names_is_a_warning() {
        let cfg = load("[accounts.prod]\n[accounts.staging]\n").unwrap();
        assert_eq!(
            cfg.warnings(),
            [
                "accounts.staging is configured but no distribution names it (account = \"staging\"): it is not used"
            ]
        );
        assert!(load("[accounts.prod]\n").unwrap().warnings().is_empty());
    }

    #[test]
    fn session_names_fit_sts() {
        assert_eq!(session_name("prod"), "cfpurge-prod");
        assert_eq!(session_name(&"a".repeat(64)).len(), MAX_SESSION_NAME);
    }
}

#[cfg(test)]
mod check_config_tests {
    #[test]
    fn check_config_tells_which_account_each_distribution_uses_and_only_with_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cfpurge.toml");
        let base = "[source]\nkind = \"local\"\n[distributions.www]\nid = \"E1AAAAAAAAAAAA\"\n";
        std::fs::write(&file, base).unwrap();
        let mut out = Vec::new();
        crate::commands::check_config::check_config(&file, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("# account"), "{text}");
        std::fs::write(
            &file,
            format!(
                "{base}[distributions.shop]\nid = \"E2BBBBBBBBBBBB\"\naccount = \"prod\"\n\
                 [accounts.prod]\nrole_arn = \"arn:aws:iam::210987654321:role/cfpurge\"\n"
            ),
        )
        .unwrap();
        let mut out = Vec::new();
        crate::commands::check_config::check_config(&file, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "# account default (the default credentials, 1000 paths a month): www\n\
                 # account prod (role arn:aws:iam::210987654321:role/cfpurge, 1000 paths a month): shop\n"
            ),
            "{text}"
        );
        // What it prints loads again.
        let printed: toml::Table = text.parse().unwrap();
        assert!(printed["accounts"]["prod"]["role_arn"].is_str());
    }
}
