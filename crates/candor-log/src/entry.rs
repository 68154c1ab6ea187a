//! What one log entry says, and its canonical bytes.
//!
//! Entries name who (token id and role), what (action, field names), whom (random subject ids),
//! why (purpose), when, and the decision — never a personal value. The bytes stored and hashed
//! are the compact JSON serialisation of [`LogEntry`] with fields in declaration order; a
//! verifier hashes the bytes as served and only parses them to display them.

use serde::{Deserialize, Serialize};

/// Version of the entry format.
pub const ENTRY_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub v: u8,
    /// RFC 3339 time, UTC, milliseconds.
    pub time: String,
    /// What happened, e.g. `subject.read`, `subject.create`, `access.denied`.
    pub action: String,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Subject ids concerned (random UUIDs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// Field or event-type names touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// `full`, `masked` or `denied` for accesses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Extra non-personal detail (an error code, a catalog hash, a role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// Who acted: a token id (not the token), `system`, `session:<id>` (a customer in the
    /// privacy center), `grant:<id>` (a recipient), or `staff:<pseudonym>` — a person signed in
    /// through the company's identity provider, named by a stable pseudonym (`stf_` and 32 hex
    /// digits) that only the company can resolve, or `client:<client id>` — a service that
    /// presented an access token from that provider. Older entries simply never use the last forms.
    pub token: String,
    pub role: String,
}

impl Actor {
    /// The staff pseudonym of a person signed in through the identity provider, if this actor is one.
    pub fn staff_pseudonym(&self) -> Option<&str> {
        self.token.strip_prefix("staff:")
    }
}

impl LogEntry {
    /// The canonical bytes that are stored and hashed.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("log entries serialise")
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_have_a_stable_compact_encoding() {
        let e = LogEntry {
            v: ENTRY_VERSION,
            time: "2026-11-22T10:00:00.000Z".into(),
            action: "subject.read".into(),
            actor: Actor { token: "t1".into(), role: "support_agent".into() },
            purpose: Some("customer_support".into()),
            subjects: vec!["7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70".into()],
            fields: vec!["email".into(), "phone".into()],
            decision: Some("full".into()),
            detail: None,
        };
        let bytes = e.to_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"v":1,"time":"2026-11-22T10:00:00.000Z","action":"subject.read","actor":{"token":"t1","role":"support_agent"},"purpose":"customer_support","subjects":["7f0c2d4e-8a8b-4c1e-9d1a-2b3c4d5e6f70"],"fields":["email","phone"],"decision":"full"}"#
        );
        assert_eq!(LogEntry::from_bytes(&bytes).unwrap(), e);
        assert_eq!(e.actor.staff_pseudonym(), None);
    }

    #[test]
    fn a_signed_in_person_is_named_by_pseudonym_in_the_same_format() {
        let bytes = br#"{"v":1,"time":"2026-11-22T10:00:00.000Z","action":"subject.read","actor":{"token":"staff:stf_0123456789abcdef0123456789abcdef","role":"support_agent"},"purpose":"customer_support"}"#;
        let e = LogEntry::from_bytes(bytes).unwrap();
        assert_eq!(e.actor.staff_pseudonym(), Some("stf_0123456789abcdef0123456789abcdef"));
        assert_eq!(e.actor.role, "support_agent");
        assert_eq!(e.to_bytes(), bytes.to_vec(), "the canonical bytes are unchanged");
    }
}
