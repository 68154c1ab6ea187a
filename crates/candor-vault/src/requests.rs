//! Customer requests (access, export, correction, erasure, restriction, objection): recorded
//! with when they were received and their legal deadline (one month, GDPR Art. 12(3)), their
//! status and who handled them. Managed under a purpose declared `customer_requests = true`.

use candor_core::SubjectId;
use candor_core::rights::{REFUSAL_REASONS, refusal_reason};
use candor_store::{Request, RequestChange};

use super::center::CustomerSession;
use super::{Authorized, Vault, VaultError};

pub const REQUEST_KINDS: [&str; 6] = ["access", "export", "correction", "erasure", "restriction", "objection"];
pub const CLOSED_STATUSES: [&str; 2] = ["completed", "rejected"];
/// Most requests listed at once.
pub const MAX_LISTED: u32 = 1000;

/// Most of one customer's requests the privacy center lists.
pub const MAX_OWN: u32 = 100;

/// What handling an open request can change, short of closing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestUpdate {
    /// Give it to the caller.
    AssignToMe,
    /// Give it to a staff member, by pseudonym (`stf_…`).
    AssignTo(String),
    /// Give it to nobody.
    Unassign,
    /// The customer was asked to prove who they are: the clock stops (GDPR Art. 12(6)).
    IdentityRequested,
    /// They did: the clock runs again, the deadline moved by the time it stood still.
    IdentityProven,
}

impl RequestUpdate {
    /// The update a `PATCH /v1/requests/{id}` field names: `assignee` (`me`, `nobody` or a staff
    /// pseudonym) or `identity` (`requested` or `proven`).
    pub fn parse(field: &'static str, value: &str) -> Result<Self, VaultError> {
        let bad = |message: &str| VaultError::InvalidInput { field, message: message.into() };
        match (field, value) {
            ("assignee", "me") => Ok(RequestUpdate::AssignToMe),
            ("assignee", "nobody") => Ok(RequestUpdate::Unassign),
            ("assignee", p) if is_staff_pseudonym(p) => Ok(RequestUpdate::AssignTo(p.to_string())),
            ("assignee", _) => Err(bad("must be `me`, `nobody` or a staff pseudonym (stf_ and 32 hex digits)")),
            ("identity", "requested") => Ok(RequestUpdate::IdentityRequested),
            ("identity", "proven") => Ok(RequestUpdate::IdentityProven),
            _ => Err(bad("must be `requested` or `proven`")),
        }
    }
}

fn is_staff_pseudonym(p: &str) -> bool {
    p.strip_prefix("stf_").is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

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
            assignee: None,
            waiting_since: None,
            paused_ms: 0,
            reason: None,
        };
        let log = self
            .audit(auth, candor_log::Action::RequestOpen, &[subject])
            .detail(format!("{kind} request {}", request.id))
            .record();
        self.store.insert_request(request.clone(), log).await?;
        Ok(request)
    }

    /// Refused unless the caller acts under a `customer_requests` purpose.
    fn require_requests_purpose(&self, auth: &Authorized) -> Result<(), VaultError> {
        if self.purpose(auth).customer_requests {
            return Ok(());
        }
        Err(VaultError::WrongPurpose(format!(
            "requests are handled under a purpose declared customer_requests = true, not `{}`",
            auth.purpose
        )))
    }

    /// Closes a request as `completed` or `rejected`; a refusal names its reason (a code of
    /// [`REFUSAL_REASONS`], which the customer reads in the privacy center).
    pub async fn close_request(
        &self,
        auth: &Authorized,
        id: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Result<Request, VaultError> {
        self.require_requests_purpose(auth)?;
        if !CLOSED_STATUSES.contains(&status) {
            return Err(VaultError::InvalidInput { field: "status", message: "must be completed or rejected".into() });
        }
        let reason = match (status, reason.map(str::trim).filter(|r| !r.is_empty())) {
            ("rejected", Some(r)) if refusal_reason(r).is_some() => Some(r),
            ("rejected", _) => {
                let codes: Vec<&str> = REFUSAL_REASONS.iter().map(|(c, _)| *c).collect();
                return Err(VaultError::InvalidInput {
                    field: "reason",
                    message: format!("a refusal must give its reason, one of: {}", codes.join(", ")),
                });
            }
            (_, Some(_)) => {
                return Err(VaultError::InvalidInput {
                    field: "reason",
                    message: "is given only with status rejected".into(),
                });
            }
            (_, None) => None,
        };
        let found = self.store.request(id).await?.ok_or(VaultError::RequestNotFound)?;
        let subjects: Vec<SubjectId> = SubjectId::parse(&found.subject_id).into_iter().collect();
        let detail = match reason {
            Some(r) => format!("{status} request {id}: {r}"),
            None => format!("{status} request {id}"),
        };
        let log = self.audit(auth, candor_log::Action::RequestClose, &subjects).detail(detail).record();
        self.store
            .close_request(id, status, reason, self.now_millis(), &auth.principal.token_id, log)
            .await?
            .ok_or(VaultError::RequestNotFound)
    }

    /// One request; logged (`request.read`).
    pub async fn request(&self, auth: &Authorized, id: &str) -> Result<Request, VaultError> {
        self.require_requests_purpose(auth)?;
        let found = self.store.request(id).await?.ok_or(VaultError::RequestNotFound)?;
        let subjects: Vec<SubjectId> = SubjectId::parse(&found.subject_id).into_iter().collect();
        let log = self.audit(auth, candor_log::Action::RequestRead, &subjects).detail(format!("request {id}")).record();
        self.store.append_log(vec![log]).await?;
        Ok(found)
    }

    /// Assigns an open request, or stops or restarts its clock for proof of identity; logged
    /// (`request.update`) when it changes anything. A closed request cannot change
    /// (`conflict`); asking for what is already so changes nothing.
    pub async fn update_request(
        &self,
        auth: &Authorized,
        id: &str,
        update: RequestUpdate,
    ) -> Result<Request, VaultError> {
        self.require_requests_purpose(auth)?;
        let found = self.store.request(id).await?.ok_or(VaultError::RequestNotFound)?;
        if found.status != "open" {
            return Err(VaultError::Store(candor_store::StoreError::Conflict(format!(
                "the request is closed ({}); a closed request does not change",
                found.status
            ))));
        }
        let now = self.now_millis();
        let (change, detail) = match update {
            RequestUpdate::AssignToMe => {
                let me = auth.principal.token_id.clone();
                (RequestChange::Assign(Some(me.clone())), format!("assigned request {id} to {me}"))
            }
            RequestUpdate::AssignTo(p) => {
                let to = candor_log::actor::staff(&p);
                (RequestChange::Assign(Some(to.clone())), format!("assigned request {id} to {to}"))
            }
            RequestUpdate::Unassign => (RequestChange::Assign(None), format!("unassigned request {id}")),
            RequestUpdate::IdentityRequested => (
                RequestChange::AwaitIdentity { at: now },
                format!("request {id}: waiting for proof of identity, its clock stopped"),
            ),
            RequestUpdate::IdentityProven => (
                RequestChange::IdentityProven { at: now },
                format!("request {id}: identity proven, its clock runs again"),
            ),
        };
        let subjects: Vec<SubjectId> = SubjectId::parse(&found.subject_id).into_iter().collect();
        let log = self.audit(auth, candor_log::Action::RequestUpdate, &subjects).detail(detail).record();
        let (request, _changed) =
            self.store.change_request(id, change, log).await?.ok_or(VaultError::RequestNotFound)?;
        Ok(request)
    }

    /// The signed-in customer's own requests, newest first, with how each was answered;
    /// logged (`request.list`, by the customer).
    pub async fn own_requests(&self, session: &CustomerSession) -> Result<Vec<Request>, VaultError> {
        let auth = session.auth();
        let list = self.store.subject_requests(session.subject, MAX_OWN).await?;
        let log = self
            .audit(auth, candor_log::Action::RequestList, &[session.subject])
            .decision("full")
            .detail(format!("{} requests", list.len()))
            .record();
        self.store.append_log(vec![log]).await?;
        Ok(list)
    }

    /// Requests, newest first, of one status if given.
    pub async fn list_requests(&self, auth: &Authorized, status: Option<&str>) -> Result<Vec<Request>, VaultError> {
        self.require_requests_purpose(auth)?;
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
