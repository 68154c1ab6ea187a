//! Identifiers and opaque byte shapes.
//!
//! Newtypes cost nothing at run time and stop whole classes of bugs: a subject id is not an
//! event id, a wrapped key is not a key, a blind index is not a value.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The random identifier of a data subject (a customer). Version 4 UUID: it reveals nothing,
/// not even when the customer was created.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubjectId(Uuid);

impl SubjectId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
    /// Parses the textual form; `None` if it is not a UUID.
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(Self)
    }
    /// The 16 raw bytes (used to bind ciphertexts to their subject).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}
impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectId({self})")
    }
}

/// The random identifier of one behavioural event.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::parse_str(s).ok().map(Self)
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}
impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}
impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a name. Catalog validation guarantees declared names are identifiers
            /// (`[a-z][a-z0-9_]*`); names from requests are only ever compared against them.
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// The name of a declared field (`email`, `shipping_address`) or event type (`page_view`).
    FieldName
);
name_type!(
    /// The id of a declared purpose (`order_fulfilment`).
    PurposeId
);
name_type!(
    /// The id of a role a token carries (`support_agent`).
    RoleId
);

macro_rules! opaque_bytes {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Vec<u8>);

        impl $name {
            pub fn from_bytes(bytes: Vec<u8>) -> Self {
                Self(bytes)
            }
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
            pub fn into_bytes(self) -> Vec<u8> {
                self.0
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({} bytes)"), self.0.len())
            }
        }
    };
}

opaque_bytes!(
    /// An AEAD ciphertext of one personal value (header, nonce, ciphertext and tag).
    Ciphertext
);
opaque_bytes!(
    /// A subject's data key, encrypted under a key-encryption key. Not a key.
    WrappedDek
);
/// A keyed hash of a normalised lookup value under one version of the blind-index key. Not a
/// value: it only answers "equal?". The version says which key made it, so the key can be
/// rotated (rows are recomputed under the new one while lookups try every version held).
#[derive(Clone, PartialEq, Eq)]
pub struct BlindIndex {
    key_version: u32,
    token: Vec<u8>,
}

impl BlindIndex {
    pub fn new(key_version: u32, token: Vec<u8>) -> Self {
        Self { key_version, token }
    }
    /// The version of the blind-index key that made it.
    pub fn key_version(&self) -> u32 {
        self.key_version
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.token
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndex(v{}, {} bytes)", self.key_version, self.token.len())
    }
}

/// A subject's wrapped data key together with the versions needed to unwrap it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDek {
    /// Which key-encryption key wrapped it (no trial decryption).
    pub kek_version: u32,
    /// Generation of the subject's data key; part of every ciphertext's associated data.
    pub dek_version: u32,
    pub wrapped: WrappedDek,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_ids_round_trip_and_reject_garbage() {
        let id = SubjectId::random();
        assert_eq!(SubjectId::parse(&id.to_string()), Some(id));
        assert_eq!(SubjectId::parse("not-a-uuid"), None);
        assert_eq!(SubjectId::from_bytes(*id.as_bytes()), id);
    }

    #[test]
    fn opaque_bytes_debug_shows_only_a_length() {
        let c = Ciphertext::from_bytes(b"secret".to_vec());
        assert_eq!(format!("{c:?}"), "Ciphertext(6 bytes)");
    }
}
