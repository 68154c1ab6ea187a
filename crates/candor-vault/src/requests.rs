//! Customer requests (access, export, correction, erasure, restriction, objection): recorded
//! with when they were received and their legal deadline (one month, GDPR Art. 12(3)), their
//! status and who handled them. Managed under a purpose declared `customer_requests = true`.

use candor_core::SubjectId;
use candor_store::Request;

use super::{Authorized, Vault, VaultError};

pub const REQUEST_KINDS: [&str; 6] = ["access", "export", "correction", "erasure", "restriction", "objection"];
pub const CLOSED_STATUSES: [&str; 2] = ["completed", "rejected"];
/// Most requests listed at once.
pub const MAX_LISTED: u32 = 1000;

/// The legal deadline of a request received at `received_at`: one calendar month later.
pub fn deadline(received_at: i64) -> Option<i64> {
    let t = jiff::Timestamp::from_millisecond(received_at).ok()?.to_zoned(jiff::tz::TimeZone::UTC);
    Some(t.checked_add(jiff::Span::new().months(1)).ok()?.timestamp().as_millisecond())
}

impl Vault {
    /// Records a request about an existing customer.
    pub async fn open_request(
        &self,
        auth: &Authorized,
        subject: SubjectId,
        kind: &str,
        received_at: Option<&str>,
    ) -> Result<Request, VaultError> {
        self.require_customer_requests(auth, candor_log::Action::RequestOpen, subject).await?;
        if !REQUEST_KINDS.contains(&kind) {
            return Err(VaultError::InvalidInput {
                field: "kind",
                message: format!("must be one of: {}", REQUEST_KINDS.join(", ")),
            });
        }
        let now = self.now_millis();
        let received_at = match received_at {
            None => now,
            Some(t) => match t.parse::<jiff::Timestamp>() {
                Ok(t) if t.as_millisecond() <= now + 5 * 60 * 1000 => t.as_millisecond(),
                _ => {
                    return Err(VaultError::InvalidInput {
                        field: "received_at",
                        message: "must be an RFC 3339 time, not in the future".into(),
                    });
                }
            },
        };
        self.store.load_subject(subject, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let request = Request {
            id: uuid::Uuid::new_v4().to_string(),
            subject_id: subject.to_string(),
            kind: kind.to_string(),
            status: "open".into(),
            received_at,
            due_at: deadline(received_at).unwrap_or(received_at),
            created_by: auth.principal.token_id.clone(),
            closed_at: None,
            closed_by: None,
        };
        let log = self
            .audit(auth, candor_log::Action::RequestOpen, &[subject])
            .detail(format!("{kind} request {}", request.id))
            .record();
        self.store.insert_request(request.clone(), log).await?;
        Ok(request)
    }

    /// Closes a request as `completed` or `rejected`.
    pub async fn close_request(&self, auth: &Authorized, id: &str, status: &str) -> Result<Request, VaultError> {
        if !self.purpose(auth).customer_requests {
            return Err(VaultError::WrongPurpose(format!(
                "requests are handled under a purpose declared customer_requests = true, not `{}`",
                auth.purpose
            )));
        }
        if !CLOSED_STATUSES.contains(&status) {
            return Err(VaultError::InvalidInput { field: "status", message: "must be completed or rejected".into() });
        }
        let found = self.store.request(id).await?.ok_or(VaultError::RequestNotFound)?;
        let subjects: Vec<SubjectId> = SubjectId::parse(&found.subject_id).into_iter().collect();
        let log = self
            .audit(auth, candor_log::Action::RequestClose, &subjects)
            .detail(format!("{status} request {id}"))
            .record();
        self.store
            .close_request(id, status, self.now_millis(), &auth.principal.token_id, log)
            .await?
            .ok_or(VaultError::RequestNotFound)
    }

    /// Requests, newest first, of one status if given.
    pub async fn list_requests(&self, auth: &Authorized, status: Option<&str>) -> Result<Vec<Request>, VaultError> {
        if !self.purpose(auth).customer_requests {
            return Err(VaultError::WrongPurpose(format!(
                "requests are handled under a purpose declared customer_requests = true, not `{}`",
                auth.purpose
            )));
        }
        if let Some(s) = status
            && s != "open"
            && !CLOSED_STATUSES.contains(&s)
        {
            return Err(VaultError::InvalidInput {
                field: "status",
                message: "must be open, completed or rejected".into(),
            });
        }
        let list = self.store.requests(status, MAX_LISTED).await?;
        let log = self
            .audit(auth, candor_log::Action::RequestList, &[])
            .decision("full")
            .detail(format!("{} requests", list.len()))
            .record();
        self.store.append_log(vec![log]).await?;
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_one_calendar_month_later() {
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        assert_eq!(deadline(at("2026-01-15T10:00:00Z")), Some(at("2026-02-15T10:00:00Z")));
        assert_eq!(deadline(at("2026-01-31T10:00:00Z")), Some(at("2026-02-28T10:00:00Z")));
    }
}
