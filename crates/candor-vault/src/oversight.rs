//! Oversight of consent and sharing for the privacy team: counts of customers per consent slot
//! and choice, every grant with how many customers it holds, stopping a grant, and sending an
//! undelivered notice to a recipient again now.
//!
//! All under a purpose declared `customer_requests = true` (the purpose the privacy team
//! follows up customers' requests under, as `GET /v1/notices` is). Counts name no customer;
//! stopping a grant also needs the role's `erase = true` (the power to end what is held about
//! customers), and is logged against every customer the grant holds, as any revocation is.

use candor_core::consent::{ConsentAction, counts};
use candor_store::{Grant, Notice};

use super::{Authorized, Vault, VaultError};

/// One consent slot's customers by their latest choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTally {
    pub purpose: String,
    /// `None` for a purpose consented as a whole.
    pub channel: Option<String>,
    pub granted: u64,
    pub withdrawn: u64,
    /// Granted on an earlier notice of a purpose that changed since: off until renewed.
    pub renewal_needed: u64,
}

/// A grant and how many customers it holds.
#[derive(Debug, Clone)]
pub struct GrantSummary {
    pub grant: Grant,
    pub customers: u64,
}

impl Vault {
    fn require_oversight(&self, auth: &Authorized, what: &str) -> Result<(), VaultError> {
        if self.purpose(auth).customer_requests {
            return Ok(());
        }
        Err(VaultError::WrongPurpose(format!(
            "{what} under a purpose declared customer_requests = true, not `{}`",
            auth.purpose
        )))
    }

    /// Every slot of every consent purpose of the catalog, with its customers by their latest
    /// choice (slots nobody chose on show zeros); logged (`consent.counts`, naming nobody).
    pub async fn consent_tallies(&self, auth: &Authorized) -> Result<Vec<SlotTally>, VaultError> {
        self.require_oversight(auth, "consent is counted")?;
        let stored = self.store.consent_counts().await?;
        let mut tallies = Vec::new();
        for purpose in self.catalog.purposes.iter().filter(|p| p.needs_consent()) {
            let current = self.notices().version(&purpose.id);
            let channels: Vec<Option<&str>> = if purpose.channels.is_empty() {
                vec![None]
            } else {
                purpose.channels.iter().map(|c| Some(c.name())).collect()
            };
            for channel in channels {
                let mut t = SlotTally {
                    purpose: purpose.id.to_string(),
                    channel: channel.map(str::to_string),
                    granted: 0,
                    withdrawn: 0,
                    renewal_needed: 0,
                };
                let here = stored.iter().filter(|c| c.purpose == t.purpose && c.channel == channel.unwrap_or(""));
                for c in here {
                    match c.action.as_str() {
                        "withdraw" => t.withdrawn += c.customers,
                        _ if counts(purpose, ConsentAction::Grant, &c.notice_version, current) => {
                            t.granted += c.customers
                        }
                        _ => t.renewal_needed += c.customers,
                    }
                }
                tallies.push(t);
            }
        }
        let log = self
            .audit(auth, candor_log::Action::ConsentCounts, &[])
            .detail(format!("{} slots", tallies.len()))
            .record();
        self.store.append_log(vec![log]).await?;
        Ok(tallies)
    }

    /// Every grant, newest first, with how many customers it holds; logged (`grant.list`).
    pub async fn grant_summaries(&self, auth: &Authorized) -> Result<Vec<GrantSummary>, VaultError> {
        self.require_oversight(auth, "grants are overseen")?;
        let grants = self.store.grants().await?;
        let sizes: std::collections::HashMap<String, u64> = self.store.grant_sizes().await?.into_iter().collect();
        let log =
            self.audit(auth, candor_log::Action::GrantList, &[]).detail(format!("{} grants", grants.len())).record();
        self.store.append_log(vec![log]).await?;
        Ok(grants
            .into_iter()
            .map(|g| GrantSummary { customers: sizes.get(&g.id).copied().unwrap_or(0), grant: g })
            .collect())
    }

    /// Whether the caller may stop any grant (a `customer_requests` purpose and `erase = true`).
    pub fn may_stop_grants(&self, auth: &Authorized) -> bool {
        self.purpose(auth).customer_requests && self.catalog.role(&auth.principal.role).is_some_and(|r| r.erase)
    }

    /// Stops grant `id` whatever its purpose (see the module documentation); refused, and the
    /// refusal logged, without the power.
    pub async fn stop_grant(&self, auth: &Authorized, id: &str) -> Result<Grant, VaultError> {
        self.require_oversight(auth, "grants are stopped")?;
        let g = self.store.grant(id).await?.ok_or(VaultError::GrantNotFound)?;
        if !self.may_stop_grants(auth) {
            let audit = self.audit(auth, candor_log::Action::GrantRevoke, &[]).detail(format!("grant {}", g.id));
            let error =
                VaultError::EraseNotAllowed { role: auth.principal.role.clone(), purpose: auth.purpose.to_string() };
            return self.refuse(audit, error).await;
        }
        self.end_grant(&auth.principal, g).await
    }

    /// Sends an undelivered notice to its recipient again now (the dispatcher picks it up at
    /// its next round); logged (`recipient_notice.retry`, naming the notice's customer).
    pub async fn retry_notice(&self, auth: &Authorized, id: &str) -> Result<Notice, VaultError> {
        self.require_oversight(auth, "notices to recipients are followed up")?;
        let notice = self.store.notice(id).await?.ok_or(VaultError::NoticeNotFound)?;
        if notice.delivered_at.is_some() {
            return Err(VaultError::Store(candor_store::StoreError::Conflict(
                "the notice was already delivered; only an undelivered one is sent again".into(),
            )));
        }
        let subjects: Vec<candor_core::SubjectId> =
            candor_core::SubjectId::parse(&notice.subject).into_iter().collect();
        let log = self
            .audit(auth, candor_log::Action::RecipientNoticeRetry, &subjects)
            .detail(format!("notice {id} to {}", notice.recipient))
            .record();
        let now = self.now_millis();
        if !self.store.retry_notice(id, now, log).await? {
            return Err(VaultError::Store(candor_store::StoreError::Conflict(
                "the notice was delivered meanwhile".into(),
            )));
        }
        Ok(self.store.notice(id).await?.unwrap_or(notice))
    }
}
