//! Notices to recipients (GDPR Art. 19): the vault's side of the outbox. The dispatcher
//! (the `outbox` module of the `candor` package) finds what is due and posts it; the HTTP layer checks a recipient's signed
//! confirmation; recording each step, and its log entry, happens here.

use candor_core::SubjectId;
use candor_store::{Millis, Notice};

use super::audit::system_actor;
use super::{Authorized, Principal, Vault, VaultError};

/// Most notices one listing returns.
const LIST_LIMIT: u32 = 1000;

fn subjects_of(notice: &Notice) -> Vec<SubjectId> {
    SubjectId::parse(&notice.subject).into_iter().collect()
}

impl Vault {
    /// Notices due for a delivery attempt at `now`, at most `limit`.
    pub async fn due_notices(&self, now: Millis, limit: u32) -> Result<Vec<Notice>, VaultError> {
        Ok(self.store.due_notices(now, limit).await?)
    }

    /// Records a failed delivery attempt and when to try again.
    pub async fn notice_failed(&self, id: &str, next_attempt_at: Millis, why: &str) -> Result<(), VaultError> {
        Ok(self.store.notice_failed(id, next_attempt_at, why).await?)
    }

    /// Records that the recipient accepted `notice` (answered 2xx), with its log entry, in one
    /// transaction.
    pub async fn notice_delivered(&self, notice: &Notice) -> Result<(), VaultError> {
        let log = self
            .entry(&system_actor(), candor_log::Action::RecipientNotified)
            .subjects(&subjects_of(notice))
            .detail(format!("notice {} ({}) to {}", notice.id, notice.kind, notice.recipient))
            .record();
        Ok(self.store.notice_delivered(&notice.id, self.now_millis(), log).await?)
    }

    /// A notice by id, for checking a recipient's signed confirmation of it.
    pub async fn recipient_notice(&self, id: &str) -> Result<Option<Notice>, VaultError> {
        Ok(self.store.notice(id).await?)
    }

    /// Records the recipient's confirmation of `notice` (its signature already checked) with its
    /// log entry under the recipient, in one transaction, and returns the notice as it now
    /// stands.
    pub async fn confirm_notice(&self, notice: &Notice) -> Result<Option<Notice>, VaultError> {
        let id = &notice.id;
        let actor = Principal {
            token_id: candor_log::actor::notice(id),
            role: candor_log::actor::recipient_role(&notice.recipient),
            origin: None,
        };
        let log = self
            .entry(&actor, candor_log::Action::RecipientConfirmed)
            .subjects(&subjects_of(notice))
            .detail(format!("notice {id} ({})", notice.kind))
            .record();
        self.store.confirm_notice(id, self.now_millis(), log).await?;
        Ok(self.store.notice(id).await?)
    }

    /// Notices recipients have not confirmed yet, oldest first: under a purpose declared
    /// `customer_requests = true` (following up the customers' requests), logged with the
    /// customers they name.
    pub async fn unconfirmed_notices(&self, auth: &Authorized) -> Result<Vec<Notice>, VaultError> {
        if !self.purpose(auth).customer_requests {
            return Err(VaultError::WrongPurpose(format!(
                "notices to recipients are followed up under a purpose declared customer_requests = true, not `{}`",
                auth.purpose
            )));
        }
        let list = self.store.unconfirmed_notices(LIST_LIMIT).await?;
        let mut subjects: Vec<SubjectId> = list.iter().flat_map(subjects_of).collect();
        subjects.sort_unstable();
        subjects.dedup();
        let log = self
            .audit(auth, candor_log::Action::RecipientNoticesRead, &subjects)
            .detail(format!("{} notice(s)", list.len()))
            .record();
        self.store.append_log(vec![log]).await?;
        Ok(list)
    }
}
