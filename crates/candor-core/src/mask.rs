//! Masked values: what a role sees of a field the catalog tells it to see masked.
//!
//! A masked value keeps just enough to recognise the value (the caller on the phone says the
//! last two digits match) and nothing that identifies the customer on its own. Each style works
//! on the validated value of the field's type; anything unexpected collapses to `***`.

use serde::Serialize;
use serde_json::Value;

use crate::field_type::FieldType;

/// How a field is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskStyle {
    /// `j***@example.com`: first letter of the local part and the domain.
    Email,
    /// `***18`: the last two digits (phone numbers).
    Last2,
    /// `***4242`: the last four digits or letters (card or account numbers).
    Last4,
    /// `1990`: the year of a date.
    Year,
    /// `{"city": "Leeds"}`: the city of a postal address.
    City,
    /// `J***`: the first letter.
    Initial,
}

const HIDDEN: &str = "***";

impl MaskStyle {
    pub const ALL: [(&'static str, MaskStyle); 6] = [
        ("email", MaskStyle::Email),
        ("last_2", MaskStyle::Last2),
        ("last_4", MaskStyle::Last4),
        ("year", MaskStyle::Year),
        ("city", MaskStyle::City),
        ("initial", MaskStyle::Initial),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, s)| *s == self).map(|(n, _)| *n).expect("every style is in the table")
    }

    /// The style a field of type `ty` gets unless it declares its own (`None`: cannot be masked).
    pub fn default_for(ty: FieldType) -> Option<MaskStyle> {
        match ty {
            FieldType::Email => Some(MaskStyle::Email),
            FieldType::Phone => Some(MaskStyle::Last2),
            FieldType::Date => Some(MaskStyle::Year),
            FieldType::PostalAddress => Some(MaskStyle::City),
            FieldType::Text => Some(MaskStyle::Initial),
            FieldType::Number | FieldType::Json => None,
        }
    }

    /// Whether this style makes sense for values of type `ty`.
    pub fn fits(self, ty: FieldType) -> bool {
        match self {
            MaskStyle::Email => ty == FieldType::Email,
            MaskStyle::Year => ty == FieldType::Date,
            MaskStyle::City => ty == FieldType::PostalAddress,
            MaskStyle::Last2 | MaskStyle::Last4 => matches!(ty, FieldType::Text | FieldType::Phone),
            MaskStyle::Initial => matches!(ty, FieldType::Text | FieldType::Email),
        }
    }

    /// Plain-language description, for explanations and the privacy notice.
    pub fn plain(self) -> &'static str {
        match self {
            MaskStyle::Email => "first letter and domain of the e-mail address",
            MaskStyle::Last2 => "last 2 digits",
            MaskStyle::Last4 => "last 4 characters",
            MaskStyle::Year => "year only",
            MaskStyle::City => "city only",
            MaskStyle::Initial => "first letter only",
        }
    }

    /// The masked form of `value`.
    pub fn apply(self, value: &Value) -> Value {
        let text = value.as_str();
        let masked = match (self, text) {
            (MaskStyle::Email, Some(s)) => match s.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                    format!("{}{HIDDEN}@{domain}", first_char(local))
                }
                _ => HIDDEN.to_string(),
            },
            (MaskStyle::Last2, Some(s)) => tail(s, 2),
            (MaskStyle::Last4, Some(s)) => tail(s, 4),
            (MaskStyle::Year, Some(s)) => match s.split('-').next() {
                Some(year) if year.len() == 4 && year.bytes().all(|b| b.is_ascii_digit()) => year.to_string(),
                _ => HIDDEN.to_string(),
            },
            (MaskStyle::Initial, Some(s)) if !s.trim().is_empty() => format!("{}{HIDDEN}", first_char(s.trim())),
            (MaskStyle::City, _) => {
                return match value.get("city").and_then(Value::as_str) {
                    Some(city) => serde_json::json!({ "city": city }),
                    None => Value::String(HIDDEN.to_string()),
                };
            }
            _ => HIDDEN.to_string(),
        };
        Value::String(masked)
    }
}

fn first_char(s: &str) -> char {
    s.chars().next().unwrap_or('*')
}

/// `***` followed by the last `n` letters or digits of `s` (separators skipped); fewer than
/// `2n` of them and nothing is shown, so a short value is never given away whole.
fn tail(s: &str, n: usize) -> String {
    let kept: Vec<char> = s.chars().filter(|c| c.is_alphanumeric()).collect();
    if kept.len() < 2 * n {
        return HIDDEN.to_string();
    }
    let last: String = kept[kept.len() - n..].iter().collect();
    format!("{HIDDEN}{last}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_style_keeps_only_its_part() {
        assert_eq!(MaskStyle::Email.apply(&json!("jane.doe@example.com")), json!("j***@example.com"));
        assert_eq!(MaskStyle::Last2.apply(&json!("+44 20 7946 0018")), json!("***18"));
        assert_eq!(MaskStyle::Last4.apply(&json!("4242 4242 4242 4242")), json!("***4242"));
        assert_eq!(MaskStyle::Year.apply(&json!("1990-05-17")), json!("1990"));
        assert_eq!(
            MaskStyle::City.apply(&json!({"street": "1 High St", "city": "Leeds", "country": "GB"})),
            json!({"city": "Leeds"})
        );
        assert_eq!(MaskStyle::Initial.apply(&json!("Jane Doe")), json!("J***"));
        assert_eq!(MaskStyle::Initial.apply(&json!("Élodie")), json!("É***"));
    }

    #[test]
    fn unexpected_or_too_short_values_collapse() {
        assert_eq!(MaskStyle::Email.apply(&json!("not-an-address")), json!("***"));
        assert_eq!(MaskStyle::Last4.apply(&json!("123")), json!("***"));
        assert_eq!(MaskStyle::Last2.apply(&json!(42)), json!("***"));
        assert_eq!(MaskStyle::Year.apply(&json!("May 1990")), json!("***"));
        assert_eq!(MaskStyle::City.apply(&json!({"street": "1 High St"})), json!("***"));
    }

    #[test]
    fn defaults_fit_their_types() {
        for (_, ty) in FieldType::ALL {
            if let Some(style) = MaskStyle::default_for(ty) {
                assert!(style.fits(ty), "{style:?} for {ty:?}");
            }
        }
        assert!(MaskStyle::default_for(FieldType::Json).is_none());
        assert!(!MaskStyle::Year.fits(FieldType::Text));
    }
}
