//! Signed documents the installation hands out — consent receipts now, erasure certificates
//! and export manifests later — and their verification (`candor receipt verify`).
//!
//! A document is a JSON object with a `signature` member: `{"alg": "Ed25519", "key": <verifier
//! key>, "value": <base64 signature>}`. The signature covers a context string and the document
//! without `signature`, in canonical form (object keys sorted, no insignificant whitespace), so
//! re-indenting or re-ordering a saved receipt does not break it, while changing any value does.
//! It is made with the installation's Ed25519 key, the one that signs log checkpoints, under a
//! context string of its own so that a receipt signature can never pass as a checkpoint's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use candor_log::note::VerifierKey;
use serde_json::{Map, Value};

use crate::audit::LogContext;

/// Domain separation for consent receipts.
pub const CONSENT_RECEIPT: &str = "candor consent receipt v1";
/// Domain separation for erasure certificates.
pub const ERASURE_CERTIFICATE: &str = "candor erasure certificate v1";

/// Domain separation for export manifests.
pub const EXPORT_MANIFEST: &str = "candor export manifest v1";

/// The context a signed document was made under, from its version field.
pub fn context_of(document: &Value) -> Option<&'static str> {
    if document.get("manifest_version").is_some() {
        Some(EXPORT_MANIFEST)
    } else if document.get("certificate_version").is_some() {
        Some(ERASURE_CERTIFICATE)
    } else if document.get("receipt_version").is_some() {
        Some(CONSENT_RECEIPT)
    } else {
        None
    }
}

/// Serialises `value` canonically: object keys sorted by their UTF-8 bytes, compact.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&map[k]));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // `Map` keeps insertion order only with serde_json's `preserve_order`; inserting in sorted
    // order makes the output sorted either way.
    serde_json::to_vec(&sorted(value)).expect("JSON values serialise")
}

fn signed_message(context: &str, body: &Value) -> Vec<u8> {
    let mut message = context.as_bytes().to_vec();
    message.push(b'\n');
    message.extend(canonical_json(body));
    message
}

/// Adds a `signature` member to `body` (a JSON object) and returns the signed document.
pub fn sign(log: &LogContext, context: &str, mut body: Value) -> Value {
    let signature = log.signer.sign(&signed_message(context, &body));
    body["signature"] = serde_json::json!({
        "alg": "Ed25519",
        "key": log.key.to_text(),
        "value": STANDARD.encode(signature),
    });
    body
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("it has no `signature` (alg, key, value)")]
    Unsigned,
    #[error("it is signed with the key `{0}`, not the key given")]
    OtherKey(String),
    #[error("the signature does not match: the document was altered after signing, or it is not a {0}")]
    BadSignature(&'static str),
}

/// Verifies a signed document against `key` and returns it without its signature.
pub fn verify(key: &VerifierKey, context: &'static str, document: &Value) -> Result<Value, VerifyError> {
    let Value::Object(map) = document else {
        return Err(VerifyError::NotAnObject);
    };
    let mut body = map.clone();
    let signature = body.remove("signature").ok_or(VerifyError::Unsigned)?;
    let alg = signature.get("alg").and_then(Value::as_str);
    let signer = signature.get("key").and_then(Value::as_str);
    let value = signature.get("value").and_then(Value::as_str).and_then(|v| STANDARD.decode(v).ok());
    let (Some("Ed25519"), Some(signer), Some(value)) = (alg, signer, value) else {
        return Err(VerifyError::Unsigned);
    };
    if signer != key.to_text() {
        return Err(VerifyError::OtherKey(signer.chars().take(200).collect()));
    }
    let body = Value::Object(body);
    if !key.verifies(&signed_message(context, &body), &value) {
        return Err(VerifyError::BadSignature(context));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use candor_crypto::keyfile::{generate_key_line, parse_keys};
    use candor_crypto::{LOG_KEY_LABEL, LogSigner};
    use serde_json::json;

    use super::*;

    fn context() -> LogContext {
        let line = generate_key_line(LOG_KEY_LABEL, 1).unwrap();
        LogContext::new("shop.example/log", LogSigner::new(&parse_keys(&line, LOG_KEY_LABEL, "t").unwrap()).unwrap())
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": "é"}});
        assert_eq!(String::from_utf8(canonical_json(&v)).unwrap(), r#"{"a":{"c":"é","z":[{"x":2,"y":1}]},"b":1}"#);
    }

    #[test]
    fn a_signed_document_verifies_even_reformatted_and_fails_when_altered() {
        let log = context();
        let signed = sign(&log, CONSENT_RECEIPT, json!({"receipt_id": "r1", "purposes": [{"action": "grant"}]}));
        let reindented: Value = serde_json::from_str(&serde_json::to_string_pretty(&signed).unwrap()).unwrap();
        let body = verify(&log.key, CONSENT_RECEIPT, &reindented).unwrap();
        assert_eq!(body["receipt_id"], "r1");
        assert!(body.get("signature").is_none());

        let mut altered = signed.clone();
        altered["purposes"][0]["action"] = json!("withdraw");
        assert_eq!(verify(&log.key, CONSENT_RECEIPT, &altered), Err(VerifyError::BadSignature(CONSENT_RECEIPT)));
        // The same signature under another context (another kind of document) fails.
        assert!(matches!(
            verify(&log.key, "candor erasure certificate v1", &signed),
            Err(VerifyError::BadSignature(_))
        ));
        let other = context();
        assert!(matches!(verify(&other.key, CONSENT_RECEIPT, &signed), Err(VerifyError::OtherKey(_))));
        let mut unsigned = signed;
        unsigned.as_object_mut().unwrap().remove("signature");
        assert_eq!(verify(&log.key, CONSENT_RECEIPT, &unsigned), Err(VerifyError::Unsigned));
    }
}
