//! Several AWS accounts: one CloudFront client per account, each with its
//! own credentials, and an [`Invalidator`] that sends every call to the
//! client of the account its distribution lives in (distribution ids are
//! unique across AWS, and the configuration keeps each in one account).
//!
//! An account with `role_arn` is reached through STS AssumeRole
//! (aws-config's `AssumeRoleProvider`, with `external_id` when set); the
//! SDK's identity cache keeps the temporary credentials and assumes the
//! role again shortly before they expire, so a long-running daemon never
//! restarts for fresh ones. Each account's provider is watched: when the
//! role cannot be assumed, the calls of that account's distributions fail
//! as [`InvalidatorError::AccessDenied`] naming the role and STS's answer,
//! which makes those distributions (and only those) not ready.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::{
    ProvideCredentials, SharedCredentialsProvider, future as credentials_future,
};

use super::aws::AwsInvalidator;
use super::invalidator::{
    Invalidation, InvalidationSummary, Invalidator, InvalidatorError, Target,
};
use crate::config::{Config, DEFAULT_ACCOUNT, session_name};
use crate::path::CfPath;

/// What became of an account's last attempt to get credentials, and how
/// many attempts there were: shared by the account's provider, which
/// writes it, and the invalidator, which reads it.
#[derive(Clone, Debug, Default)]
pub struct CredentialsHealth {
    /// Why the last attempt failed; `None` once one succeeded.
    failure: Arc<Mutex<Option<String>>>,
    /// Attempts to get credentials: each is one AssumeRole call to STS.
    attempts: Arc<AtomicU64>,
}

impl CredentialsHealth {
    /// Why the last attempt failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many times credentials were asked of the provider (each an
    /// AssumeRole call).
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    fn record(&self, outcome: Result<(), String>) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = outcome.err();
    }
}

/// A credentials provider that notes each attempt's outcome in a
/// [`CredentialsHealth`]. It sits under the SDK's identity cache, so it is
/// asked only when the cache needs credentials: at the first call, and
/// again before the last ones expire.
#[derive(Debug)]
struct Watched {
    account: String,
    role: String,
    inner: SharedCredentialsProvider,
    health: CredentialsHealth,
}

impl ProvideCredentials for Watched {
    fn provide_credentials<'a>(&'a self) -> credentials_future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        credentials_future::ProvideCredentials::new(async move {
            self.health.attempts.fetch_add(1, Ordering::Relaxed);
            let result = self.inner.provide_credentials().await;
            match &result {
                Ok(credentials) => {
                    tracing::info!(account = %self.account, role = %self.role, expires = ?credentials.expiry(), "assumed the account's role");
                    self.health.record(Ok(()));
                }
                Err(e) => {
                    let why = error_chain(e);
                    tracing::warn!(account = %self.account, role = %self.role, error = %why, "assuming the account's role failed");
                    self.health.record(Err(why));
                }
            }
            result
        })
    }
}

/// `e` and its causes, joined, cut to a sentence's length.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let part = err.to_string();
        if !part.is_empty() && !parts.iter().any(|p| p.contains(&part)) {
            parts.push(part);
        }
        next = err.source();
    }
    let mut text = parts.join(": ");
    if text.len() > 300 {
        let mut end = 297;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// One account's client.
#[derive(Clone, Debug)]
struct Account {
    name: String,
    role: Option<String>,
    invalidator: AwsInvalidator,
    health: Option<CredentialsHealth>,
}

/// CloudFront through one client per account, each call sent to the client
/// of the account its distribution lives in. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AccountsInvalidator {
    /// The default credentials' client: distributions of no `[accounts]`
    /// table with a role.
    default: AwsInvalidator,
    /// Distribution id → its account's client.
    by_distribution: Arc<HashMap<String, Account>>,
}

/// How the accounts' clients are made.
#[derive(Clone, Copy, Debug)]
pub struct AssumeSettings {
    /// The assumed sessions' length (STS DurationSeconds); `None`: STS's
    /// default, one hour. The SDK assumes the role again shortly before a
    /// session ends.
    pub session: Option<Duration>,
}

impl AccountsInvalidator {
    /// A client per account of `config`, on the default credentials of
    /// `sdk` (which also call STS for the roles). STS is reached at
    /// `aws.endpoint_url` when set (an emulator), else the SDK's own.
    pub async fn new(config: &Config, sdk: &SdkConfig, settings: AssumeSettings) -> Self {
        let default = AwsInvalidator::new(crate::aws::cloudfront(sdk, &config.aws));
        let mut sts_sdk = sdk.clone();
        if let Some(url) = &config.aws.endpoint_url {
            sts_sdk = sts_sdk.into_builder().endpoint_url(url.clone()).build();
        }
        let mut accounts: HashMap<String, Account> = HashMap::new();
        for (name, account) in &config.accounts {
            let Some(role) = &account.role_arn else {
                continue;
            };
            let mut builder = AssumeRoleProvider::builder(role.clone())
                .session_name(session_name(name))
                .configure(&sts_sdk);
            if let Some(id) = &account.external_id {
                builder = builder.external_id(id.clone());
            }
            if let Some(session) = settings.session {
                builder = builder.session_length(session);
            }
            let health = CredentialsHealth::default();
            let watched = Watched {
                account: name.clone(),
                role: role.clone(),
                inner: SharedCredentialsProvider::new(builder.build().await),
                health: health.clone(),
            };
            let account_sdk = sdk
                .clone()
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(watched))
                .build();
            accounts.insert(
                name.clone(),
                Account {
                    name: name.clone(),
                    role: Some(role.clone()),
                    invalidator: AwsInvalidator::new(crate::aws::cloudfront(
                        &account_sdk,
                        &config.aws,
                    )),
                    health: Some(health),
                },
            );
        }
        let by_distribution = config
            .distributions
            .iter()
            .filter_map(|(alias, d)| {
                let account = accounts.get(config.account_of(alias))?;
                Some((d.id.clone(), account.clone()))
            })
            .collect();
        AccountsInvalidator {
            default,
            by_distribution: Arc::new(by_distribution),
        }
    }

    /// The health of `account`'s credentials, when it assumes a role.
    pub fn health(&self, account: &str) -> Option<CredentialsHealth> {
        self.by_distribution
            .values()
            .find(|a| a.name == account)
            .and_then(|a| a.health.clone())
    }

    fn route(&self, target: &Target) -> (&AwsInvalidator, Option<&Account>) {
        let id = match target {
            Target::Distribution(id) => id,
            Target::Tenant { distribution, .. } => distribution,
        };
        match self.by_distribution.get(id) {
            Some(account) => (&account.invalidator, Some(account)),
            None => (&self.default, None),
        }
    }

    /// A failed call of an account whose role cannot be assumed now says
    /// so: access to the account is denied, with STS's reason.
    fn explain<T>(
        account: Option<&Account>,
        result: Result<T, InvalidatorError>,
    ) -> Result<T, InvalidatorError> {
        let Err(e) = result else {
            return result;
        };
        let Some(account) = account else {
            return Err(e);
        };
        match account.health.as_ref().and_then(CredentialsHealth::failure) {
            Some(why) => Err(InvalidatorError::AccessDenied(format!(
                "account {}: the role {} could not be assumed: {why}",
                account.name,
                account.role.as_deref().unwrap_or(DEFAULT_ACCOUNT)
            ))),
            None => Err(e),
        }
    }
}

impl Invalidator for AccountsInvalidator {
    async fn create(
        &self,
        target: impl Into<Target> + Send,
        caller_reference: &str,
        paths: &[CfPath],
    ) -> Result<Invalidation, InvalidatorError> {
        let target = target.into();
        let (client, account) = self.route(&target);
        Self::explain(
            account,
            client.create(target, caller_reference, paths).await,
        )
    }

    async fn get(
        &self,
        target: impl Into<Target> + Send,
        id: &str,
    ) -> Result<Invalidation, InvalidatorError> {
        let target = target.into();
        let (client, account) = self.route(&target);
        Self::explain(account, client.get(target, id).await)
    }

    async fn list(
        &self,
        target: impl Into<Target> + Send,
        marker: Option<&str>,
        max_items: i32,
    ) -> Result<(Vec<InvalidationSummary>, Option<String>), InvalidatorError> {
        let target = target.into();
        let (client, account) = self.route(&target);
        Self::explain(account, client.list(target, marker, max_items).await)
    }
}
