//! Message authenticity (anti-phishing): the company's mailer registers each message it sends a
//! customer and prints the verification code it gets back; the customer (or anyone holding the
//! message) checks the code. A check answers genuine or unknown and reveals nothing about other
//! customers; the customer's own list, in the privacy center, shows every message sent to them.

use candor_core::access::AccessDenied;
use candor_core::catalog::Channel;
use candor_core::{EventId, FieldName, SubjectId};
use candor_crypto::{SubjectKey, generate_message_code, message_code_hash};
use candor_store::{Millis, StoreError, StoredMessage};

use super::center::CustomerSession;
use super::consents::ConsentScope;
use super::{Authorized, Principal, Vault, VaultError};

/// Longest subject line accepted.
const MAX_SUBJECT_LINE: usize = 300;
/// Messages listed in the privacy center.
pub const MESSAGES_LISTED: u32 = 200;

/// A message just registered: the code to print in it.
pub struct RegisteredMessage {
    pub id: String,
    pub code: String,
    pub sent_at: Millis,
}

/// A message as its customer sees it. No `Debug`: the subject line is personal.
pub struct MessageView {
    pub purpose: String,
    pub channel: String,
    pub subject_line: String,
    pub sent_at: Millis,
}

/// What a public check of a code says.
pub enum Verification {
    Genuine { channel: String, sent_at: Millis },
    Unknown,
}

/// The actor of public code checks in the log.
fn public_actor() -> Principal {
    Principal { token_id: "public".into(), role: "public".into(), origin: None }
}

/// The name the subject line is sealed under: bound to its message, so lines cannot be swapped.
fn line_name(message_id: &str) -> FieldName {
    FieldName::new(format!("message_subject_line:{message_id}"))
}

fn check_input(channel: &str, subject_line: &str, body_sha256: &str) -> Result<(Channel, [u8; 32]), VaultError> {
    let channel = Channel::parse(channel).ok_or_else(|| VaultError::InvalidInput {
        field: "channel",
        message: "must be one of: email, sms, phone, post, push".into(),
    })?;
    let line = subject_line.trim();
    if line.is_empty() || line.chars().count() > MAX_SUBJECT_LINE || line.chars().any(char::is_control) {
        return Err(VaultError::InvalidInput {
            field: "subject_line",
            message: format!("must be 1 to {MAX_SUBJECT_LINE} characters on one line"),
        });
    }
    // Exactly 64 hex digits: no sign (`from_str_radix` takes `+f`), no surrounding spaces.
    let hex = body_sha256;
    let mut hash = [0u8; 32];
    let valid = hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && hash.iter_mut().enumerate().all(|(i, b)| match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
            Ok(v) => {
                *b = v;
                true
            }
            Err(_) => false,
        });
    if !valid {
        return Err(VaultError::InvalidInput {
            field: "body_sha256",
            message: "must be the SHA-256 of the message body, as 64 hexadecimal characters".into(),
        });
    }
    Ok((channel, hash))
}

impl Vault {
    /// Registers a message sent to customer `id` under the caller's purpose and returns its
    /// verification code. The purpose must allow using this customer's data (consent on this
    /// channel for a consent purpose; not while restricted, except for legal obligations).
    pub async fn register_message(
        &self,
        auth: &Authorized,
        id: SubjectId,
        channel: &str,
        subject_line: &str,
        body_sha256: &str,
    ) -> Result<RegisteredMessage, VaultError> {
        let (channel, body_sha256) = check_input(channel, subject_line, body_sha256)?;
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let scope = self.consent_scope(auth, id).await?;
        let situation = self.situation(auth, id, &scope, record.restricted).await?;
        self.gate(auth, id, situation, candor_log::Action::MessageRegister).await?;
        if let ConsentScope::Active { purpose, channels } = &scope
            && !purpose.channels.is_empty()
            && !channels.contains(&Some(channel))
        {
            let audit = self
                .audit(auth, candor_log::Action::MessageRegister, &[id])
                .detail(format!("channel {}", channel.name()));
            let error = VaultError::Access(AccessDenied::ConsentRequired(auth.purpose.to_string()));
            return self.refuse(audit, error).await;
        }
        let key = self.keys.open_subject_key(id, &record.dek)?;
        self.store_message(&key, &auth.principal, auth.purpose.as_str(), channel, subject_line, body_sha256).await
    }

    /// Seals and stores a message for the customer whose key is `key`, with a fresh code;
    /// logged with `actor`.
    pub(crate) async fn store_message(
        &self,
        key: &SubjectKey,
        actor: &Principal,
        purpose: &str,
        channel: Channel,
        subject_line: &str,
        body_sha256: [u8; 32],
    ) -> Result<RegisteredMessage, VaultError> {
        let id = key.subject();
        let sent_at = self.now_millis();
        // A code collision is astronomically unlikely; one retry covers it.
        for _ in 0..2 {
            let message_id = EventId::random().to_string();
            let code = generate_message_code()?;
            let message = StoredMessage {
                id: message_id.clone(),
                subject: id,
                purpose: purpose.to_string(),
                channel: channel.name().to_string(),
                subject_line: key.seal_field(&line_name(&message_id), subject_line.trim().as_bytes())?,
                body_sha256,
                code_hash: message_code_hash(&code).expect("generated codes are codes"),
                sent_at,
            };
            let log = self
                .entry(actor, candor_log::Action::MessageRegister)
                .purpose(&candor_core::PurposeId::new(purpose))
                .subjects(&[id])
                .detail(format!("message {message_id}; channel {}", channel.name()))
                .record();
            match self.store.register_message(message, log).await {
                Ok(true) => return Ok(RegisteredMessage { id: message_id, code, sent_at }),
                Ok(false) => return Err(VaultError::SubjectNotFound),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(VaultError::Store(StoreError::Conflict("message code".into())))
    }

    /// Checks a code anyone may hold (it is printed in the message): genuine or unknown, with
    /// only the channel and time. A check of a genuine code is logged against its customer.
    ///
    /// A message stays genuine after its customer's erasure: the answer is the same as before
    /// (so it does not even say that the customer was erased), from what the erasure kept of
    /// the message, which names no customer; the check is logged without one.
    pub async fn verify_message_code(&self, code: &str) -> Result<Verification, VaultError> {
        let Some(hash) = message_code_hash(code) else { return Ok(Verification::Unknown) };
        if let Some(m) = self.store.message_by_code(&hash).await? {
            let log = self
                .entry(&public_actor(), candor_log::Action::MessageVerify)
                .subjects(&[m.subject])
                .decision("genuine")
                .detail(format!("message {}", m.id))
                .record();
            self.store.append_log(vec![log]).await?;
            return Ok(Verification::Genuine { channel: m.channel, sent_at: m.sent_at });
        }
        let Some(m) = self.store.erased_message_by_code(&hash).await? else { return Ok(Verification::Unknown) };
        let log = self
            .entry(&public_actor(), candor_log::Action::MessageVerify)
            .decision("genuine")
            .detail("a message to a customer since erased")
            .record();
        self.store.append_log(vec![log]).await?;
        Ok(Verification::Genuine { channel: m.channel, sent_at: m.sent_at })
    }

    fn message_view(key: &SubjectKey, m: StoredMessage) -> Result<MessageView, VaultError> {
        let line = key.open_field(&line_name(&m.id), &m.subject_line)?;
        Ok(MessageView {
            purpose: m.purpose,
            channel: m.channel,
            subject_line: String::from_utf8_lossy(&line).into_owned(),
            sent_at: m.sent_at,
        })
    }

    async fn subject_key(&self, id: SubjectId) -> Result<SubjectKey, VaultError> {
        let record = self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        Ok(self.keys.open_subject_key(id, &record.dek)?)
    }

    /// The messages sent to the signed-in customer, newest first; logged.
    pub async fn own_messages(&self, session: &CustomerSession) -> Result<Vec<MessageView>, VaultError> {
        let id = session.subject;
        let key = self.subject_key(id).await?;
        let log = self.audit(session.auth(), candor_log::Action::MessageList, &[id]).decision("full").record();
        self.store.append_log(vec![log]).await?;
        let stored = self.store.messages_of(id, MESSAGES_LISTED).await?;
        stored.into_iter().map(|m| Self::message_view(&key, m)).collect()
    }

    /// The signed-in customer checks a code: their own message if it is one, otherwise nothing
    /// (a code of someone else's message is "unknown" here too). Logged.
    pub async fn verify_own_message(
        &self,
        session: &CustomerSession,
        code: &str,
    ) -> Result<Option<MessageView>, VaultError> {
        let id = session.subject;
        let found = match message_code_hash(code) {
            Some(hash) => self.store.message_by_code(&hash).await?.filter(|m| m.subject == id),
            None => None,
        };
        let decision = if found.is_some() { "genuine" } else { "unknown" };
        let log = self.audit(session.auth(), candor_log::Action::MessageVerify, &[id]).decision(decision).record();
        self.store.append_log(vec![log]).await?;
        match found {
            Some(m) => Ok(Some(Self::message_view(&self.subject_key(id).await?, m)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_input_is_checked_and_errors_name_the_field() {
        let body = "a".repeat(64);
        assert!(check_input("email", "Your order has shipped", &body).is_ok());
        let field = |r: Result<_, VaultError>| match r {
            Err(VaultError::InvalidInput { field, .. }) => field,
            _ => "ok",
        };
        assert_eq!(field(check_input("pigeon", "Hi", &body)), "channel");
        assert_eq!(field(check_input("email", "", &body)), "subject_line");
        assert_eq!(field(check_input("email", "two\nlines", &body)), "subject_line");
        assert_eq!(field(check_input("email", &"x".repeat(301), &body)), "subject_line");
        assert_eq!(field(check_input("email", "Hi", "abc")), "body_sha256");
        let signed = format!("+f{}", "0".repeat(62));
        assert_eq!(field(check_input("email", "Hi", &signed)), "body_sha256");
        let spaced = format!(" {} ", "0".repeat(64));
        assert_eq!(field(check_input("email", "Hi", &spaced)), "body_sha256");
        assert_eq!(field(check_input("email", "Hi", &"g".repeat(64))), "body_sha256");
    }
}
