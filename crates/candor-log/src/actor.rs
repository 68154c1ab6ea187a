//! How a log entry names who acted (`Entry::actor`: a token id and a role), for the actors that
//! are not an API token: written and read only through these functions, so the spelling lives
//! in one place. A verifier can tell the kinds apart from the text alone.
//!
//! | who                                   | `actor.token`          | `actor.role`         |
//! |---------------------------------------|------------------------|----------------------|
//! | a person signed in to the console     | `staff:<pseudonym>`    | their role           |
//! | a service with an IdP access token    | `client:<client id>`   | its role             |
//! | a customer in the privacy center      | `session:<session id>` | `customer`           |
//! | a recipient reading through a grant   | `grant:<grant id>`     | `recipient:<id>`     |
//! | a recipient confirming a notice       | `notice:<notice id>`   | `recipient:<id>`     |

const STAFF: &str = "staff:";
const CLIENT: &str = "client:";
const SESSION: &str = "session:";
const GRANT: &str = "grant:";
const NOTICE: &str = "notice:";
const RECIPIENT: &str = "recipient:";

/// The actor token of a signed-in staff member.
pub fn staff(pseudonym: &str) -> String {
    format!("{STAFF}{pseudonym}")
}

/// The pseudonym in a staff actor token, if it is one.
pub fn staff_pseudonym(token: &str) -> Option<&str> {
    token.strip_prefix(STAFF)
}

/// The actor token of a service that presented an access token of the identity provider.
pub fn client(client_id: &str) -> String {
    format!("{CLIENT}{client_id}")
}

/// The actor token of a customer's privacy-center session.
pub fn session(session_id: &str) -> String {
    format!("{SESSION}{session_id}")
}

/// The actor token of a recipient reading through a grant.
pub fn grant(grant_id: &str) -> String {
    format!("{GRANT}{grant_id}")
}

/// The actor token of a recipient confirming a notice.
pub fn notice(notice_id: &str) -> String {
    format!("{NOTICE}{notice_id}")
}

/// The actor role of a recipient.
pub fn recipient_role(recipient_id: &str) -> String {
    format!("{RECIPIENT}{recipient_id}")
}

/// The recipient an actor role names, if it is a recipient's.
pub fn recipient_of(role: &str) -> Option<&str> {
    role.strip_prefix(RECIPIENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_back() {
        assert_eq!(staff_pseudonym(&staff("stf_01")), Some("stf_01"));
        assert_eq!(staff_pseudonym(&client("shop")), None);
        assert_eq!(recipient_of(&recipient_role("parcel_carrier")), Some("parcel_carrier"));
        assert_eq!(recipient_of("support_agent"), None);
        assert_eq!(
            (session("s1"), grant("g1"), notice("n1")),
            ("session:s1".into(), "grant:g1".into(), "notice:n1".into())
        );
    }
}
