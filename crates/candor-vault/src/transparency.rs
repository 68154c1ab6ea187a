//! Reading the tamper-evident log: signed checkpoints, entries, proofs, a customer's access
//! log with inclusion proofs. (Appends happen inside the vault operations themselves.)

use candor_core::SubjectId;
use candor_log::Hash;
use candor_log::note::{Checkpoint, VerifierKey, sign_checkpoint};

use crate::{Authorized, Vault, VaultError};

/// Most entries one request may ask for.
pub const MAX_ENTRIES_PER_REQUEST: u64 = 1000;

/// A checkpoint as signed: the note text and what it says.
pub struct SignedCheckpoint {
    pub note: String,
    pub size: u64,
    pub root: Hash,
    /// The completeness map's root over the same entries.
    pub map_root: Hash,
}

pub struct LoggedEntry {
    pub index: u64,
    pub bytes: Vec<u8>,
    pub leaf_hash: Hash,
}

pub struct AccessLogItem {
    pub index: u64,
    pub bytes: Vec<u8>,
    pub proof: Vec<Hash>,
}

/// Signs the store's current tree head, with the completeness map's root over the same entries,
/// with the log key, without keeping it (the caller keeps it, or `candor log verify` keeps it
/// once the entries check). The first call in a process builds the map from the whole log.
pub async fn sign_head(
    store: &dyn candor_store::Store,
    ctx: &crate::audit::LogContext,
) -> Result<SignedCheckpoint, candor_store::StoreError> {
    let (size, root, map_root) = ctx.map.advance_to_head(store, &ctx.signer).await?;
    let cp = Checkpoint { origin: ctx.origin.clone(), size, root, map_root: Some(map_root) };
    let note = sign_checkpoint(&cp, &ctx.key, |m| ctx.signer.sign(m));
    Ok(SignedCheckpoint { note, size, root, map_root })
}

impl Vault {
    pub fn verifier_key(&self) -> &VerifierKey {
        &self.log_context().key
    }

    /// Signs the current tree head and keeps the checkpoint.
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, VaultError> {
        let signed = sign_head(self.store.as_ref(), self.log_context()).await?;
        self.store.save_checkpoint(signed.size, &signed.note, self.now_millis()).await?;
        Ok(signed)
    }

    /// Signs a checkpoint if the log grew since the last kept one, or if this server has not
    /// built the completeness map of its size yet (the periodic task).
    pub async fn checkpoint_if_grown(&self) -> Result<Option<u64>, VaultError> {
        let (size, _) = self.store.log_head().await?;
        let last = self.store.latest_checkpoint().await?.map_or(0, |(s, _)| s);
        // Also when this server holds no map of the latest size (after a start): signing
        // builds it, so customers' proofs can be made against the checkpoint the witnesses
        // cosign (the note is the same: Ed25519 and the map are deterministic).
        let map_kept = self.log_context().map.kept_sizes().await.contains(&size);
        if size > last || (size == 0 && last == 0) || !map_kept {
            return Ok(Some(self.checkpoint().await?.size));
        }
        Ok(None)
    }

    /// The latest kept checkpoint, signing one if none is kept yet.
    pub async fn latest_checkpoint(&self) -> Result<String, VaultError> {
        match self.store.latest_checkpoint().await? {
            Some((_, note)) => Ok(note),
            None => Ok(self.checkpoint().await?.note),
        }
    }

    /// Entries `[start, end)` with their stored leaf hashes.
    pub async fn log_entries(&self, start: u64, end: u64) -> Result<Vec<LoggedEntry>, VaultError> {
        let entries = self.store.log_entries(start, end).await?;
        let leaves = self.store.log_nodes(0, start, end).await?;
        Ok(entries
            .into_iter()
            .zip(leaves)
            .map(|((index, bytes), leaf_hash)| LoggedEntry { index, bytes, leaf_hash })
            .collect())
    }

    /// Inclusion proof of entry `index` in the tree of size `size`: (leaf hash, audit path).
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<(Hash, Vec<Hash>), VaultError> {
        Ok(self.store.log_inclusion_proof(index, size).await?)
    }

    /// Consistency proof between two tree sizes: (first root, second root, proof).
    pub async fn consistency_proof(&self, first: u64, second: u64) -> Result<(Hash, Hash, Vec<Hash>), VaultError> {
        Ok(self.store.log_consistency_proof(first, second).await?)
    }

    /// Stored hashes of level `level` nodes `[start, end)` (C2SP hash tiles).
    pub async fn log_node_range(&self, level: u32, start: u64, end: u64) -> Result<Vec<Hash>, VaultError> {
        Ok(self.store.log_nodes(level, start, end).await?)
    }

    /// Entry bytes `[start, end)` (C2SP entry bundles).
    pub async fn log_entry_bytes(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, VaultError> {
        Ok(self.store.log_entries(start, end).await?.into_iter().map(|(_, e)| e).collect())
    }

    /// The caller-visible access log of one customer, a page at a time: the entries after index
    /// `after` (oldest first, at most `limit`) that concern them, each with an inclusion proof
    /// against a freshly signed checkpoint, and the index to continue after (`None`: no more).
    /// Only for a caller who may read the customer under its purpose (or a `customer_requests`
    /// purpose); reading it is logged too.
    pub async fn access_log(
        &self,
        auth: &Authorized,
        id: SubjectId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(SignedCheckpoint, Vec<AccessLogItem>, Option<u64>), VaultError> {
        self.require_customer_records(auth, id, candor_log::Action::AccessLogRead).await?;
        let checkpoint = self.checkpoint().await?;
        let mut items = Vec::new();
        let mut next = None;
        let indices = self.store.subject_log_indices(id).await?;
        let page = indices.into_iter().filter(|i| after.is_none_or(|a| *i > a) && *i < checkpoint.size);
        for index in page {
            if items.len() == limit {
                next = items.last().map(|i: &AccessLogItem| i.index);
                break;
            }
            let Some((_, bytes)) = self.store.log_entries(index, index + 1).await?.pop() else {
                continue;
            };
            let (_, proof) = self.store.log_inclusion_proof(index, checkpoint.size).await?;
            items.push(AccessLogItem { index, bytes, proof });
        }
        let log = self
            .entry(&auth.principal, candor_log::Action::AccessLogRead)
            .purpose(&auth.purpose)
            .subjects(&[id])
            .decision("full")
            .record();
        self.store.append_log(vec![log]).await?;
        Ok((checkpoint, items, next))
    }
}

/// What the witnesses add to a customer's bundle: the latest checkpoint they cosigned (if any),
/// their keys and how many must cosign.
pub struct WitnessView {
    pub cosigned: Option<String>,
    pub keys: Vec<String>,
    pub required: usize,
}

impl Vault {
    /// Whether a customer's bundle can be made against the checkpoint `note`: it verifies, it
    /// commits a completeness map, and this server still holds that map.
    pub async fn can_prove_against(&self, note: &str) -> bool {
        let ctx = self.log_context();
        match ctx.key.open(note) {
            Ok(cp) if cp.map_root.is_some() => ctx.map.kept_sizes().await.contains(&cp.size),
            _ => false,
        }
    }

    /// The signed-in customer's history proof bundle (`candor verify history` checks it):
    /// every entry naming them up to a checkpoint, with inclusion proofs, and their completeness
    /// map proof against the same checkpoint. The checkpoint is the latest one the witnesses
    /// cosigned when this server still holds its map (`completeness::evict` says which maps it
    /// keeps), otherwise one signed now (then not yet cosigned, which the verifier reports).
    /// Reading it is logged (after the checkpoint, so that entry is in the next bundle).
    pub async fn own_history_bundle(
        &self,
        session: &crate::center::CustomerSession,
        witnesses: WitnessView,
    ) -> Result<candor_log::history::HistoryBundle, VaultError> {
        self.bundle(session.auth(), session.subject, witnesses).await
    }

    /// Customer `id`'s history proof bundle for an app or staff acting on their request
    /// (`GET /v1/subjects/{id}/history-proof`): as [`Vault::own_history_bundle`], under a
    /// purpose declared `customer_requests = true` (refused, and the refusal logged, otherwise).
    pub async fn history_bundle(
        &self,
        auth: &crate::Authorized,
        id: SubjectId,
        witnesses: WitnessView,
    ) -> Result<candor_log::history::HistoryBundle, VaultError> {
        self.require_customer_requests(auth, candor_log::Action::AccessLogRead, id).await?;
        self.bundle(auth, id, witnesses).await
    }

    /// A checkpoint signed now and `subject`'s map proof against it. The map of a checkpoint
    /// just signed is kept unless checkpoints signed meanwhile changed many histories (see
    /// `completeness::evict`); then it is signed again.
    async fn checkpoint_with_map_proof(
        &self,
        subject: &str,
    ) -> Result<(String, u64, crate::completeness::SubjectMapProof), VaultError> {
        let ctx = self.log_context();
        for _ in 0..3 {
            let signed = self.checkpoint().await?;
            if let Some(p) = ctx.map.prove(signed.size, subject, &ctx.signer).await {
                return Ok((signed.note, signed.size, p));
            }
        }
        Err(VaultError::Store(candor_store::StoreError::Internal(
            "the completeness map of a checkpoint just signed was not kept, three times".into(),
        )))
    }

    async fn bundle(
        &self,
        auth: &crate::Authorized,
        id: SubjectId,
        witnesses: WitnessView,
    ) -> Result<candor_log::history::HistoryBundle, VaultError> {
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        use candor_log::history::{BUNDLE_FORMAT, HistoryBundle, WireEntry, WireMapProof};

        self.store.load_subject(id, &[]).await?.ok_or(VaultError::SubjectNotFound)?;
        let ctx = self.log_context();
        let subject = id.to_string();
        let mut chosen = None;
        if let Some(note) = &witnesses.cosigned
            && let Ok(cp) = ctx.key.open(note)
            && let Some(map_root) = cp.map_root
            && let Some(p) = ctx.map.prove(cp.size, &subject, &ctx.signer).await
            && p.proof.verify(&candor_log::map::subject_key(&p.salt, &subject), &map_root).is_ok()
        {
            chosen = Some((note.clone(), cp.size, p));
        }
        let (note, size, map) = match chosen {
            Some(c) => c,
            None => self.checkpoint_with_map_proof(&subject).await?,
        };
        let mut entries = Vec::new();
        for index in self.store.subject_log_indices(id).await?.into_iter().filter(|i| *i < size) {
            // An entry that is gone is left out: the map proof then shows it missing.
            let Some((_, bytes)) = self.store.log_entries(index, index + 1).await?.pop() else {
                continue;
            };
            // The map counts the entries whose bytes name the customer; an entry shortened over
            // the size limit (`audit::shorten`) may be linked to customers it no longer names.
            if !candor_log::map::entry_subjects(&bytes).contains(&subject) {
                continue;
            }
            let (_, proof) = self.store.log_inclusion_proof(index, size).await?;
            entries.push(WireEntry {
                index,
                data: STANDARD.encode(&bytes),
                inclusion_proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
            });
        }
        let log = self.audit(auth, candor_log::Action::AccessLogRead, &[id]).decision("full").record();
        self.store.append_log(vec![log]).await?;
        Ok(HistoryBundle {
            format: BUNDLE_FORMAT.into(),
            subject,
            log_key: ctx.key.to_text(),
            witness_keys: witnesses.keys,
            witnesses_required: witnesses.required,
            checkpoint: note,
            map_salt: STANDARD.encode(map.salt),
            map_proof: WireMapProof::from_proof(&map.proof),
            entries,
        })
    }
}
