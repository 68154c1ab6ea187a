//! Operator jobs that read sealed values with the installation's keys while servers run, or
//! before any server does: recomputing lookup indexes under a new index key, counting a
//! breach's affected customers per country, and checking that a restored backup's data keys
//! open. They work on a store and a key ring (no [`crate::Vault`] is needed, so they run from
//! the command line on a stopped installation too), and they are here because opening a value
//! or a data key happens nowhere outside this crate. Each logs what it reads before reading it.

use std::collections::BTreeMap;

use candor_core::catalog::{Catalog, FieldDecl};
use candor_core::{FieldName, StoredDek, SubjectId, value};
use candor_crypto::{CryptoError, KeyRing};
use candor_store::{IndexReplacement, Store};
use futures_util::StreamExt;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::VaultError;
use crate::audit::{Audit, system_actor};

/// Customers read concurrently by a job.
const READS_IN_FLIGHT: usize = 8;

/// The replacements that move `rows` (customer, lookup field) to the primary index key, for the
/// store to apply under index-key `version`, and how many rows belong to fields that are no
/// longer lookup fields (they have nothing to recompute). Logs the batch before decrypting
/// anything; a customer erased meanwhile is skipped (their rows went with them).
pub async fn recompute_index_rows(
    store: &dyn Store,
    ring: &KeyRing,
    catalog: &Catalog,
    version: u32,
    rows: &[(SubjectId, FieldName)],
) -> Result<(Vec<IndexReplacement>, u64), VaultError> {
    let mut by_subject: BTreeMap<SubjectId, Vec<FieldName>> = BTreeMap::new();
    let mut not_lookup = 0;
    for (subject, field) in rows {
        if catalog.field(field.as_str()).is_some_and(|d| d.lookup) {
            by_subject.entry(*subject).or_default().push(field.clone());
        } else {
            not_lookup += 1;
        }
    }
    if by_subject.is_empty() {
        return Ok((Vec::new(), not_lookup));
    }
    let subjects: Vec<SubjectId> = by_subject.keys().copied().collect();
    let mut fields: Vec<&str> = by_subject.values().flatten().map(FieldName::as_str).collect();
    fields.sort_unstable();
    fields.dedup();
    let entry = Audit::new(&system_actor(), candor_log::Action::KeysReindex)
        .subjects(&subjects)
        .fields(fields)
        .detail(format!("lookup index recomputed under index key v{}", ring.primary_index_version()))
        .record();
    store.append_log(vec![entry]).await?;
    let mut changes = Vec::with_capacity(rows.len());
    let mut loads = futures_util::stream::iter(by_subject.into_iter().map(|(subject, fields)| async move {
        store.load_subject(subject, &fields).await.map(|record| (subject, record))
    }))
    .buffer_unordered(READS_IN_FLIGHT);
    while let Some(loaded) = loads.next().await {
        let (subject, Some(record)) = loaded? else { continue };
        let key = ring.open_subject_key(subject, &record.dek)?;
        for (field, sealed) in &record.values {
            let Some(decl) = catalog.field(field.as_str()) else { continue };
            let plain = key.open_field(field, sealed)?;
            let value: Value = serde_json::from_slice(&plain).map_err(|_| CryptoError::Malformed("field value"))?;
            // A stored value that is no longer valid for its type has no index row to recompute.
            let Some(normalised) = value::lookup_key(decl.field_type, &value).map(Zeroizing::new) else { continue };
            changes.push(IndexReplacement {
                subject,
                field: field.clone(),
                key_version: version,
                current: ring.blind_indexes(field, &normalised),
                new: ring.blind_index(field, &normalised),
            });
        }
    }
    Ok((changes, not_lookup))
}

/// One customer's country, being read.
type CountryRead<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, VaultError>> + Send + 'a>>;

/// Customers read per logged page by [`count_countries`].
const COUNTRY_PAGE: usize = 5_000;

/// How many of `customers` live in each country, by the country their `field` names
/// (`unknown` when it names none or they have no such value, `erased` when they were erased
/// meanwhile). Decrypts only that field, in memory; each page is logged, as read by `by`, before
/// it is read, at `clock`'s time.
pub async fn count_countries(
    store: &dyn Store,
    ring: &KeyRing,
    field: &FieldDecl,
    customers: &[SubjectId],
    by: &crate::Principal,
    clock: &dyn crate::clock::Clock,
) -> Result<BTreeMap<String, u64>, VaultError> {
    let mut counts = BTreeMap::new();
    for page in customers.chunks(COUNTRY_PAGE) {
        let entries = Audit::at(by, candor_log::Action::BreachCountry, clock.now())
            .subjects(page)
            .fields([field.name.as_str()])
            .detail("country read in memory to count a breach's affected customers per country")
            .records();
        store.append_log(entries).await?;
        let names = std::slice::from_ref(&field.name);
        // Each read is its own boxed future, so the whole count is `Send` (a server runs it).
        let reads: Vec<CountryRead<'_>> = page
            .iter()
            .map(|id| -> CountryRead<'_> {
                Box::pin(async move {
                    let Some(record) = store.load_subject(*id, names).await? else { return Ok("erased".to_string()) };
                    let Some((_, sealed)) = record.values.first() else { return Ok("unknown".to_string()) };
                    let key = ring.open_subject_key(*id, &record.dek)?;
                    let plain = key.open_field(&field.name, sealed)?;
                    let value: Value = serde_json::from_slice(&plain).unwrap_or(Value::Null);
                    Ok::<_, VaultError>(
                        value::country_code(field.field_type, &value).unwrap_or_else(|| "unknown".into()),
                    )
                })
            })
            .collect();
        let mut reads = futures_util::stream::iter(reads).buffer_unordered(READS_IN_FLIGHT);
        while let Some(country) = reads.next().await {
            *counts.entry(country?).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// The first KEK version among `samples` (one data key per version) whose data key the ring
/// cannot open: the key file (or HSM) is not the one that wrapped them, whatever its version
/// numbers say. The opened keys are dropped (zeroized) at once.
pub fn kek_that_does_not_open(ring: &KeyRing, samples: &[(SubjectId, StoredDek)]) -> Option<u32> {
    samples.iter().find(|(subject, dek)| ring.open_subject_key(*subject, dek).is_err()).map(|(_, dek)| dek.kek_version)
}
