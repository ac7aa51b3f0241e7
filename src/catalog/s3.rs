//! `catalog = "s3"`: the buckets that `[[routing.s3]]` routes to the
//! distribution, listed with ListObjectsV2 and mapped to paths by the same
//! [`KeyMapping`] as S3 events, so the catalog holds exactly the paths those
//! events purge. The listing sits behind [`Lister`] so that the building is
//! tested on an in-memory fake and the SDK adapter against an emulator.

use std::collections::{BTreeMap, BTreeSet};

use super::{Catalog, CatalogError};
use crate::config::Config;
use crate::decode::KeyMapping;
use crate::path::CfPath;

/// Lists object keys. Contract: `list` calls `page` with every key under
/// `prefix` in `bucket`, each exactly once, in pages (S3 sends up to 1,000
/// keys a page), and returns `Ok` only once the listing is complete; on an
/// error some pages may already have been given.
pub trait Lister {
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page: &mut (dyn FnMut(&[String]) + Send),
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// What a listing built.
#[derive(Debug)]
pub struct Listed {
    pub catalog: Catalog,
    /// Keys listed (under every route's `key_prefix`).
    pub keys: u64,
    /// Paths left out because CloudFront could not take them (too long).
    pub skipped: u64,
}

/// The `[[routing.s3]]` routes of distribution `alias`, each with its bucket.
pub fn routes(config: &Config, alias: &str) -> Vec<(String, KeyMapping)> {
    config
        .routing
        .s3
        .iter()
        .filter(|r| r.distribution == alias)
        .map(|r| (r.bucket.clone(), KeyMapping::new(r)))
        .collect()
}

/// Lists every route's bucket under its `key_prefix` and adds the paths
/// each key stands for, within [`super::DEFAULT_MAX_BYTES`].
pub async fn build(
    lister: &impl Lister,
    routes: &[(String, KeyMapping)],
) -> Result<Listed, CatalogError> {
    build_within(lister, routes, super::DEFAULT_MAX_BYTES).await
}

/// [`build`] within `max_bytes` (`catalog.max_bytes`): a listing holding
/// more than fits is refused as a whole. The catalog stays within its
/// bound while the listing goes on (what does not fit is not added).
pub async fn build_within(
    lister: &impl Lister,
    routes: &[(String, KeyMapping)],
    max_bytes: usize,
) -> Result<Listed, CatalogError> {
    let mut listed = Listed {
        catalog: Catalog::within(max_bytes),
        keys: 0,
        skipped: 0,
    };
    for (bucket, mapping) in routes {
        let prefix = mapping.key_prefix();
        let mut page = |keys: &[String]| {
            for key in keys {
                listed.keys += 1;
                let Some(paths) = mapping.paths(key) else {
                    continue;
                };
                for path in paths {
                    match CfPath::literal(&path) {
                        Ok(p) => {
                            listed.catalog.add(p.as_str());
                        }
                        Err(_) => listed.skipped += 1,
                    }
                }
            }
        };
        lister
            .list(bucket, prefix, &mut page)
            .await
            .map_err(|message| CatalogError::List {
                bucket: bucket.clone(),
                prefix: prefix.to_owned(),
                message,
            })?;
    }
    if listed.catalog.refused() > 0 {
        let buckets: Vec<&str> = routes.iter().map(|(b, _)| b.as_str()).collect();
        return Err(CatalogError::TooLarge {
            source_name: format!("listing s3://{}", buckets.join(", s3://")),
            max_bytes,
            after: format!(
                "{} paths from the {} keys listed did not fit",
                listed.catalog.refused(),
                listed.keys
            ),
        });
    }
    if listed.skipped > 0 {
        tracing::warn!(
            skipped = listed.skipped,
            "s3 keys whose paths CloudFront cannot take were left out of the catalog"
        );
    }
    Ok(listed)
}

/// The SDK adapter: ListObjectsV2 through the SDK's paginator.
pub struct SdkLister {
    client: aws_sdk_s3::Client,
}

impl SdkLister {
    pub fn new(client: aws_sdk_s3::Client) -> SdkLister {
        SdkLister { client }
    }
}

impl Lister for SdkLister {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page: &mut (dyn FnMut(&[String]) + Send),
    ) -> Result<(), String> {
        let mut request = self.client.list_objects_v2().bucket(bucket);
        if !prefix.is_empty() {
            request = request.prefix(prefix);
        }
        let mut pages = request.into_paginator().send();
        let mut keys = Vec::new();
        while let Some(result) = pages.next().await {
            let out = result.map_err(|e| crate::aws::error::classify(&e, |_| None).text)?;
            keys.clear();
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            page(&keys);
        }
        Ok(())
    }
}

/// An in-memory bucket store with S3's listing behaviour (keys in byte
/// order, pages of at most `page_size`), for tests of what builds on
/// [`Lister`].
#[derive(Debug, Clone)]
pub struct MemoryLister {
    buckets: BTreeMap<String, BTreeSet<String>>,
    page_size: usize,
    /// Buckets whose listing fails, as one without `s3:ListBucket` would.
    denied: BTreeSet<String>,
}

impl MemoryLister {
    pub fn new(page_size: usize) -> MemoryLister {
        MemoryLister {
            buckets: BTreeMap::new(),
            page_size: page_size.max(1),
            denied: BTreeSet::new(),
        }
    }

    pub fn put(&mut self, bucket: &str, key: &str) {
        self.buckets
            .entry(bucket.to_owned())
            .or_default()
            .insert(key.to_owned());
    }

    pub fn deny(&mut self, bucket: &str) {
        self.denied.insert(bucket.to_owned());
    }
}

impl Lister for MemoryLister {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        page: &mut (dyn FnMut(&[String]) + Send),
    ) -> Result<(), String> {
        if self.denied.contains(bucket) {
            return Err("AccessDenied: Access Denied".to_owned());
        }
        let Some(keys) = self.buckets.get(bucket) else {
            return Err("NoSuchBucket: The specified bucket does not exist".to_owned());
        };
        let under: Vec<String> = keys
            .range(prefix.to_owned()..)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for chunk in under.chunks(self.page_size) {
            page(chunk);
        }
        Ok(())
    }
}
