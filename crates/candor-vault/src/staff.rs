//! Staff sessions and the staff directory: the vault's side of a person signed in through the
//! company's identity provider (`candor_http::identity` says who they are; this stores their session and
//! turns it into a [`Principal`], so what they do goes through the same authorization, policy
//! decisions and log as a token's holder).

use candor_crypto::{generate_secret, hash_token};
use candor_store::{Millis, NewStaffSession, StaffPerson, StaffSession};
use zeroize::Zeroizing;

use super::{Principal, Vault, VaultError};

const MINUTE: Millis = 60_000;
/// Activity is written back at most this often.
const TOUCH_EVERY: Millis = MINUTE;
/// What a staff session's secret (the cookie) starts with.
pub const STAFF_SESSION_PREFIX: &str = "cndt_";

/// How long staff sessions last (`[staff] session_idle_minutes`, `session_max_hours`).
#[derive(Debug, Clone, Copy)]
pub struct StaffTimes {
    pub idle_minutes: u32,
    pub max_hours: u32,
}

impl StaffTimes {
    fn idle(self) -> Millis {
        Millis::from(self.idle_minutes) * MINUTE
    }
    pub fn max(self) -> Millis {
        Millis::from(self.max_hours) * 60 * MINUTE
    }
}

/// A person the identity provider vouched for, with the role their groups map to.
pub struct StaffSignIn {
    pub pseudonym: String,
    pub issuer: String,
    pub subject: String,
    pub role: String,
    pub proof: SignInProof,
}

/// How strongly a session's person proved who they are, for `[staff.require_mfa]`: whether the
/// provider said the sign-in was multi-factor, and when it happened (`auth_time`, seconds).
///
/// It is carried at the end of the session's secret (`cndt_<random>.m.<auth_time>` or `.p.`)
/// rather than in a column: only the SHA-256 of the whole secret is stored and looked up, so a
/// changed suffix finds no session, and any server of the installation reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInProof {
    pub multi_factor: bool,
    pub auth_time: Option<i64>,
}

impl SignInProof {
    fn suffix(self) -> String {
        format!(".{}.{}", if self.multi_factor { "m" } else { "p" }, self.auth_time.unwrap_or(0))
    }

    /// The proof a session's secret carries (one it does not carry proves nothing).
    pub fn of_secret(secret: &str) -> Self {
        let mut parts = secret.rsplitn(3, '.');
        let time = parts.next().and_then(|t| t.parse::<i64>().ok()).filter(|t| *t > 0);
        let multi_factor = parts.next() == Some("m") && parts.next().is_some();
        Self { multi_factor, auth_time: time }
    }
}

/// The actor of a signed-in person: `staff:<pseudonym>` with the session's role. The log names
/// them by it; the token id is per person, so per-token limits (erasures and restrictions per
/// hour) and idempotency keys are per person across their sessions.
pub fn staff_principal(pseudonym: &str, role: &str) -> Principal {
    Principal { token_id: candor_log::actor::staff(pseudonym), role: role.to_string(), origin: None }
}

/// A service that presented an access token from the company's identity provider: actor
/// `client:<client id>` (an application's registered id, never a person) with the role
/// `[staff.clients]` gives it.
pub fn client_principal(client_id: &str, role: &str) -> Principal {
    Principal { token_id: candor_log::actor::client(client_id), role: role.to_string(), origin: None }
}

impl Vault {
    /// Starts a session for a person who just signed in; logged (`staff.sign_in`). Returns the
    /// session's secret, for the cookie (only its SHA-256 is stored).
    pub async fn start_staff_session(
        &self,
        who: StaffSignIn,
        times: StaffTimes,
    ) -> Result<(Zeroizing<String>, StaffSession), VaultError> {
        let mut secret = generate_secret(STAFF_SESSION_PREFIX)?;
        secret.push_str(&who.proof.suffix());
        let now = self.now_millis();
        let id = uuid::Uuid::new_v4().to_string();
        let log = self
            .entry(&staff_principal(&who.pseudonym, &who.role), candor_log::Action::StaffSignIn)
            .detail(format!("session {id}"))
            .record();
        let person = StaffPerson {
            pseudonym: who.pseudonym.clone(),
            issuer: who.issuer,
            subject: who.subject,
            first_seen_at: now,
            last_seen_at: now,
            last_role: who.role.clone(),
        };
        let session = NewStaffSession {
            id: id.clone(),
            hash: hash_token(&secret).0,
            pseudonym: who.pseudonym.clone(),
            role: who.role.clone(),
            now,
        };
        self.store.start_staff_session(person, session, now - times.max(), log).await?;
        let session = StaffSession { id, pseudonym: who.pseudonym, role: who.role, created_at: now, last_seen_at: now };
        Ok((secret, session))
    }

    /// The live session a cookie's secret belongs to. A session ends after `idle_minutes`
    /// without a request and after `max_hours` in any case (logged as `staff.sign_out`).
    pub async fn staff_session(&self, secret: &str, times: StaffTimes) -> Result<StaffSession, VaultError> {
        let found = self
            .store
            .staff_session_by_hash(&hash_token(secret).0)
            .await?
            .ok_or(VaultError::Unauthenticated("the staff session has ended: sign in again at /console"))?;
        let now = self.now_millis();
        let idle = found.last_seen_at + times.idle() <= now;
        let too_old = found.created_at + times.max() <= now;
        if idle || too_old {
            let log = self
                .entry(&staff_principal(&found.pseudonym, &found.role), candor_log::Action::StaffSignOut)
                .detail(format!("session {} {}", found.id, if idle { "idle timeout" } else { "session too old" }))
                .record();
            self.store.end_staff_session(&found.id, Some(log)).await?;
            return Err(VaultError::Unauthenticated("the staff session has expired: sign in again at /console"));
        }
        if now - found.last_seen_at >= TOUCH_EVERY {
            self.store.touch_staff_session(&found.id, now).await?;
        }
        Ok(found)
    }

    /// Logs that a signed-in person was refused `power` for want of a recent multi-factor
    /// sign-in (`access.denied`, detail `reauthentication_required:<power>`), against the
    /// customer the call names, if any — as every refusal is.
    pub async fn log_reauthentication_required(
        &self,
        who: &Principal,
        power: &str,
        subject: Option<candor_core::SubjectId>,
    ) -> Result<(), VaultError> {
        let record = self
            .entry(who, candor_log::Action::AccessDenied)
            .subjects(subject.as_slice())
            .decision("denied")
            .detail(format!("reauthentication_required:{power}"))
            .record();
        self.store.append_log(vec![record]).await?;
        Ok(())
    }

    /// Ends a staff session (sign-out); logged.
    pub async fn end_staff_session(&self, session: &StaffSession) -> Result<(), VaultError> {
        let log = self
            .entry(&staff_principal(&session.pseudonym, &session.role), candor_log::Action::StaffSignOut)
            .detail(format!("session {}", session.id))
            .record();
        self.store.end_staff_session(&session.id, Some(log)).await?;
        Ok(())
    }

    /// Resolves a staff pseudonym to the identity provider's issuer and subject, for an auditor
    /// (admin or a role with `audit = true`). The look-up is logged (`staff.whois`, naming the
    /// pseudonym looked up) whether or not it finds someone; a refusal is logged too.
    pub async fn staff_whois(&self, caller: &Principal, pseudonym: &str) -> Result<Option<StaffPerson>, VaultError> {
        if !self.policy.may_audit(&caller.role) {
            let audit = self.entry(caller, candor_log::Action::StaffWhois).subjects(&[]);
            return self.refuse(audit, VaultError::AuditNotAllowed(caller.role.clone())).await;
        }
        let log = self.entry(caller, candor_log::Action::StaffWhois).detail(format!("looked up {pseudonym}")).record();
        Ok(self.store.resolve_staff(pseudonym, log).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::SignInProof;

    #[test]
    fn the_proof_rides_at_the_end_of_the_secret() {
        for proof in [
            SignInProof { multi_factor: true, auth_time: Some(1_796_309_271) },
            SignInProof { multi_factor: false, auth_time: Some(5) },
            SignInProof { multi_factor: false, auth_time: None },
        ] {
            assert_eq!(SignInProof::of_secret(&format!("cndt_abc-_x{}", proof.suffix())), proof);
        }
        assert_eq!(SignInProof::of_secret("cndt_abc"), SignInProof { multi_factor: false, auth_time: None });
        assert_eq!(SignInProof::of_secret("m.5"), SignInProof { multi_factor: false, auth_time: Some(5) });
    }
}
