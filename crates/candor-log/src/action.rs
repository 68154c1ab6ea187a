//! The actions a log entry records, typed: one list, so an action named in code is one the log
//! format knows, and tools group them without a hand-kept copy of their names. The entry itself
//! keeps the action as text (`Entry::action`), so entries written by other versions still parse;
//! [`Action::parse`] says whether a text is one of these.

macro_rules! actions {
    ($($(#[doc = $doc:literal])* $variant:ident = $text:literal,)*) => {
        /// What a log entry says happened.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Action {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Action {
            /// Every action, in the order declared.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            /// The action as the entry spells it (`subject.read`).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $text,)*
                }
            }

            /// The action an entry's text names, if it is one of these.
            pub fn parse(text: &str) -> Option<Action> {
                match text {
                    $($text => Some(Action::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// A request was refused by the policy engine before any data was touched.
    AccessDenied = "access.denied",
    /// A customer's access history (the entries naming them) was read.
    AccessLogRead = "access_log.read",
    /// The supervisory authority was notified of a recorded breach.
    BreachAuthorityNotified = "breach.authority_notified",
    /// A recorded breach was closed.
    BreachClose = "breach.close",
    /// Customers' countries were read in memory to count a breach's affected customers.
    BreachCountry = "breach.country",
    /// A personal-data breach was recorded.
    BreachRecord = "breach.record",
    /// A break-glass override was opened for one customer, with a written reason.
    BreakGlassOpen = "break_glass.open",
    /// The installation started with a catalog whose hash differs from the last one.
    CatalogChanged = "catalog.changed",
    /// The customers a consent purpose and channel may reach were listed.
    ConsentAudience = "consent.audience",
    /// Customers were counted per consent slot and choice (counts only, no customer named).
    ConsentCounts = "consent.counts",
    /// A customer's consent was granted or withdrawn.
    ConsentChange = "consent.change",
    /// A customer's consent history was read.
    ConsentHistory = "consent.history",
    /// A customer's current consent state was read.
    ConsentRead = "consent.read",
    /// A consent receipt was read.
    ConsentReceipt = "consent.receipt",
    /// Consent was recorded on a customer's behalf (paper, phone, import).
    ConsentRecordOnBehalf = "consent.record_on_behalf",
    /// An event was recorded for a customer.
    EventAppend = "event.append",
    /// A customer's events were read.
    EventRead = "event.read",
    /// A sharing grant to a recipient was created.
    GrantCreate = "grant.create",
    /// Sharing grants were listed.
    GrantList = "grant.list",
    /// A recipient read customers' data through a grant.
    GrantRead = "grant.read",
    /// A sharing grant was revoked.
    GrantRevoke = "grant.revoke",
    /// A legal hold was lifted.
    HoldLift = "hold.lift",
    /// A legal hold was placed on a customer.
    HoldPlace = "hold.place",
    /// Whether a customer is under a legal hold was read.
    HoldRead = "hold.read",
    /// Lookup indexes were recomputed under a new index key.
    KeysReindex = "keys.reindex",
    /// A key-encryption key version was retired.
    KeysRetire = "keys.retire",
    /// A blind-index key version was retired.
    KeysRetireIndex = "keys.retire_index",
    /// Data keys were rewrapped under the primary key-encryption key.
    KeysRewrap = "keys.rewrap",
    /// A new key-encryption key version was added.
    KeysRotate = "keys.rotate",
    /// A new blind-index key version was added.
    KeysRotateIndex = "keys.rotate_index",
    /// Log entries were read in bulk (an auditor's read).
    LogEntries = "log.entries",
    /// The messages sent to a customer were listed.
    MessageList = "message.list",
    /// A message to a customer was registered (its verification code).
    MessageRegister = "message.register",
    /// A message's verification code was checked.
    MessageVerify = "message.verify",
    /// A new version of the privacy notice was published.
    NoticePublished = "notice.published",
    /// A privacy-center sign-in link was made for a customer.
    PrivacyCenterLink = "privacy_center.link",
    /// A customer signed in to the privacy center.
    PrivacyCenterSignIn = "privacy_center.sign_in",
    /// A customer's privacy-center session ended.
    PrivacyCenterSignOut = "privacy_center.sign_out",
    /// A recipient confirmed it acted on a notice (GDPR Art. 19).
    RecipientConfirmed = "recipient.confirmed",
    /// A notice was delivered to a recipient.
    RecipientNotified = "recipient.notified",
    /// Notices to recipients (naming customers) were listed.
    RecipientNoticesRead = "recipient_notices.read",
    /// A person asked for an undelivered notice to a recipient to be sent again now.
    RecipientNoticeRetry = "recipient_notice.retry",
    /// A customer's privacy request was closed.
    RequestClose = "request.close",
    /// Customers' privacy requests were listed.
    RequestList = "request.list",
    /// A customer's privacy request was recorded.
    RequestOpen = "request.open",
    /// One privacy request was read (its customer, deadline and handling).
    RequestRead = "request.read",
    /// An open privacy request was assigned, or its clock paused or restarted for proof of
    /// identity.
    RequestUpdate = "request.update",
    /// Values or events past their retention period were deleted.
    RetentionDelete = "retention.delete",
    /// A person signed in to the staff console through the identity provider.
    StaffSignIn = "staff.sign_in",
    /// A staff session ended.
    StaffSignOut = "staff.sign_out",
    /// A staff pseudonym was resolved to the person behind it.
    StaffWhois = "staff.whois",
    /// A customer's fields were corrected.
    SubjectCorrect = "subject.correct",
    /// A customer was created.
    SubjectCreate = "subject.create",
    /// A customer was erased (data key destroyed).
    SubjectErase = "subject.erase",
    /// A customer's data was exported (portability).
    SubjectExport = "subject.export",
    /// Customers were looked up by a lookup field.
    SubjectLookup = "subject.lookup",
    /// A customer's fields were read.
    SubjectRead = "subject.read",
    /// An access report of a customer's data was produced.
    SubjectReport = "subject.report",
    /// Processing of a customer's data was restricted.
    SubjectRestrict = "subject.restrict",
    /// A restriction was lifted.
    SubjectUnrestrict = "subject.unrestrict",
    /// An API token was created.
    TokenCreate = "token.create",
    /// The API tokens were listed.
    TokenList = "token.list",
    /// An API token was revoked.
    TokenRevoke = "token.revoke",
}

impl Action {
    /// Whether the action put customers' personal data in someone's hands (a read, a report, an
    /// export, or a recipient's read through a grant): what a breach assessment counts.
    pub const fn discloses_personal_data(self) -> bool {
        matches!(
            self,
            Action::SubjectRead | Action::SubjectReport | Action::SubjectExport | Action::EventRead | Action::GrantRead
        )
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_back_from_its_text_and_the_texts_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
            assert!(seen.insert(a.as_str()), "{a} twice");
            assert!(a.as_str().contains('.'), "{a}: `<object>.<verb>`");
        }
        assert_eq!(Action::parse("subject.read"), Some(Action::SubjectRead));
        assert_eq!(Action::parse("subject.teleport"), None);
    }
}
