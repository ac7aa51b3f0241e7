//! The daemon's hold on the budget ledger: opening it (and again after a
//! failure), the month's rollover, and what a scan of CloudFront's
//! invalidations changes in it: other tools' paths counted, reservations a
//! crash left open confirmed. The arithmetic is [`crate::budget`]'s; this is
//! only the bookkeeping around a ledger that may not be open yet.

use std::collections::HashSet;
use std::time::Duration;

use crate::budget::{AnyStore, Budget, LedgerError};
use crate::clock::{Millis, Now};
use crate::config::BudgetConfig;
use crate::path::CfPath;
use crate::tracker::external::Found;

/// How long to wait before trying a ledger that could not be opened again.
pub const LEDGER_RETRY: Duration = Duration::from_secs(5);

/// An invalidation a crashed process created for a reservation it left
/// open: what it covered, and when CloudFront created it.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub alias: String,
    pub paths: Vec<CfPath>,
    pub created_at: Millis,
}

/// The ledger, once open.
pub struct Ledger {
    store: AnyStore,
    config: BudgetConfig,
    budget: Option<Budget<AnyStore>>,
    retry_at: Millis,
    /// Whether reservations a crash left open have been looked for at
    /// CloudFront since the ledger was opened.
    confirmed_leftovers: bool,
}

impl Ledger {
    pub fn new(store: AnyStore, config: BudgetConfig) -> Ledger {
        Ledger {
            store,
            config,
            budget: None,
            retry_at: 0,
            confirmed_leftovers: false,
        }
    }

    pub fn set_store(&mut self, store: AnyStore) {
        self.store = store;
    }

    /// Forgets the open ledger: it is read again from the store at the
    /// next turn (a replica that became leader, or stood down, or whose
    /// write was refused because someone else wrote meanwhile).
    pub fn reset(&mut self) {
        self.budget = None;
        self.retry_at = 0;
        self.confirmed_leftovers = false;
    }

    pub fn budget(&self) -> Option<&Budget<AnyStore>> {
        self.budget.as_ref()
    }

    /// Whether a scan of CloudFront is wanted: to count other tools' paths,
    /// or to confirm reservations a crash left open.
    pub fn wants_scan(&self) -> bool {
        self.budget.is_some() && (self.config.count_external || !self.confirmed_leftovers)
    }

    /// Opens the ledger if it is not open and its retry time has come, and
    /// rolls the month over when it has turned. `Err` says why it is not
    /// usable (the daemon is then not ready and submits nothing).
    pub fn keep(&mut self, now: &Now) -> Result<(), LedgerError> {
        if self.budget.is_none() {
            if now.mono < self.retry_at {
                return Ok(());
            }
            let opened = Budget::open(self.store.clone(), self.config.clone(), now.wall);
            let budget = match opened {
                Ok(budget) => budget,
                Err(e) => return Err(self.failed(e, now)),
            };
            let leftovers = budget.unconfirmed();
            if !leftovers.is_empty() {
                tracing::warn!(
                    reservations = leftovers.len(),
                    paths = leftovers.iter().map(|(_, _, p)| p).sum::<u64>(),
                    "the ledger holds reservations a crash left open; counted as spent"
                );
            }
            tracing::info!(month = %budget.month(), used = budget.used(), limit = budget.limit(), "budget ledger open");
            self.confirmed_leftovers = leftovers.is_empty();
            self.budget = Some(budget);
        }
        let rolled = match &mut self.budget {
            Some(budget) => budget.rollover(now.wall),
            None => return Ok(()),
        };
        match rolled {
            Ok(true) => {
                tracing::info!("a new month: the budget starts again");
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(self.failed(e, now)),
        }
    }

    fn failed(&mut self, error: LedgerError, now: &Now) -> LedgerError {
        tracing::error!(error = %error, "budget ledger not usable; submitting nothing until it is");
        self.retry_at = now.after(LEDGER_RETRY);
        error
    }

    /// What a scan must skip: the invalidations already looked at this
    /// month, and where the month starts.
    pub fn scan_basis(&self) -> Option<(HashSet<String>, std::time::SystemTime)> {
        let budget = self.budget.as_ref()?;
        Some((
            budget.state().external_seen.iter().cloned().collect(),
            budget.month().start(),
        ))
    }

    /// Takes what a scan of `alias` found: other tools' paths counted once,
    /// ours remembered as seen, and reservations a crash left open
    /// confirmed. Returns the invalidations of those confirmed reservations.
    pub fn take_scan(&mut self, alias: &str, found: Vec<Found>, now: &Now) -> Vec<Recovered> {
        let mut recovered = Vec::new();
        let Some(budget) = &mut self.budget else {
            return recovered;
        };
        let leftovers: HashSet<String> = budget
            .unconfirmed()
            .into_iter()
            .map(|(reference, _, _)| reference)
            .collect();
        for f in found {
            let result = if f.ours {
                if leftovers.contains(&f.caller_reference) {
                    tracing::info!(distribution = %alias, invalidation = %f.id, paths = f.paths, "a reservation left by a crash was created: confirmed");
                    if let Err(e) = budget.confirm(&f.caller_reference) {
                        tracing::warn!(error = %e, "confirming a reservation failed");
                    }
                    recovered.push(Recovered {
                        alias: alias.to_owned(),
                        paths: f.items,
                        created_at: now.mono_of(f.created_at),
                    });
                }
                budget.count_external(&f.id, 0, f.created_at)
            } else {
                let counted = budget.count_external(&f.id, f.paths, f.created_at);
                if matches!(counted, Ok(true)) {
                    tracing::info!(distribution = %alias, invalidation = %f.id, paths = f.paths, "counted another tool's invalidation in the budget");
                }
                counted
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "counting an invalidation in the ledger failed; it is counted at the next scan");
                break;
            }
        }
        recovered
    }

    /// A reconcile round is over: whatever a crash left and CloudFront did
    /// not show stays spent.
    pub fn round_over(&mut self) {
        if self.budget.is_some() {
            self.confirmed_leftovers = true;
        }
    }

    /// Reserves `paths` under `reference` before CloudFront is called.
    pub fn reserve(
        &mut self,
        reference: &str,
        alias: &str,
        paths: u64,
        now: &Now,
    ) -> Result<(), String> {
        let reserved = match &mut self.budget {
            Some(budget) => budget.reserve(reference, alias, paths, now.wall),
            None => return Err("the budget ledger is not open".to_owned()),
        };
        match reserved {
            Ok(()) => Ok(()),
            Err(e @ LedgerError::Refused(_)) => {
                // Written by someone else since it was read: read it again.
                self.reset();
                self.retry_at = now.after(LEDGER_RETRY);
                Err(e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The batch was created: the reservation becomes spending, and the
    /// invalidation is ours (a later scan must not count it).
    pub fn commit(&mut self, reference: &str, id: &str, created_at: std::time::SystemTime) {
        if let Some(budget) = &mut self.budget {
            // Should the commit fail, the reservation stays: spent.
            if let Err(e) = budget.commit(reference) {
                tracing::warn!(error = %e, "recording the spending failed; the reservation counts as spent");
            }
            if let Err(e) = budget.count_external(id, 0, created_at) {
                tracing::debug!(error = %e, "remembering our invalidation failed; a scan skips it by its reference");
            }
        }
    }

    /// CloudFront certainly created nothing: the reservation goes back.
    pub fn release(&mut self, reference: &str) {
        if let Some(budget) = &mut self.budget
            && let Err(e) = budget.release(reference)
        {
            tracing::warn!(error = %e, "giving a refused batch's reservation back failed; it stays spent");
        }
    }
}
