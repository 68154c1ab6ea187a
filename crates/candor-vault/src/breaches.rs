//! Breach records (GDPR Art. 33/34): a record with its 72-hour clock, the authority summary and
//! the customer notice (texts from `candor_core::breach_notice`), and one registered message per
//! affected customer, so each can check their notice is genuine and sees it in the privacy center.

use candor_core::SubjectId;
use candor_core::breach_notice::{BreachFacts, authority_summary, customer_notice};
use candor_core::catalog::{Channel, LegalBasis};
use candor_store::{Breach, Millis};

use super::center::CustomerSession;
use super::{Principal, Vault, VaultError};
use crate::audit::system_actor;

/// The authority must be told within this long of the controller becoming aware.
pub const AUTHORITY_DEADLINE_MS: Millis = 72 * 3600 * 1000;
/// Subject line of the registered notice message.
pub const NOTICE_SUBJECT_LINE: &str = "Important: a security incident affecting your data";

/// A breach as reported.
pub struct BreachInput {
    pub detected_at: Millis,
    pub nature: String,
    pub consequences: String,
    pub measures: String,
    pub categories: Vec<String>,
    pub subjects: Vec<SubjectId>,
    pub records: u64,
    /// Affected customers per country, as the assessment counted them (empty if it did not).
    pub countries: Vec<(String, u64)>,
}

/// Where a breach stands against the 72-hour deadline to notify the authority (GDPR Art. 33).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreachClock {
    /// Closed at this time.
    Closed(Millis),
    /// The authority was notified at this time; `late` when after the deadline.
    Notified { at: Millis, late: bool },
    /// Not notified, and the deadline has passed.
    Overdue,
    /// Not notified; this long is left.
    Open { left_ms: Millis },
}

/// A breach just recorded: the record, its texts, and each customer's notice code.
pub struct RecordedBreach {
    pub breach: Breach,
    pub authority_summary: String,
    pub customer_notice: String,
    pub codes: Vec<(SubjectId, String)>,
}

use crate::clock::rfc3339;

fn text(field: &'static str, value: &str) -> Result<String, VaultError> {
    let v = value.trim();
    if v.chars().count() < 10 || v.chars().count() > 2000 {
        return Err(VaultError::InvalidInput { field, message: "must say it in 10 to 2000 characters".into() });
    }
    Ok(v.to_string())
}

impl Vault {
    fn facts<'a>(
        &self,
        b: &'a Breach,
        detected: &'a str,
        deadline: &'a str,
        records: u64,
        countries: &'a [(String, u64)],
    ) -> BreachFacts<'a> {
        BreachFacts {
            id: &b.id,
            detected_at: detected,
            authority_deadline: deadline,
            nature: &b.nature,
            categories: &b.categories,
            customers: b.customers,
            records,
            consequences: &b.consequences,
            measures: &b.measures,
            countries,
        }
    }

    /// The customer notice of a breach, as the customer reads it.
    pub fn breach_notice_text(&self, b: &Breach) -> String {
        let (detected, deadline) = (rfc3339(b.detected_at), rfc3339(b.detected_at + AUTHORITY_DEADLINE_MS));
        customer_notice(&self.catalog, &self.facts(b, &detected, &deadline, b.customers, &[]))
    }

    /// Records a breach, registers a notice message for each affected customer (still held),
    /// and returns the texts to send.
    pub async fn record_breach(&self, input: BreachInput) -> Result<RecordedBreach, VaultError> {
        self.record_breach_by(&system_actor(), input).await
    }

    /// [`Vault::record_breach`] by a person (the staff console): logged under their actor.
    /// Only an auditor (admin or `audit = true`) records a breach; a refusal is logged.
    pub async fn record_breach_as(&self, by: &Principal, input: BreachInput) -> Result<RecordedBreach, VaultError> {
        self.require_audit(by).await?;
        self.record_breach_by(by, input).await
    }

    async fn record_breach_by(&self, by: &Principal, input: BreachInput) -> Result<RecordedBreach, VaultError> {
        let now = self.now_millis();
        if input.detected_at > now {
            return Err(VaultError::InvalidInput { field: "detected_at", message: "must not be in the future".into() });
        }
        let breach = Breach {
            id: format!("breach-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            detected_at: input.detected_at,
            recorded_at: now,
            nature: text("nature", &input.nature)?,
            categories: input.categories,
            customers: input.subjects.len() as u64,
            consequences: text("consequences", &input.consequences)?,
            measures: text("measures", &input.measures)?,
            authority_notified_at: None,
            closed_at: None,
        };
        let parts = self
            .entry(by, candor_log::Action::BreachRecord)
            .subjects(&input.subjects)
            .detail(format!(
                "{}; {} customers; categories {}",
                breach.id,
                breach.customers,
                breach.categories.join(", ")
            ))
            .records();
        // More customers than one entry names: every part commits with the record.
        self.store.record_breach(breach.clone(), input.subjects.clone(), parts).await?;
        // Notices are sent under a legal obligation (Art. 34).
        let purpose = self
            .catalog
            .purposes
            .iter()
            .find(|p| p.customer_requests)
            .or_else(|| self.catalog.purposes.iter().find(|p| p.legal_basis == LegalBasis::LegalObligation))
            .map(|p| p.id.to_string())
            .unwrap_or_else(|| "breach_notification".into());
        let notice = self.breach_notice_text(&breach);
        let body_sha256 = candor_crypto::sha256(notice.as_bytes());
        let mut codes = Vec::new();
        for id in &input.subjects {
            let Some(record) = self.store.load_subject(*id, &[]).await? else { continue };
            let key = self.keys.open_subject_key(*id, &record.dek)?;
            let m = self.store_message(&key, by, &purpose, Channel::Email, NOTICE_SUBJECT_LINE, body_sha256).await?;
            codes.push((*id, m.code));
        }
        let (detected, deadline) = (rfc3339(breach.detected_at), rfc3339(breach.detected_at + AUTHORITY_DEADLINE_MS));
        let summary = authority_summary(
            &self.catalog,
            &self.facts(&breach, &detected, &deadline, input.records, &input.countries),
        );
        Ok(RecordedBreach { breach, authority_summary: summary, customer_notice: notice, codes })
    }

    /// Where `b` stands against its 72-hour clock, now (by this vault's clock).
    pub fn breach_clock(&self, b: &Breach) -> BreachClock {
        let deadline = b.detected_at + AUTHORITY_DEADLINE_MS;
        match (b.closed_at, b.authority_notified_at) {
            (Some(at), _) => BreachClock::Closed(at),
            (None, Some(at)) => BreachClock::Notified { at, late: at > deadline },
            (None, None) => match deadline - self.now_millis() {
                left if left < 0 => BreachClock::Overdue,
                left_ms => BreachClock::Open { left_ms },
            },
        }
    }

    pub async fn breaches(&self) -> Result<Vec<Breach>, VaultError> {
        Ok(self.store.breaches().await?)
    }

    /// Marks the authority notified (`closed = false`) or the breach closed; logged.
    pub async fn update_breach(&self, id: &str, closed: bool) -> Result<bool, VaultError> {
        self.update_breach_by(&system_actor(), id, closed).await
    }

    /// [`Vault::update_breach`] by a person (the staff console): an auditor only; logged under
    /// their actor, a refusal too.
    pub async fn update_breach_as(&self, by: &Principal, id: &str, closed: bool) -> Result<bool, VaultError> {
        self.require_audit(by).await?;
        self.update_breach_by(by, id, closed).await
    }

    async fn update_breach_by(&self, by: &Principal, id: &str, closed: bool) -> Result<bool, VaultError> {
        let what = if closed { candor_log::Action::BreachClose } else { candor_log::Action::BreachAuthorityNotified };
        let log = self.entry(by, what).detail(id.to_string()).record();
        Ok(self.store.update_breach(id, closed, self.now_millis(), log).await?)
    }

    /// The breaches that affect the signed-in customer, newest first.
    pub async fn own_breaches(&self, session: &CustomerSession) -> Result<Vec<Breach>, VaultError> {
        Ok(self.store.breaches_of(session.subject).await?)
    }
}
