//! `[budget]`: the month's path allowance, its pacing, what happens once
//! it is spent, and where the ledger is kept.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Config, Validator};

/// `[budget]`: the month's path allowance.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Paths the account may spend per calendar month (UTC); AWS bills every
    /// path past the first 1,000 a month.
    pub monthly_paths: u64,
    /// `even` keeps spending within the month's elapsed share (plus
    /// `burst_paths`) so an early storm cannot spend the whole month;
    /// `none` is first come, first served.
    pub pacing: Pacing,
    /// How far `even` pacing may run ahead of the elapsed share, so a normal
    /// deploy is never held.
    pub burst_paths: u64,
    /// What happens once the allowance is spent.
    pub on_exhausted: OnExhausted,
    /// The ledger file that survives restarts, so that spending is never
    /// under-counted; its folder must be writable.
    pub ledger_path: PathBuf,
    /// Count invalidation paths other tools create on the configured
    /// distributions, since AWS bills the account for them too.
    pub count_external: bool,
    /// Where the ledger lives: the file at `ledger_path`, or an item in
    /// `coordination.table` (for replicas, or a container without a disk).
    pub store: StoreKind,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            monthly_paths: 1000,
            pacing: Pacing::Even,
            burst_paths: 100,
            on_exhausted: OnExhausted::Coalesce,
            ledger_path: PathBuf::from("/var/lib/cfpurge/ledger.json"),
            count_external: true,
            store: StoreKind::File,
        }
    }
}

choice! {
    /// `budget.pacing`
    pub enum Pacing ("a pacing") {
        /// Spending may not run ahead of the month's elapsed share plus
        /// `burst_paths`.
        Even = "even",
        /// First come, first served.
        None = "none",
    }
}

choice! {
    /// `budget.on_exhausted`
    pub enum OnExhausted ("an exhaustion policy") {
        /// Submit nothing; keep requests queued until allowance returns.
        Hold = "hold",
        /// At most one path per distribution per batch: its widest allowed
        /// wildcard.
        Coalesce = "coalesce",
        /// Plan as usual, count and alert.
        Overspend = "overspend",
    }
}

choice! {
    /// `budget.store`
    pub enum StoreKind ("a ledger store") {
        /// The file at `budget.ledger_path`.
        File = "file",
        /// An item in `coordination.table`.
        Dynamodb = "dynamodb",
    }
}

impl Config {
    pub(super) fn check_budget(&self, v: &mut Validator) {
        let b = &self.budget;
        v.at_least("budget.monthly_paths", b.monthly_paths, 1);
        // Any burst is fine; only the TOML limit applies.
        v.at_least("budget.burst_paths", b.burst_paths, 0);
        if b.ledger_path.as_os_str().is_empty() {
            v.push("budget.ledger_path", "must not be empty");
        } else if b.ledger_path.to_str().is_none() {
            v.push("budget.ledger_path", "must be valid UTF-8");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_name_the_accepted_values() {
        assert_eq!(
            Pacing::try_from("fast".to_owned()).unwrap_err(),
            "\"fast\" is not a pacing: expected \"even\" or \"none\""
        );
        assert_eq!(
            OnExhausted::try_from("x".to_owned()).unwrap_err(),
            "\"x\" is not an exhaustion policy: expected \"hold\", \"coalesce\" or \"overspend\""
        );
        assert_eq!(
            OnExhausted::try_from("hold".to_owned()),
            Ok(OnExhausted::Hold)
        );
    }
}
