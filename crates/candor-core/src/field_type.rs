//! The types a catalog field can have: part of the catalog's vocabulary that the masks
//! (`mask`) and value rules (`value`) also speak, so it sits apart from both.

use serde::Serialize;

/// The type of a field's value; decides validation, normalisation and (later) masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Email,
    Phone,
    Date,
    PostalAddress,
    Number,
    Json,
}

impl FieldType {
    pub const ALL: [(&'static str, FieldType); 7] = [
        ("text", FieldType::Text),
        ("email", FieldType::Email),
        ("phone", FieldType::Phone),
        ("date", FieldType::Date),
        ("postal_address", FieldType::PostalAddress),
        ("number", FieldType::Number),
        ("json", FieldType::Json),
    ];

    /// Whether values of this type can be searched by exact value (blind index).
    pub fn supports_lookup(self) -> bool {
        matches!(self, FieldType::Text | FieldType::Email | FieldType::Phone | FieldType::Date | FieldType::Number)
    }
}
