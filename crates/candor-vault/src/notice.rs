//! The public privacy notice: generated from the catalog, published (kept with its date) when it
//! changes, and served with the history of what changed.

use candor_core::privacy_notice::{PrivacyNotice, changes, privacy_notice};

use super::{Vault, VaultError};
use crate::audit::system_actor;

/// One published version and what changed from the one before.
pub struct NoticeVersion {
    pub version: String,
    pub published_at: i64,
    /// Plain sentences; empty for the first version.
    pub changes: Vec<String>,
}

/// The notice in force and its history, newest first.
pub struct NoticeDocument {
    pub notice: PrivacyNotice,
    pub version: String,
    pub history: Vec<NoticeVersion>,
}

/// The notice's canonical JSON and its version (`sha256:` of that JSON).
fn versioned(notice: &PrivacyNotice) -> (String, String) {
    let json = serde_json::to_string(notice).expect("the notice serialises");
    let version = format!("sha256:{}", candor_crypto::sha256_hex(json.as_bytes()));
    (json, version)
}

impl Vault {
    /// Publishes the catalog's notice if it differs from the latest published one (logged).
    pub async fn publish_notice(&self) -> Result<bool, VaultError> {
        let (json, version) = versioned(&privacy_notice(&self.catalog));
        let log = self.entry(&system_actor(), candor_log::Action::NoticePublished).detail(version.clone()).record();
        Ok(self.store.publish_notice(&version, self.now_millis(), &json, log).await?)
    }

    /// The notice in force, with every published version and what changed in each.
    pub async fn notice_document(&self) -> Result<NoticeDocument, VaultError> {
        let notice = privacy_notice(&self.catalog);
        let (_, version) = versioned(&notice);
        let mut history = Vec::new();
        let mut previous: Option<PrivacyNotice> = None;
        for (v, at, json) in self.store.notice_versions().await? {
            // A version written by another Candor version may not parse: list it without changes.
            let parsed: Option<PrivacyNotice> = serde_json::from_str(&json).ok();
            let changed = match (&previous, &parsed) {
                (Some(old), Some(new)) => changes(old, new),
                _ => Vec::new(),
            };
            history.push(NoticeVersion { version: v, published_at: at, changes: changed });
            if parsed.is_some() {
                previous = parsed;
            }
        }
        history.reverse();
        Ok(NoticeDocument { notice, version, history })
    }
}
