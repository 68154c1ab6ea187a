//! Signed webhooks to recipients: HMAC-SHA-256 with the recipient's secret over
//! `<unix seconds>.<body>`, sent as `Candor-Signature: v1=<hex>` with `Candor-Timestamp`, so a
//! recipient can check the sender and refuse replays of old messages.
//!
//! Secrets live in an owner-only file, one per line: `<recipient id> <secret>` (`#` comments).
//! The HMAC key is the secret's text as given to the recipient (`whsec_…`).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::KeyError;
use crate::keyfile::check_owner_only;

/// Prefix of webhook secrets.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
/// How far a signed timestamp may be from now (seconds) to be accepted.
pub const WEBHOOK_TOLERANCE_SECONDS: i64 = 300;

/// `v1=<hex of HMAC-SHA-256(secret, "<timestamp>.<body>")>`
pub fn sign_webhook(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", crate::hex(ctx.sign().as_ref()))
}

/// Whether `signature` is this secret's signature of `body` at `timestamp`, and `timestamp` is
/// within [`WEBHOOK_TOLERANCE_SECONDS`] of `now` (compared in constant time).
pub fn verify_webhook(secret: &str, timestamp: i64, body: &[u8], signature: &str, now: i64) -> bool {
    if (now - timestamp).abs() > WEBHOOK_TOLERANCE_SECONDS {
        return false;
    }
    let expected = sign_webhook(secret, timestamp, body);
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), signature.trim().as_bytes()).is_ok()
}

/// A fresh secret to give a recipient.
pub fn generate_webhook_secret() -> Result<Zeroizing<String>, KeyError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut raw[..]).map_err(|_| KeyError::Random)?;
    Ok(Zeroizing::new(format!("{WEBHOOK_SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(&raw[..]))))
}

/// The secrets file: recipient id -> secret. Refused when group or others can read it.
pub fn read_webhook_secrets(path: &Path) -> Result<HashMap<String, Zeroizing<String>>, KeyError> {
    check_owner_only(path)?;
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?);
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some((id, secret)) if !secret.trim().is_empty() => {
                out.insert(id.to_string(), Zeroizing::new(secret.trim().to_string()));
            }
            _ => {
                return Err(KeyError::Format {
                    origin: path.display().to_string(),
                    line: n + 1,
                    reason: "expected `<recipient id> <secret>`".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Adds (or replaces) a recipient's secret in the file, created owner-only when missing.
pub fn store_webhook_secret(path: &Path, recipient: &str, secret: &str) -> Result<(), KeyError> {
    let mut lines: Vec<String> = Vec::new();
    if path.exists() {
        check_owner_only(path)?;
        let text =
            Zeroizing::new(fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?);
        lines = text.lines().filter(|l| l.split_whitespace().next() != Some(recipient)).map(str::to_string).collect();
    } else {
        lines.push("# Webhook signing secrets, one per recipient: <recipient id> <secret>. Keep owner-only.".into());
    }
    lines.push(format!("{recipient} {secret}"));
    let text = Zeroizing::new(lines.join("\n") + "\n");
    let werr = |source| KeyError::Write { path: path.into(), source };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(werr)?;
    file.write_all(text.as_bytes()).map_err(werr)?;
    file.sync_all().map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_secret_time_and_body_and_expire() {
        let secret = generate_webhook_secret().unwrap();
        assert!(secret.starts_with(WEBHOOK_SECRET_PREFIX));
        let sig = sign_webhook(&secret, 1_000, b"{\"a\":1}");
        assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
        assert!(verify_webhook(&secret, 1_000, b"{\"a\":1}", &sig, 1_100));
        assert!(!verify_webhook(&secret, 1_000, b"{\"a\":2}", &sig, 1_100), "another body");
        assert!(!verify_webhook(&secret, 1_001, b"{\"a\":1}", &sig, 1_100), "another time");
        assert!(!verify_webhook("whsec_other", 1_000, b"{\"a\":1}", &sig, 1_100), "another secret");
        assert!(!verify_webhook(&secret, 1_000, b"{\"a\":1}", &sig, 1_000 + 301), "replayed too late");
    }

    #[test]
    fn the_secrets_file_is_owner_only_and_keeps_one_secret_per_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("webhook-secrets.txt");
        store_webhook_secret(&path, "parcel_carrier", "whsec_a").unwrap();
        store_webhook_secret(&path, "payment_provider", "whsec_b").unwrap();
        store_webhook_secret(&path, "parcel_carrier", "whsec_c").unwrap();
        let secrets = read_webhook_secrets(&path).unwrap();
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets["parcel_carrier"].as_str(), "whsec_c");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(read_webhook_secrets(&path), Err(KeyError::Permissions { .. })));
        }
    }
}
