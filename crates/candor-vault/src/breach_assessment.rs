//! Breach impact assessment over the log: "which customers, and which kinds of their data,
//! could this incident have exposed?" The log holds ids, field names, roles and times — never
//! values — so the assessment needs no decryption and can run over millions of entries. Entries
//! are matched when they disclosed data (reads, reports, exports, a recipient's reads; refusals
//! excluded) and fit every filter given. An IP-range filter uses the staff and recipient request
//! addresses kept beside the log for `[log] caller_address_days`. Used by `candor breach assess`
//! and by the staff console's incidents page.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use candor_core::catalog::{Catalog, Category};
use candor_core::{SubjectId, value};
use candor_log::entry::LogEntry;
use candor_store::{Store, StoreError};

use crate::{Principal, Vault, VaultError};

/// Entries read from the store per round.
const PAGE: u64 = 5_000;

/// What to look for. Every filter given must match.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    /// RFC 3339 bounds, inclusive start, exclusive end (in the log's own format).
    pub from: Option<String>,
    pub to: Option<String>,
    pub token: Option<String>,
    pub role: Option<String>,
    /// A recipient id: reads through its grants.
    pub recipient: Option<String>,
    pub field: Option<String>,
    pub category: Option<String>,
    /// Networks the requests came from (`--ip-range`): matched against the staff and recipient
    /// addresses kept beside the log; an entry without a recorded address does not match.
    pub networks: Vec<ipnet::IpNet>,
}

/// The result, as it grows.
#[derive(Debug, Default)]
pub struct Assessment {
    pub entries_scanned: u64,
    pub accesses: u64,
    /// With `networks`: disclosures that fit every other filter but have no recorded address
    /// (older than `[log] caller_address_days`, or recorded with it off) — a gap to report.
    pub without_address: u64,
    /// Customer id -> categories exposed.
    pub customers: BTreeMap<String, BTreeSet<&'static str>>,
}

impl Assessment {
    /// Adds one log entry, with the address its request came from if one was recorded (a no-op
    /// unless it disclosed data and fits the filters).
    pub fn add(&mut self, catalog: &Catalog, filters: &Filters, e: &LogEntry, caller: Option<IpAddr>) {
        self.entries_scanned += 1;
        if !candor_log::Action::parse(&e.action).is_some_and(candor_log::Action::discloses_personal_data)
            || e.decision.as_deref() == Some("denied")
        {
            return;
        }
        let fits = filters.from.as_ref().is_none_or(|f| e.time.as_str() >= f.as_str())
            && filters.to.as_ref().is_none_or(|t| e.time.as_str() < t.as_str())
            && filters.token.as_ref().is_none_or(|t| &e.actor.token == t)
            && filters.role.as_ref().is_none_or(|r| &e.actor.role == r)
            && filters
                .recipient
                .as_ref()
                .is_none_or(|r| candor_log::actor::recipient_of(&e.actor.role) == Some(r.as_str()));
        if !fits {
            return;
        }
        let category_of = |name: &str| {
            catalog.field(name).map(|f| f.category.name()).or_else(|| catalog.event(name).map(|e| e.category.name()))
        };
        let names: Vec<&str> = e
            .fields
            .iter()
            .map(String::as_str)
            .filter(|f| filters.field.as_deref().is_none_or(|want| want == *f))
            .filter(|f| filters.category.as_deref().is_none_or(|c| category_of(f) == Some(c)))
            .collect();
        if names.is_empty() || e.subjects.is_empty() {
            return;
        }
        if !filters.networks.is_empty() {
            match caller {
                None => {
                    self.without_address += 1;
                    return;
                }
                Some(a) if !filters.networks.iter().any(|n| n.contains(&a)) => return,
                Some(_) => {}
            }
        }
        self.accesses += 1;
        for s in &e.subjects {
            let cats = self.customers.entry(s.clone()).or_default();
            cats.extend(names.iter().filter_map(|f| category_of(f)));
        }
    }

    /// Counts of customers per category.
    pub fn by_category(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for cats in self.customers.values() {
            for c in cats {
                *out.entry(*c).or_insert(0) += 1;
            }
        }
        out
    }
}

/// Adds every log entry to `assessment`, in pages.
pub async fn scan_log(
    store: &dyn Store,
    catalog: &Catalog,
    filters: &Filters,
    assessment: &mut Assessment,
) -> Result<(), StoreError> {
    let (size, _) = store.log_head().await?;
    let mut start = 0;
    while start < size {
        let end = (start + PAGE).min(size);
        let callers: HashMap<u64, IpAddr> = if filters.networks.is_empty() {
            HashMap::new()
        } else {
            store.log_callers(start, end).await?.into_iter().collect()
        };
        for (idx, bytes) in store.log_entries(start, end).await? {
            match serde_json::from_slice::<LogEntry>(&bytes) {
                Ok(e) => assessment.add(catalog, filters, &e, callers.get(&idx).copied()),
                Err(_) => assessment.entries_scanned += 1,
            }
        }
        start = end;
    }
    Ok(())
}

/// What an assessment found: counts, and the affected customers' ids (to record the breach).
#[derive(Debug, Clone)]
pub struct BreachImpact {
    pub entries_scanned: u64,
    pub accesses: u64,
    pub customers: Vec<SubjectId>,
    pub by_category: BTreeMap<&'static str, u64>,
    /// With a country field: affected customers per country.
    pub by_country: Option<BTreeMap<String, u64>>,
}

impl Vault {
    /// Assesses a breach for an auditor (admin or `audit = true`; a refusal is logged): scans the
    /// log with `filters` and, with `countries_from` (a field holding the customer's country),
    /// counts the affected customers per country — that field is decrypted in memory, each page
    /// logged against its customers as read by `caller` (`breach.country`).
    pub async fn assess_breach(
        &self,
        caller: &Principal,
        filters: &Filters,
        countries_from: Option<&str>,
    ) -> Result<BreachImpact, VaultError> {
        self.require_audit(caller).await?;
        let bad = |field: &'static str, message: String| Err(VaultError::InvalidInput { field, message });
        if let Some(r) = &filters.recipient
            && !self.catalog.recipients.iter().any(|x| &x.id == r)
        {
            return bad("recipient", format!("recipient `{r}` is not declared in the catalog"));
        }
        if let Some(c) = &filters.category
            && !Category::ALL.iter().any(|(name, _)| name == c)
        {
            return bad("category", format!("`{c}` is not a data category"));
        }
        if let Some(f) = &filters.field
            && self.catalog.field(f).is_none()
            && self.catalog.event(f).is_none()
        {
            return bad("field", format!("field `{f}` is not declared in the catalog"));
        }
        let country_field = match countries_from {
            None => None,
            Some(name) => match self.catalog.field(name) {
                Some(decl) if value::holds_country(decl.field_type) => Some(decl),
                _ => return bad("countries_from", format!("`{name}` is not a field that holds a country")),
            },
        };
        let mut assessment = Assessment::default();
        scan_log(self.store.as_ref(), &self.catalog, filters, &mut assessment).await?;
        let customers: Vec<SubjectId> = assessment.customers.keys().filter_map(|id| SubjectId::parse(id)).collect();
        let by_country = match country_field {
            Some(decl) => Some(
                crate::maintenance::count_countries(
                    self.store.as_ref(),
                    &self.keys,
                    decl,
                    &customers,
                    caller,
                    self.clock.as_ref(),
                )
                .await?,
            ),
            None => None,
        };
        Ok(BreachImpact {
            entries_scanned: assessment.entries_scanned,
            accesses: assessment.accesses,
            by_category: assessment.by_category(),
            customers,
            by_country,
        })
    }
}
