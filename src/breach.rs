//! Breach impact assessment: "which customers, and which kinds of their data, could this
//! incident have exposed?" answered from the tamper-evident log (who read what, when) and the key
//! store (what a leaked key could decrypt), in one pass.
//!
//! The log holds ids, field names, roles and times — never values — so the assessment needs no
//! decryption and can run over millions of entries. Entries are matched when they disclosed data
//! (reads, reports, exports, a recipient's reads; refusals excluded) and fit every filter given.
//! An IP-range filter uses the staff and recipient request addresses kept beside the log for
//! `[log] caller_address_days` (never in the entries, and never customers' own).
//!
//! Counts by country (which supervisory authorities to tell) need each affected customer's
//! country, which only their data holds: with `--countries-from FIELD` the affected customers'
//! FIELD (a postal address or a two-letter code) is decrypted in memory, page by page, each page
//! logged against its customers first (action `breach.country`); only the counts leave.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use candor_core::{SubjectId, value};

use crate::config::Config;
use crate::install;
use crate::vault::BreachClock;
pub use candor_vault::breach_assessment::{Assessment, Filters, scan_log};

/// `--ip-range` values: networks in CIDR form, or single addresses.
pub fn networks(texts: &[String]) -> Result<Vec<ipnet::IpNet>> {
    texts
        .iter()
        .map(|t| {
            crate::config::parse_network(t)
                .with_context(|| format!("--ip-range `{t}` is not a network such as 203.0.113.0/24 or an address"))
        })
        .collect()
}

/// A time in the log's format (`2026-11-22T10:00:00.000Z`), from any RFC 3339 time.
pub fn log_time(text: &str) -> Result<String> {
    let t: jiff::Timestamp =
        text.parse().with_context(|| format!("`{text}` is not an RFC 3339 time such as 2026-11-01T00:00:00Z"))?;
    Ok(t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

pub use candor_vault::maintenance::count_countries;

/// `candor breach assess`: scans the log (and, with `kek_version`, the key store), prints the
/// summary as JSON and, with `out`, writes `assessment.json` and `customers.csv` there. With
/// `countries_from`, also counts the affected customers per country (see [`count_countries`]).
pub async fn assess(
    config_path: &Path,
    filters: Filters,
    kek_version: Option<u32>,
    countries_from: Option<&str>,
    out: Option<&Path>,
) -> Result<()> {
    let config = Config::load(config_path)?;
    let catalog = install::load_catalog(&config)?;
    let store = install::open_store(&config).await?;
    let country_field = match countries_from {
        None => None,
        Some(name) => match catalog.field(name) {
            Some(decl) if value::holds_country(decl.field_type) => Some(decl),
            Some(_) => bail!(
                "--countries-from `{name}` is neither a postal address nor a text field; name the field that holds                  the customer's country"
            ),
            None => bail!("--countries-from: field `{name}` is not declared in the catalog"),
        },
    };
    if let Some(r) = &filters.recipient
        && !catalog.recipients.iter().any(|x| &x.id == r)
    {
        bail!("recipient `{r}` is not declared in the catalog");
    }
    if let Some(c) = &filters.category
        && !candor_core::catalog::Category::ALL.iter().any(|(name, _)| name == c)
    {
        bail!("`{c}` is not a data category (contact, identity, financial, location, behavioural, …)");
    }
    if let Some(f) = &filters.field
        && catalog.field(f).is_none()
        && catalog.event(f).is_none()
    {
        bail!("field `{f}` is not declared in the catalog");
    }
    let started = std::time::Instant::now();
    let mut assessment = Assessment::default();
    let log_filters = filters.clone();
    let any_log_filter = [
        &filters.from,
        &filters.to,
        &filters.token,
        &filters.role,
        &filters.recipient,
        &filters.field,
        &filters.category,
    ]
    .iter()
    .any(|f| f.is_some())
        || !filters.networks.is_empty();
    if any_log_filter || kek_version.is_none() {
        scan_log(store.as_ref(), &catalog, &log_filters, &mut assessment).await?;
    }
    // A leaked key exposes every customer whose data key it wraps: all they hold.
    let mut key_exposed = 0;
    if let Some(v) = kek_version {
        let mut after = None;
        loop {
            let page = store.deks_not_under(u32::MAX, after, 1000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(*last);
            for (subject, dek) in page.into_iter().filter(|(_, d)| d.kek_version == v) {
                let inv = store.inventory(subject).await?.unwrap_or_default();
                let cats = assessment.customers.entry(subject.to_string()).or_default();
                cats.extend(inv.fields.iter().filter_map(|f| catalog.field(f.as_str()).map(|d| d.category.name())));
                cats.extend(
                    inv.events.iter().filter_map(|(t, _)| catalog.event(t.as_str()).map(|d| d.category.name())),
                );
                let _ = dek;
                key_exposed += 1;
            }
        }
    }
    let (by_country, note) = match country_field {
        None => (
            Value::Null,
            "customer ids only; no personal value was read. For counts by country, run again with \
             --countries-from FIELD (the field holding the customer's country)."
                .to_string(),
        ),
        Some(decl) => {
            let ring = install::load_keys(&config)?;
            let ids: Vec<SubjectId> = assessment.customers.keys().filter_map(|id| SubjectId::parse(id)).collect();
            let counts = count_countries(
                store.as_ref(),
                &ring,
                decl,
                &ids,
                &candor_vault::audit::system_actor(),
                &candor_vault::clock::SystemClock,
            )
            .await?;
            (
                json!(counts),
                format!(
                    "customer ids and counts only; each affected customer's `{}` was decrypted in memory to count \
                     countries (logged as breach.country); no value was written out.",
                    decl.name
                ),
            )
        }
    };
    let summary = json!({
        "filters": {
            "from": filters.from, "to": filters.to, "token": filters.token, "role": filters.role,
            "recipient": filters.recipient, "field": filters.field, "category": filters.category,
            "kek_version": kek_version, "countries_from": countries_from,
            "ip_ranges": filters.networks.iter().map(ToString::to_string).collect::<Vec<_>>(),
        },
        "log_entries_scanned": assessment.entries_scanned,
        "matching_accesses": assessment.accesses,
        "accesses_without_recorded_address": (!filters.networks.is_empty()).then_some(assessment.without_address),
        "customers_exposed_by_key": key_exposed,
        "customers": assessment.customers.len(),
        "by_category": assessment.by_category(),
        "by_country": by_country,
        "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "note": note,
    });
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut full = summary.clone();
        full["customer_ids"] = Value::from(assessment.customers.keys().cloned().collect::<Vec<_>>());
        std::fs::write(dir.join("assessment.json"), serde_json::to_vec_pretty(&full)?)?;
        let mut csv = csv::Writer::from_path(dir.join("customers.csv"))?;
        csv.write_record(["subject_id", "categories"])?;
        for (id, cats) in &assessment.customers {
            csv.write_record([id.as_str(), &cats.iter().copied().collect::<Vec<_>>().join(";")])?;
        }
        csv.flush()?;
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

/// `candor breach record`: records the breach assessed in `assessment` (its `assessment.json`),
/// registers a notice for each affected customer, and writes `authority-summary.md`,
/// `customer-notice.txt` and `notices.csv` (customer id, code to print in their notice) to `out`.
pub struct RecordArgs<'a> {
    pub assessment: &'a Path,
    pub nature: String,
    pub consequences: String,
    pub measures: String,
    pub detected_at: Option<String>,
    pub out: &'a Path,
}

pub async fn record(config_path: &Path, args: RecordArgs<'_>) -> Result<()> {
    let text = std::fs::read_to_string(args.assessment).with_context(|| {
        format!("cannot read {} (write it with `candor breach assess --out DIR`)", args.assessment.display())
    })?;
    let a: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not an assessment", args.assessment.display()))?;
    let ids =
        a["customer_ids"].as_array().with_context(|| format!("{} has no customer_ids", args.assessment.display()))?;
    let mut subjects = Vec::with_capacity(ids.len());
    for id in ids {
        subjects.push(
            id.as_str()
                .and_then(candor_core::SubjectId::parse)
                .with_context(|| format!("bad customer id {id} in the assessment"))?,
        );
    }
    let categories: Vec<String> = a["by_category"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    let detected_at = match &args.detected_at {
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .with_context(|| format!("--detected-at `{t}` is not an RFC 3339 time"))?
            .as_millisecond(),
        None => crate::vault::now_millis(),
    };
    let (_, vault) = install::open(config_path).await?;
    let recorded = vault
        .record_breach(crate::vault::BreachInput {
            detected_at,
            nature: args.nature,
            consequences: args.consequences,
            measures: args.measures,
            categories,
            records: a["matching_accesses"].as_u64().unwrap_or(subjects.len() as u64),
            subjects,
            countries: a["by_country"]
                .as_object()
                .map(|m| m.iter().map(|(c, n)| (c.clone(), n.as_u64().unwrap_or(0))).collect())
                .unwrap_or_default(),
        })
        .await?;
    std::fs::create_dir_all(args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    std::fs::write(args.out.join("authority-summary.md"), &recorded.authority_summary)?;
    std::fs::write(args.out.join("customer-notice.txt"), &recorded.customer_notice)?;
    let mut csv = csv::Writer::from_path(args.out.join("notices.csv"))?;
    csv.write_record(["subject_id", "code"])?;
    for (id, code) in &recorded.codes {
        csv.write_record([id.to_string().as_str(), code.as_str()])?;
    }
    csv.flush()?;
    let deadline =
        jiff::Timestamp::from_millisecond(recorded.breach.detected_at + crate::vault::AUTHORITY_DEADLINE_MS)?;
    println!("{} recorded: {} customer(s).", recorded.breach.id, recorded.codes.len());
    println!(
        "Tell the supervisory authority by {deadline} (72 hours after you became aware): {}",
        args.out.join("authority-summary.md").display()
    );
    println!(
        "Send each customer {} with the code from notices.csv; they see it in their privacy center and can check it there.",
        args.out.join("customer-notice.txt").display()
    );
    println!("When done: candor breach update {} --authority-notified", recorded.breach.id);
    Ok(())
}

/// `candor breach list`: every breach with its 72-hour clock.
pub async fn list(config_path: &Path) -> Result<()> {
    let (_, vault) = install::open(config_path).await?;
    let time = crate::clock::rfc3339;
    for b in vault.breaches().await? {
        let deadline = b.detected_at + crate::vault::AUTHORITY_DEADLINE_MS;
        let status = match vault.breach_clock(&b) {
            BreachClock::Closed(at) => format!("closed {}", time(at)),
            BreachClock::Notified { at, late } => {
                format!("authority notified {}{}", time(at), if late { " (late)" } else { "" })
            }
            BreachClock::Overdue => "OVERDUE: the authority has not been notified".to_string(),
            BreachClock::Open { left_ms } => {
                format!("open; {:.1} hours left to notify the authority", left_ms as f64 / 3.6e6)
            }
        };
        println!(
            "{}  detected {}  due {}  {} customer(s)  [{}]  {}",
            b.id,
            time(b.detected_at),
            time(deadline),
            b.customers,
            b.categories.join(", "),
            status
        );
    }
    Ok(())
}

/// `candor breach update ID --authority-notified | --closed`.
pub async fn update(config_path: &Path, id: &str, closed: bool) -> Result<()> {
    let (_, vault) = install::open(config_path).await?;
    if !vault.update_breach(id, closed).await? {
        bail!("no breach `{id}` (see `candor breach list`)");
    }
    println!("{id}: {}", if closed { "closed" } else { "authority notified" });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candor_core::catalog::{Catalog, EXAMPLE_CATALOG};
    use candor_log::entry::Actor;
    use candor_log::entry::LogEntry;

    fn entry(time: &str, action: &str, token: &str, role: &str, subjects: &[&str], fields: &[&str]) -> LogEntry {
        LogEntry {
            v: 1,
            time: time.into(),
            action: action.into(),
            actor: Actor { token: token.into(), role: role.into() },
            purpose: None,
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            fields: fields.iter().map(|s| s.to_string()).collect(),
            decision: Some("full".into()),
            detail: None,
        }
    }

    #[test]
    fn only_disclosures_that_fit_every_filter_count_with_their_categories() {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        let f = Filters {
            from: Some("2026-01-01T00:00:00.000Z".into()),
            to: Some("2026-02-01T00:00:00.000Z".into()),
            token: Some("leaked".into()),
            ..Default::default()
        };
        let mut a = Assessment::default();
        a.add(
            &c,
            &f,
            &entry(
                "2026-01-05T10:00:00.000Z",
                "subject.read",
                "leaked",
                "support_agent",
                &["s1"],
                &["email", "full_name"],
            ),
            None,
        );
        a.add(
            &c,
            &f,
            &entry("2026-01-06T10:00:00.000Z", "event.read", "leaked", "support_agent", &["s2"], &["purchase"]),
            None,
        );
        a.add(
            &c,
            &f,
            &entry("2026-01-06T10:00:00.000Z", "subject.read", "other", "support_agent", &["s3"], &["email"]),
            None,
        );
        a.add(
            &c,
            &f,
            &entry("2026-02-01T00:00:00.000Z", "subject.read", "leaked", "support_agent", &["s4"], &["email"]),
            None,
        );
        a.add(
            &c,
            &f,
            &entry("2026-01-07T10:00:00.000Z", "subject.create", "leaked", "support_agent", &["s5"], &["email"]),
            None,
        );
        let mut denied =
            entry("2026-01-08T10:00:00.000Z", "subject.read", "leaked", "support_agent", &["s6"], &["email"]);
        denied.decision = Some("denied".into());
        a.add(&c, &f, &denied, None);
        assert_eq!(a.entries_scanned, 6);
        assert_eq!(a.accesses, 2);
        assert_eq!(a.customers.keys().collect::<Vec<_>>(), ["s1", "s2"]);
        assert_eq!(a.customers["s1"].iter().copied().collect::<Vec<_>>(), ["contact", "identity"]);
        assert_eq!(a.customers["s2"].iter().copied().collect::<Vec<_>>(), ["financial"]);
        assert_eq!(a.by_category()["contact"], 1);

        let only_contact = Filters { category: Some("contact".into()), ..Default::default() };
        let mut b = Assessment::default();
        b.add(
            &c,
            &only_contact,
            &entry("2026-01-05T10:00:00.000Z", "subject.read", "t", "r", &["s1"], &["email", "full_name"]),
            None,
        );
        b.add(
            &c,
            &only_contact,
            &entry("2026-01-05T10:00:00.000Z", "subject.read", "t", "r", &["s2"], &["full_name"]),
            None,
        );
        assert_eq!(b.customers.keys().collect::<Vec<_>>(), ["s1"]);
        assert_eq!(b.customers["s1"].iter().copied().collect::<Vec<_>>(), ["contact"]);

        let recipient = Filters { recipient: Some("parcel_carrier".into()), ..Default::default() };
        let mut r = Assessment::default();
        r.add(
            &c,
            &recipient,
            &entry(
                "2026-01-05T10:00:00.000Z",
                "grant.read",
                "grant:g1",
                "recipient:parcel_carrier",
                &["s9"],
                &["full_name"],
            ),
            None,
        );
        r.add(
            &c,
            &recipient,
            &entry(
                "2026-01-05T10:00:00.000Z",
                "grant.read",
                "grant:g2",
                "recipient:payment_provider",
                &["s8"],
                &["email"],
            ),
            None,
        );
        assert_eq!(r.customers.keys().collect::<Vec<_>>(), ["s9"]);
    }

    #[test]
    fn an_address_range_matches_only_recorded_addresses_inside_it_and_counts_the_rest() {
        let c = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap();
        let f = Filters { networks: networks(&["203.0.113.0/24".into()]).unwrap(), ..Default::default() };
        let read = |s: &str| entry("2026-01-05T10:00:00.000Z", "subject.read", "t", "support_agent", &[s], &["email"]);
        let mut a = Assessment::default();
        a.add(&c, &f, &read("inside"), Some("203.0.113.9".parse().unwrap()));
        a.add(&c, &f, &read("outside"), Some("198.51.100.1".parse().unwrap()));
        a.add(&c, &f, &read("unknown"), None);
        assert_eq!(a.customers.keys().collect::<Vec<_>>(), ["inside"]);
        assert_eq!((a.accesses, a.without_address), (1, 1));
        assert!(networks(&["203.0.113.0/40".into()]).is_err());
    }

    #[test]
    fn times_are_compared_in_the_logs_own_format() {
        assert_eq!(log_time("2026-01-05T10:00:00Z").unwrap(), "2026-01-05T10:00:00.000Z");
        assert_eq!(log_time("2026-01-05T12:00:00+02:00").unwrap(), "2026-01-05T10:00:00.000Z");
        assert!(log_time("yesterday").is_err());
    }
}
