//! `candor log check-witnesses`: a verifier's check that the log a server shows is the one its
//! witnesses saw. Needs only public routes and the keys the verifier chooses to trust.
//!
//! 1. The cosigned checkpoint (`GET /v1/log/checkpoint/cosigned`) must carry the log's
//!    signature and valid cosignatures of at least `required` of the trusted witnesses.
//! 2. The server's current checkpoint must extend it (an RFC 6962 consistency proof from
//!    `GET /v1/log/proofs/consistency`, checked here against both signed roots).
//! 3. Optionally, each witness is asked directly for the latest checkpoint it cosigned
//!    (its monitoring path, `GET <witness>/<hex SHA-256 of the origin>/checkpoint`): that
//!    checkpoint must carry the log's signature and the witness's cosignature, and the server's
//!    log must be consistent with it (smaller: a proof to the current checkpoint; larger: the
//!    server is behind what the witness saw — a rollback or a second log).

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_log::Hash;
use candor_log::merkle::verify_consistency;
use candor_log::note::{Checkpoint, VerifierKey};
use candor_log::witness::{CosignerKey, verify_cosigned};

/// What was verified, in words a person can check.
pub struct CheckReport {
    pub lines: Vec<String>,
}

async fn get_text(http: &reqwest::Client, url: &str) -> Result<(u16, String)> {
    let r = http.get(url).send().await.with_context(|| format!("cannot reach {url}"))?;
    let status = r.status().as_u16();
    Ok((status, r.text().await.unwrap_or_default()))
}

fn hash(v: &serde_json::Value, what: &str) -> Result<Hash> {
    v.as_str()
        .and_then(|s| STANDARD.decode(s).ok())
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("the server's consistency proof has a malformed {what}"))
}

/// Checks that the server's log at `current` extends `earlier`.
async fn extends(http: &reqwest::Client, base: &str, earlier: &Checkpoint, current: &Checkpoint) -> Result<()> {
    if earlier.size == current.size {
        if earlier.root != current.root {
            bail!("two checkpoints of {} entries with different roots: the log has been forked", earlier.size);
        }
        return Ok(());
    }
    if earlier.size > current.size {
        bail!(
            "a checkpoint of {} entries exists, but the server now shows only {}: the log was rolled back or forked",
            earlier.size,
            current.size
        );
    }
    let (status, body) =
        get_text(http, &format!("{base}/v1/log/proofs/consistency?from={}&to={}", earlier.size, current.size)).await?;
    if status != 200 {
        bail!("the server gave no consistency proof from {} to {} entries (HTTP {status})", earlier.size, current.size);
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("the consistency proof is not JSON")?;
    let proof: Vec<Hash> = v["proof"]
        .as_array()
        .context("the consistency proof has no `proof` list")?
        .iter()
        .map(|h| hash(h, "hash"))
        .collect::<Result<_>>()?;
    verify_consistency(earlier.size, current.size, &earlier.root, &current.root, &proof).map_err(|e| {
        anyhow::anyhow!(
            "the log of {} entries does not extend the checkpoint of {} entries ({e}): the log has been forked or rewritten",
            current.size,
            earlier.size
        )
    })
}

/// Runs the check against the server at `url`.
pub async fn run(
    url: &str,
    pinned_log_key: Option<&str>,
    witnesses: &[(CosignerKey, Option<String>)],
    required: usize,
) -> Result<CheckReport> {
    let base = url.trim_end_matches('/');
    if witnesses.is_empty() {
        bail!("give at least one --witness KEY to trust");
    }
    if required == 0 || required > witnesses.len() {
        bail!("--required must be between 1 and the number of --witness keys ({})", witnesses.len());
    }
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let log_key = match pinned_log_key {
        Some(k) => VerifierKey::parse(k).map_err(|e| anyhow::anyhow!("--key: {e}"))?,
        None => {
            let (_, body) = get_text(&http, &format!("{base}/v1/log/key")).await?;
            let v: serde_json::Value = serde_json::from_str(&body).context("GET /v1/log/key is not JSON")?;
            VerifierKey::parse(v["verifier_key"].as_str().unwrap_or(""))
                .map_err(|e| anyhow::anyhow!("the server's log key: {e}"))?
        }
    };
    let keys: Vec<CosignerKey> = witnesses.iter().map(|(k, _)| k.clone()).collect();
    let mut lines = Vec::new();

    let (status, cosigned_note) = get_text(&http, &format!("{base}/v1/log/checkpoint/cosigned")).await?;
    if status != 200 {
        bail!("the server has no cosigned checkpoint (HTTP {status}): {}", cosigned_note.trim());
    }
    let verified = verify_cosigned(&cosigned_note, &log_key, &keys, required)
        .map_err(|e| anyhow::anyhow!("the cosigned checkpoint does not verify: {e}"))?;
    let names: Vec<String> = verified
        .cosignatures
        .iter()
        .map(|c| format!("{} at {}", c.witness, crate::clock::utc_second(c.timestamp as i64 * 1000)))
        .collect();
    lines.push(format!(
        "checkpoint of {} entries is signed by the log `{}` and cosigned by {} of the {} witnesses you trust (at least {required} required): {}",
        verified.checkpoint.size,
        log_key.name,
        verified.cosignatures.len(),
        keys.len(),
        names.join("; ")
    ));

    let (status, current_note) = get_text(&http, &format!("{base}/v1/log/checkpoint")).await?;
    if status != 200 {
        bail!("the server gave no current checkpoint (HTTP {status})");
    }
    let current =
        log_key.open(&current_note).map_err(|e| anyhow::anyhow!("the current checkpoint does not verify: {e}"))?;
    extends(&http, base, &verified.checkpoint, &current).await?;
    lines.push(format!(
        "the server's current log ({} entries) extends the cosigned checkpoint: nothing cosigned was removed or changed",
        current.size
    ));

    for (key, witness_url) in witnesses {
        let Some(witness_url) = witness_url else { continue };
        let path = format!(
            "{}/{}/checkpoint",
            witness_url.trim_end_matches('/'),
            crate::witness::server::origin_hash(&log_key.name)
        );
        let (status, note) = get_text(&http, &path).await?;
        if status != 200 {
            bail!("witness {} has no checkpoint of this log (HTTP {status})", key.name);
        }
        let seen = verify_cosigned(&note, &log_key, std::slice::from_ref(key), 1)
            .map_err(|e| anyhow::anyhow!("the checkpoint witness {} serves does not verify: {e}", key.name))?;
        extends(&http, base, &seen.checkpoint, &current)
            .await
            .map_err(|e| anyhow::anyhow!("witness {}'s view disagrees with the server's log: {e}", key.name))?;
        lines.push(format!(
            "witness {} last cosigned {} entries of this log; the server's log is consistent with it",
            key.name, seen.checkpoint.size
        ));
    }
    Ok(CheckReport { lines })
}

/// Parses `KEY` or `KEY=URL` (the URL of the witness, to ask it for its own view).
pub fn parse_witness_arg(text: &str) -> Result<(CosignerKey, Option<String>)> {
    // A key never contains `=` except as base64 padding at its end; a URL follows `=http`.
    let (key, url) = match text.find("=http") {
        Some(i) => (&text[..i], Some(text[i + 1..].to_string())),
        None => (text, None),
    };
    let key = CosignerKey::parse(key).map_err(|e| anyhow::anyhow!("--witness `{text}`: {e}"))?;
    Ok((key, url))
}
