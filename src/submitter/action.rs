//! What each error CreateInvalidation can answer means for the batch: the
//! one place that says what is retried, what waits for capacity, what is a
//! configuration fault and what proves that nothing was created.

use std::time::Duration;

use crate::aws::error;
use crate::cloudfront::invalidator::InvalidatorError;

/// What to do after CreateInvalidation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Throttling, a server error or a timeout: the same batch again, with
    /// the same CallerReference, after this delay.
    Retry(Duration),
    /// Too many invalidations in progress: refresh the in-flight view and
    /// wait for capacity; replan then.
    WaitForCapacity,
    /// The CallerReference was used before with other paths. That is a bug
    /// (references are unique per batch): log it loudly and go again with a
    /// new reference.
    NewReference,
    /// The distribution is missing or access is denied: keep its requests
    /// queued, report not ready, and try again after this delay.
    ConfigurationFault(Duration),
    /// CloudFront refused a path that passed validation: find the offending
    /// entries, reject their messages, submit the rest.
    Isolate,
    /// The batch is too large for one request: replan it smaller.
    Split,
}

/// How long a configuration fault waits before the next try.
pub const CONFIGURATION_RETRY: Duration = Duration::from_secs(60);

/// First and largest retry delay for throttling and server errors.
pub const RETRY_BASE: Duration = Duration::from_millis(500);
pub const RETRY_CAP: Duration = Duration::from_secs(60);

/// The one function that decides what an error means. `attempt` counts the
/// tries of this batch so far (1 after the first failure); `jitter` is a
/// random number in `[0, 1)`.
pub fn action(error: &InvalidatorError, attempt: u32, jitter: f64) -> Action {
    match error {
        InvalidatorError::Throttled(_)
        | InvalidatorError::ServerError(_)
        | InvalidatorError::Timeout(_) => Action::Retry(backoff(attempt, jitter)),
        InvalidatorError::TooManyInProgress(_) => Action::WaitForCapacity,
        InvalidatorError::BatchAlreadyExists(_) => Action::NewReference,
        InvalidatorError::NoSuchDistribution(_) | InvalidatorError::AccessDenied(_) => {
            Action::ConfigurationFault(CONFIGURATION_RETRY)
        }
        InvalidatorError::InvalidArgument(_) => Action::Isolate,
        InvalidatorError::BatchTooLarge(_) => Action::Split,
        // Not an answer CreateInvalidation gives; treat as transient rather
        // than drop anything.
        InvalidatorError::NoSuchInvalidation(_) | InvalidatorError::Other { .. } => {
            Action::Retry(backoff(attempt, jitter))
        }
    }
}

/// Whether a failed CreateInvalidation certainly created nothing, so that
/// the budget may take the batch's reservation back. A server error, a
/// timeout or an answer that fits nothing known leaves the outcome unknown:
/// the reservation stays spent.
pub fn created_nothing(error: &InvalidatorError) -> bool {
    match error {
        InvalidatorError::Throttled(_)
        | InvalidatorError::TooManyInProgress(_)
        | InvalidatorError::BatchAlreadyExists(_)
        | InvalidatorError::NoSuchDistribution(_)
        | InvalidatorError::AccessDenied(_)
        | InvalidatorError::InvalidArgument(_)
        | InvalidatorError::BatchTooLarge(_) => true,
        InvalidatorError::ServerError(_)
        | InvalidatorError::Timeout(_)
        | InvalidatorError::NoSuchInvalidation(_)
        | InvalidatorError::Other { .. } => false,
    }
}

/// The delay before retry `attempt` of a batch: the crate's one retry
/// policy ([`error::backoff`]) between [`RETRY_BASE`] and [`RETRY_CAP`].
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    error::backoff(attempt, jitter, RETRY_BASE, RETRY_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_say_nothing_was_created() {
        let s = String::new;
        assert!(created_nothing(&InvalidatorError::Throttled(s())));
        assert!(created_nothing(&InvalidatorError::TooManyInProgress(s())));
        assert!(created_nothing(&InvalidatorError::InvalidArgument(s())));
        assert!(!created_nothing(&InvalidatorError::ServerError(s())));
        assert!(!created_nothing(&InvalidatorError::Timeout(s())));
    }

    #[test]
    fn every_error_has_an_action() {
        let s = String::new;
        assert!(matches!(
            action(&InvalidatorError::Throttled(s()), 1, 0.5),
            Action::Retry(_)
        ));
        assert!(matches!(
            action(&InvalidatorError::ServerError(s()), 1, 0.5),
            Action::Retry(_)
        ));
        assert!(matches!(
            action(&InvalidatorError::Timeout(s()), 1, 0.5),
            Action::Retry(_)
        ));
        assert_eq!(
            action(&InvalidatorError::TooManyInProgress(s()), 1, 0.5),
            Action::WaitForCapacity
        );
        assert_eq!(
            action(&InvalidatorError::BatchAlreadyExists(s()), 1, 0.5),
            Action::NewReference
        );
        assert_eq!(
            action(&InvalidatorError::NoSuchDistribution(s()), 1, 0.5),
            Action::ConfigurationFault(CONFIGURATION_RETRY)
        );
        assert_eq!(
            action(&InvalidatorError::AccessDenied(s()), 1, 0.5),
            Action::ConfigurationFault(CONFIGURATION_RETRY)
        );
        assert_eq!(
            action(&InvalidatorError::InvalidArgument(s()), 1, 0.5),
            Action::Isolate
        );
        assert_eq!(
            action(&InvalidatorError::BatchTooLarge(s()), 1, 0.5),
            Action::Split
        );
    }
}
