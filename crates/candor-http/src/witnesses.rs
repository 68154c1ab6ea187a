//! Candor's side of `tlog-witness`: push each new checkpoint to the configured witnesses, keep
//! the checkpoint cosigned by enough of them, and report refusals.
//!
//! Per witness, Candor remembers (in memory) the size it believes the witness holds, starting
//! at 0: a witness that holds more answers `409` with its size, and the request is sent again
//! once with a consistency proof from that size (tlog-witness allows exactly this). A `422`
//! means the witness cosigned a tree this log does not extend: the log was forked or rewritten
//! since. A `409` naming a size larger than the log has means it was rolled back (or a larger
//! fork was shown to the witness). Both are reported as `fork` in `GET /v1/log/witnesses` and
//! logged as errors; they are never retried silently into success.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use candor_log::note::VerifierKey;
use candor_log::witness::{AddCheckpoint, CosignerKey, SIZE_CONTENT_TYPE, add_signature_lines};
use serde::Serialize;

use crate::settings::WitnessSettings;
use crate::vault::Vault;

/// The latest checkpoint cosigned by at least the required number of witnesses.
#[derive(Clone, Debug)]
pub struct Cosigned {
    pub size: u64,
    /// The log's signed note with every cosignature obtained for it.
    pub note: String,
    /// The witnesses whose cosignature it carries.
    pub witnesses: Vec<String>,
}

/// What Candor knows of one witness, as `GET /v1/log/witnesses` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WitnessStatus {
    /// The witness's name (its key name).
    pub name: String,
    /// Its submission prefix.
    pub url: String,
    /// Its verifier key (`name+id+base64(0x04 || key)`).
    pub key: String,
    /// `pending` (nothing sent yet), `ok` (cosigned the latest checkpoint sent), `unreachable`,
    /// `refused` (e.g. it does not know this log or its key) or `fork` (it cosigned a tree this
    /// log does not extend).
    pub state: &'static str,
    /// The size of the latest checkpoint it cosigned for this log, as far as Candor knows.
    pub cosigned_size: u64,
    /// What went wrong, in words (no personal data: sizes, statuses, the witness's answer).
    pub problem: Option<String>,
}

struct Endpoint {
    url: String,
    key: CosignerKey,
}

struct State {
    /// Per witness, the size Candor believes it holds.
    held: Vec<u64>,
    status: Vec<WitnessStatus>,
    cosigned: Option<Cosigned>,
}

/// The configured witnesses and what they have cosigned.
pub struct Witnesses {
    endpoints: Vec<Endpoint>,
    required: usize,
    http: reqwest::Client,
    /// One push at a time: a witness takes sizes in order.
    pushing: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

/// How one witness answered.
enum Outcome {
    /// Its signature line(s), checked.
    Cosigned(String),
    /// It holds a checkpoint newer than this one that this log's store also has: not a problem,
    /// the next push catches up.
    Stale,
    Failed {
        state: &'static str,
        problem: String,
    },
}

impl Witnesses {
    pub fn new(settings: &WitnessSettings) -> Option<Arc<Self>> {
        if settings.witnesses.is_empty() {
            return None;
        }
        let endpoints: Vec<Endpoint> = settings
            .witnesses
            .iter()
            .map(|w| Endpoint { url: w.url.trim_end_matches('/').to_string(), key: w.key.clone() })
            .collect();
        let status = endpoints
            .iter()
            .map(|e| WitnessStatus {
                name: e.key.name.clone(),
                url: e.url.clone(),
                key: e.key.to_text(),
                state: "pending",
                cosigned_size: 0,
                problem: None,
            })
            .collect();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        Some(Arc::new(Self {
            required: settings.required,
            http,
            pushing: tokio::sync::Mutex::new(()),
            state: Mutex::new(State { held: vec![0; endpoints.len()], status, cosigned: None }),
            endpoints,
        }))
    }

    pub fn required(&self) -> usize {
        self.required
    }

    /// The witnesses' verifier keys (`name+id+base64`), as customers' proof bundles carry them.
    pub fn keys(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.key.to_text()).collect()
    }

    pub fn status(&self) -> Vec<WitnessStatus> {
        self.state.lock().expect("witness state").status.clone()
    }

    pub fn cosigned(&self) -> Option<Cosigned> {
        self.state.lock().expect("witness state").cosigned.clone()
    }

    /// Whether `size` still needs pushing: not yet cosigned by enough witnesses, or some witness
    /// has not cosigned it (so a witness that was down catches up).
    pub fn needs(&self, size: u64) -> bool {
        let s = self.state.lock().expect("witness state");
        s.cosigned.as_ref().is_none_or(|c| c.size < size)
            || s.status.iter().any(|w| w.state != "ok" || w.cosigned_size < size)
    }

    /// Sends the signed checkpoint `note` (verified with `log_key`) to every witness, keeps the
    /// result if enough cosigned, and returns how many did.
    pub async fn push(&self, vault: &Vault, note: &str, log_key: &VerifierKey) -> usize {
        let _one = self.pushing.lock().await;
        let Ok(checkpoint) = log_key.open(note) else {
            tracing::error!("the checkpoint to send to the witnesses does not verify with the log key");
            return 0;
        };
        let size = checkpoint.size;
        let outcomes = futures_util::future::join_all(
            self.endpoints.iter().enumerate().map(|(i, e)| self.push_one(vault, i, e, note, size)),
        )
        .await;
        let mut lines = String::new();
        let mut names = Vec::new();
        let mut state = self.state.lock().expect("witness state");
        for ((i, e), outcome) in self.endpoints.iter().enumerate().zip(outcomes) {
            let status = &mut state.status[i];
            match outcome {
                Outcome::Cosigned(l) => {
                    lines.push_str(&l);
                    names.push(e.key.name.clone());
                    status.state = "ok";
                    status.cosigned_size = size;
                    status.problem = None;
                }
                Outcome::Stale => {}
                Outcome::Failed { state: kind, problem } => {
                    let changed = status.state != kind || status.problem.as_deref() != Some(problem.as_str());
                    if changed {
                        if kind == "fork" {
                            tracing::error!(witness = %e.key.name, size, problem = %problem,
                                "a witness refused this log's checkpoint: the log is not consistent with what the witness cosigned before");
                        } else {
                            tracing::warn!(witness = %e.key.name, size, state = kind, problem = %problem,
                                "a witness did not cosign the checkpoint");
                        }
                    }
                    status.state = kind;
                    status.problem = Some(problem);
                }
            }
        }
        let count = names.len();
        if count >= self.required && count > 0 && state.cosigned.as_ref().is_none_or(|c| c.size <= size) {
            match add_signature_lines(note, &lines) {
                Ok(cosigned) => {
                    tracing::info!(size, witnesses = count, "checkpoint cosigned");
                    state.cosigned = Some(Cosigned { size, note: cosigned, witnesses: names });
                }
                Err(e) => tracing::error!(error = %e, "could not add the cosignatures to the checkpoint"),
            }
        } else if count < self.required {
            tracing::warn!(
                size,
                cosigned = count,
                required = self.required,
                "too few witnesses cosigned the checkpoint"
            );
        }
        count
    }

    async fn push_one(&self, vault: &Vault, i: usize, e: &Endpoint, note: &str, size: u64) -> Outcome {
        let mut old = self.state.lock().expect("witness state").held[i];
        for _attempt in 0..2 {
            if old > size {
                return self.ahead(vault, e, old).await;
            }
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                match vault.consistency_proof(old, size).await {
                    Ok((_, _, proof)) => proof,
                    Err(err) => {
                        return Outcome::Failed {
                            state: "refused",
                            problem: format!("no consistency proof from size {old} to {size}: {err}"),
                        };
                    }
                }
            };
            let body = AddCheckpoint { old_size: old, proof, note: note.to_string() }.to_body();
            let answer = self.http.post(format!("{}/add-checkpoint", e.url)).body(body).send().await;
            let answer = match answer {
                Ok(a) => a,
                Err(err) => return Outcome::Failed { state: "unreachable", problem: transport_problem(&err) },
            };
            let status = answer.status().as_u16();
            let content_type = answer
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let text = answer.text().await.unwrap_or_default();
            match status {
                200 => {
                    let cosigned = format!("{note}{text}");
                    return match e.key.verify(&cosigned) {
                        Ok(Some(_)) => {
                            self.state.lock().expect("witness state").held[i] = size;
                            let own: String = text
                                .lines()
                                .filter(|l| l.starts_with(&format!("\u{2014} {} ", e.key.name)))
                                .map(|l| format!("{l}\n"))
                                .collect();
                            Outcome::Cosigned(own)
                        }
                        Ok(None) => Outcome::Failed {
                            state: "refused",
                            problem: "the answer carries no cosignature by the configured witness key".into(),
                        },
                        Err(err) => {
                            Outcome::Failed { state: "refused", problem: format!("invalid cosignature: {err}") }
                        }
                    };
                }
                409 => {
                    let held = if content_type.starts_with(SIZE_CONTENT_TYPE) {
                        text.trim().parse::<u64>().ok()
                    } else {
                        None
                    };
                    let Some(held) = held else {
                        return Outcome::Failed { state: "refused", problem: "409 without a tree size".into() };
                    };
                    self.state.lock().expect("witness state").held[i] = held;
                    old = held;
                }
                422 => {
                    return Outcome::Failed {
                        state: "fork",
                        problem: format!(
                            "refused size {size} as inconsistent with size {old} it cosigned: {}",
                            first_line(&text)
                        ),
                    };
                }
                _ => {
                    return Outcome::Failed {
                        state: "refused",
                        problem: format!("answered {status}: {}", first_line(&text)),
                    };
                }
            }
        }
        Outcome::Failed { state: "refused", problem: "its cosigned size kept changing; trying again next time".into() }
    }

    /// The witness holds a size larger than the checkpoint sent.
    async fn ahead(&self, vault: &Vault, e: &Endpoint, held: u64) -> Outcome {
        match vault.log_size().await {
            // Another server of this installation sent a newer checkpoint: the next push
            // continues from it (with a consistency proof the witness checks).
            Ok(head) if head >= held => Outcome::Stale,
            Ok(head) => Outcome::Failed {
                state: "fork",
                problem: format!(
                    "{} has cosigned a tree of {held} entries, but this log has only {head}: it was rolled back, or another log with this key was shown to the witness",
                    e.key.name
                ),
            },
            Err(err) => Outcome::Failed { state: "refused", problem: format!("cannot read the log head: {err}") },
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").chars().take(300).collect()
}

/// A transport error in words.
fn transport_problem(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or failed".into()
    } else {
        e.to_string()
    }
}

/// Sends the latest kept checkpoint to the witnesses whenever it is not yet cosigned by all of
/// them (checked every `interval_seconds`, after the checkpointer signs).
pub fn spawn_pusher(vault: Vault, witnesses: Arc<Witnesses>, interval_seconds: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(interval_seconds));
        loop {
            tick.tick().await;
            let note = match vault.latest_checkpoint().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the latest checkpoint for the witnesses");
                    continue;
                }
            };
            let key = vault.verifier_key().clone();
            let Ok(cp) = key.open(&note) else { continue };
            if witnesses.needs(cp.size) {
                witnesses.push(&vault, &note, &key).await;
            }
        }
    });
}

/// What a history proof bundle needs of the witnesses: the checkpoint they cosigned last that
/// this server can prove against, their keys and how many must cosign. When this server does not
/// hold the map of that checkpoint (it started since, or another server signed it), it signs
/// one now and has the witnesses cosign it at once.
pub async fn witness_view(
    state: &crate::AppState,
) -> Result<candor_vault::transparency::WitnessView, candor_vault::VaultError> {
    let mut cosigned = state.witnesses.as_ref().and_then(|w| w.cosigned()).map(|c| c.note);
    if let Some(w) = &state.witnesses
        && !matches!(&cosigned, Some(note) if state.vault.can_prove_against(note).await)
    {
        let signed = state.vault.checkpoint().await?;
        w.push(&state.vault, &signed.note, state.vault.verifier_key()).await;
        cosigned = w.cosigned().filter(|c| c.size == signed.size).map(|c| c.note).or(cosigned);
    }
    Ok(candor_vault::transparency::WitnessView {
        cosigned,
        keys: state.witnesses.as_ref().map(|w| w.keys()).unwrap_or_default(),
        required: state.witnesses.as_ref().map_or(0, |w| w.required()),
    })
}
