//! What a valid value of each field type is, and how lookup values are normalised.
//!
//! Errors say what shape was expected and never repeat the value: they end up in API
//! responses and logs.

use std::fmt;

use serde_json::Value;

use crate::catalog::FieldType;

/// Upper bound on the encoded size of one field value.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Upper bound on the encoded size of one event payload.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;
const MAX_TEXT_BYTES: usize = 4 * 1024;

/// The parts a postal address may have (the one list; pages and the import name these).
pub const ADDRESS_KEYS: [&str; 6] = ["street", "line2", "postal_code", "city", "region", "country"];

/// What an address's country must be; never followed by the value given.
const COUNTRY_RULE: &str =
    "country must be a two-letter ISO 3166-1 code such as DE (lower case is accepted and stored in capitals)";

/// The officially assigned ISO 3166-1 alpha-2 codes (249; from Debian's iso-codes 4.15.0), sorted.
/// User-assigned codes such as XK and reserved ones such as UK or EU are not countries here.
const ISO_3166_1_ALPHA_2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA",
    "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE",
    "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA",
    "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK",
    "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP",
    "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT",
    "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS",
    "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ",
    "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS",
    "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST",
    "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW",
    "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "YE", "YT", "ZA",
    "ZM", "ZW",
];

/// The ISO 3166-1 alpha-2 code `text` names (any case, surrounding spaces ignored), upper case;
/// `None` unless it is an assigned code.
pub fn iso_country(text: &str) -> Option<String> {
    let code = text.trim().to_ascii_uppercase();
    ISO_3166_1_ALPHA_2.binary_search(&code.as_str()).is_ok().then_some(code)
}

/// A personal value that passed validation. `Debug` never prints it.
#[derive(Clone, PartialEq)]
pub struct PersonalValue(Value);

impl PersonalValue {
    pub fn as_json(&self) -> &Value {
        &self.0
    }
    pub fn into_json(self) -> Value {
        self.0
    }
}

impl fmt::Debug for PersonalValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonalValue(<redacted>)")
    }
}

/// Why a value was refused. The message names the expected shape, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn invalid(msg: impl Into<String>) -> ValueError {
    ValueError(msg.into())
}

/// Validates `value` against `ty` and returns its canonical form (strings trimmed).
pub fn validate(ty: FieldType, value: &Value) -> Result<PersonalValue, ValueError> {
    if value.is_null() {
        return Err(invalid("must not be null (omit the field, or remove it with PATCH and null)"));
    }
    let v = match ty {
        FieldType::Text => Value::String(text(value, MAX_TEXT_BYTES, "a string")?),
        FieldType::Email => {
            let s = text(value, 254, "an e-mail address string")?;
            refuse_invisible(&s)?;
            if !is_email(&s) {
                return Err(invalid("must be an e-mail address such as name@example.com"));
            }
            Value::String(s)
        }
        FieldType::Phone => {
            let s = text(value, 64, "a phone number string")?;
            refuse_invisible(&s)?;
            if normalise_phone(&s).is_none() {
                return Err(invalid(
                    "must be a phone number in international form, such as +44 20 7946 0000 (8 to 15 digits after + or 00)",
                ));
            }
            Value::String(s)
        }
        FieldType::Date => {
            let s = text(value, 10, "a date string")?;
            if s.len() != 10 || s.parse::<jiff::civil::Date>().is_err() {
                return Err(invalid("must be a calendar date written YYYY-MM-DD"));
            }
            Value::String(s)
        }
        FieldType::Number => match value {
            Value::Number(_) => value.clone(),
            _ => return Err(invalid("must be a JSON number")),
        },
        FieldType::PostalAddress => address(value)?,
        FieldType::Json => value.clone(),
    };
    if serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_VALUE_BYTES {
        return Err(invalid(format!("is too large (at most {MAX_VALUE_BYTES} bytes once encoded)")));
    }
    Ok(PersonalValue(v))
}

/// The normalised bytes a blind index is computed over, for `lookup` fields. E-mail: trimmed and
/// lower-cased. Phone: `+` and digits only. Others: the canonical JSON text (strings trimmed).
/// `None` if the value is not valid for the type (so it cannot match anything stored).
pub fn lookup_key(ty: FieldType, value: &Value) -> Option<Vec<u8>> {
    let v = validate(ty, value).ok()?;
    Some(match (ty, v.as_json()) {
        // One spelling per address: compatibility-composed (NFKC, so a decomposed é or a
        // full-width letter is the same address), lower-cased, composed again.
        (FieldType::Email, Value::String(s)) => canonical(&canonical(s).to_lowercase()).into_bytes(),
        (FieldType::Phone, Value::String(s)) => normalise_phone(s)?.into_bytes(),
        // Text keeps its case (lookups of text were always exact) but not its spelling variants.
        (FieldType::Text | FieldType::Date, Value::String(s)) => canonical(s).into_bytes(),
        (_, other) => other.to_string().into_bytes(),
    })
}

/// Parses a lookup value given as text (from a query string) into the JSON value of the type.
/// Whether a field of type `ty` can say which country a customer is in (see [`country_code`]).
pub fn holds_country(ty: FieldType) -> bool {
    matches!(ty, FieldType::PostalAddress | FieldType::Text)
}

/// The ISO 3166-1 alpha-2 country a stored value names: a postal address's `country` part, or
/// a text value that is an assigned two-letter code. `None` when it names none (counted as
/// unknown; addresses stored before countries were checked may say "Germany").
pub fn country_code(ty: FieldType, value: &Value) -> Option<String> {
    let text = match (ty, value) {
        (FieldType::PostalAddress, Value::Object(parts)) => parts.get("country")?.as_str()?,
        (FieldType::Text, Value::String(s)) => s.as_str(),
        _ => return None,
    };
    iso_country(text)
}

pub fn lookup_value_from_text(ty: FieldType, text: &str) -> Value {
    match ty {
        FieldType::Number => text
            .trim()
            .parse::<serde_json::Number>()
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(text.to_string())),
        _ => Value::String(text.to_string()),
    }
}

/// NFKC with default-ignorable code points (zero-width spaces and joiners, soft hyphens, variation
/// selectors, bidirectional controls…) removed: what a lookup compares.
fn canonical(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.chars().filter(|c| !is_default_ignorable(*c)).nfkc().filter(|c| !is_default_ignorable(*c)).collect()
}

/// Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt): characters that
/// render as nothing.
fn is_default_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// Identifiers (e-mail addresses, phone numbers) may not hide characters that render as nothing:
/// two addresses that look the same must be the same address.
fn refuse_invisible(s: &str) -> Result<(), ValueError> {
    if s.chars().any(is_default_ignorable) {
        return Err(invalid(
            "must not contain invisible characters (zero-width spaces or joiners, soft hyphens, direction marks)",
        ));
    }
    Ok(())
}

fn text(value: &Value, max: usize, what: &str) -> Result<String, ValueError> {
    let Value::String(s) = value else {
        return Err(invalid(format!("must be {what}")));
    };
    let s = s.trim();
    if s.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if s.len() > max {
        return Err(invalid(format!("is too long (at most {max} bytes)")));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid("must not contain control characters"));
    }
    Ok(s.to_string())
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !s.chars().any(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.split('.').all(|label| !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-'))
}

/// E.164-like form: `+` followed by 8 to 15 digits. Accepts spaces, dots, dashes, parentheses
/// and a leading `00` for `+`.
pub fn normalise_phone(s: &str) -> Option<String> {
    let s = s.trim();
    let rest = if let Some(r) = s.strip_prefix('+') { r } else { s.strip_prefix("00")? };
    let mut digits = String::with_capacity(16);
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (8..=15).contains(&digits.len()).then(|| format!("+{digits}"))
}

fn address(value: &Value) -> Result<Value, ValueError> {
    let Value::Object(map) = value else {
        return Err(invalid(
            "must be an object with street, line2, postal_code, city, region and country (city and country required)",
        ));
    };
    let mut out = serde_json::Map::new();
    for (k, v) in map {
        if !ADDRESS_KEYS.contains(&k.as_str()) {
            return Err(invalid(format!(
                "has an unknown part `{}`; use street, line2, postal_code, city, region, country",
                k.chars().take(32).collect::<String>()
            )));
        }
        let s = text(v, 256, "a string").map_err(|e| invalid(format!("part `{k}` {}", e.0)))?;
        out.insert(k.clone(), Value::String(s));
    }
    for required in ["city", "country"] {
        if !out.contains_key(required) {
            return Err(invalid(format!("needs a `{required}`")));
        }
    }
    let country =
        out.get("country").and_then(Value::as_str).and_then(iso_country).ok_or_else(|| invalid(COUNTRY_RULE))?;
    out.insert("country".into(), Value::String(country));
    Ok(Value::Object(out))
}

/// Validates an event payload: a JSON object of bounded size.
pub fn validate_event_payload(value: &Value) -> Result<PersonalValue, ValueError> {
    if !value.is_object() {
        return Err(invalid("must be a JSON object"));
    }
    if serde_json::to_vec(value).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_EVENT_BYTES {
        return Err(invalid(format!("is too large (at most {MAX_EVENT_BYTES} bytes once encoded)")));
    }
    Ok(PersonalValue(value.clone()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn emails_are_checked_and_normalised_for_lookup() {
        assert!(validate(FieldType::Email, &json!(" Ada@Example.COM ")).is_ok());
        for bad in [json!("ada"), json!("ada@"), json!("a b@x.io"), json!("@x.io"), json!(3), json!("a@x..io")] {
            assert!(validate(FieldType::Email, &bad).is_err(), "{bad}");
        }
        assert_eq!(
            lookup_key(FieldType::Email, &json!(" Ada@Example.COM ")),
            lookup_key(FieldType::Email, &json!("ada@example.com"))
        );
    }

    #[test]
    fn lookup_keys_are_one_spelling_per_identifier_and_invisible_characters_are_refused() {
        // A decomposed é (e + U+0301) and a composed one, full-width letters, case: one address.
        let composed = lookup_key(FieldType::Email, &json!("jos\u{e9}@example.com"));
        assert_eq!(lookup_key(FieldType::Email, &json!("Jose\u{301}@Example.com")), composed);
        assert_eq!(lookup_key(FieldType::Email, &json!("\u{ff2a}os\u{e9}@example.com")), composed);
        // Zero-width and other invisible characters are refused in identifiers...
        for hidden in ["ada\u{200b}@example.com", "ada@exam\u{00ad}ple.com", "\u{feff}ada@example.com"] {
            let e = validate(FieldType::Email, &json!(hidden)).unwrap_err();
            assert!(e.0.contains("invisible"), "{e}");
        }
        assert!(validate(FieldType::Phone, &json!("+44 20 7946\u{200d} 0000")).is_err());
        // ... and do not change what a text lookup finds.
        assert_eq!(lookup_key(FieldType::Text, &json!("AB\u{200b}C-1")), lookup_key(FieldType::Text, &json!("ABC-1")));
        assert_ne!(lookup_key(FieldType::Text, &json!("abc-1")), lookup_key(FieldType::Text, &json!("ABC-1")));
        // ASCII addresses keep their old keys (existing lookup rows stay valid).
        assert_eq!(lookup_key(FieldType::Email, &json!("Ada@Example.COM")), Some(b"ada@example.com".to_vec()));
    }

    #[test]
    fn phones_normalise_to_e164_like_form() {
        assert_eq!(normalise_phone("+44 (20) 7946-0000").as_deref(), Some("+442079460000"));
        assert_eq!(normalise_phone("0044 20 7946 0000").as_deref(), Some("+442079460000"));
        assert_eq!(normalise_phone("020 7946 0000"), None);
        assert_eq!(normalise_phone("+12"), None);
        assert_eq!(normalise_phone("+44 20 7946 000x"), None);
    }

    #[test]
    fn dates_addresses_numbers_and_text_are_typed() {
        assert!(validate(FieldType::Date, &json!("1990-02-28")).is_ok());
        assert!(validate(FieldType::Date, &json!("1990-02-30")).is_err());
        assert!(validate(FieldType::Date, &json!("28/02/1990")).is_err());
        assert!(validate(FieldType::Number, &json!(12.5)).is_ok());
        assert!(validate(FieldType::Number, &json!("12")).is_err());
        assert!(validate(FieldType::PostalAddress, &json!({"city": "Leeds", "country": "GB"})).is_ok());
        assert!(validate(FieldType::PostalAddress, &json!({"city": "Leeds"})).is_err());
        assert!(validate(FieldType::PostalAddress, &json!({"city": "L", "country": "GB", "pin": "1"})).is_err());
        assert!(validate(FieldType::Text, &json!("  ")).is_err());
        assert!(validate(FieldType::Text, &json!("x".repeat(5000))).is_err());
        assert!(validate(FieldType::Text, &Value::Null).is_err());
        assert!(validate(FieldType::Json, &json!({"a": [1, 2]})).is_ok());
    }

    #[test]
    fn errors_never_repeat_the_value() {
        for (ty, v) in [
            (FieldType::Email, json!("canary-secret-value")),
            (FieldType::Date, json!("canary-secret-value")),
            (FieldType::Phone, json!("canary-secret-value")),
            (FieldType::Number, json!("canary-secret-value")),
            (FieldType::PostalAddress, json!({"city": "canary-secret-value"})),
        ] {
            let e = validate(ty, &v).unwrap_err();
            assert!(!e.to_string().contains("canary"), "{e}");
        }
        assert_eq!(format!("{:?}", validate(FieldType::Text, &json!("secret")).unwrap()), "PersonalValue(<redacted>)");
    }

    #[test]
    fn the_country_comes_from_an_address_or_a_two_letter_code() {
        let address = json!({"street": "1 High St", "city": "Leeds", "country": "gb"});
        assert_eq!(country_code(FieldType::PostalAddress, &address).as_deref(), Some("GB"));
        assert_eq!(country_code(FieldType::PostalAddress, &json!({"city": "Leeds"})), None);
        assert_eq!(country_code(FieldType::Text, &json!(" de ")).as_deref(), Some("DE"));
        assert_eq!(country_code(FieldType::Text, &json!("Germany")), None);
        assert_eq!(country_code(FieldType::Text, &json!("ZZ")), None, "two letters, but no country");
        assert_eq!(country_code(FieldType::Email, &json!("de")), None);
        assert!(holds_country(FieldType::PostalAddress) && !holds_country(FieldType::Email));
    }

    #[test]
    fn an_address_country_is_an_assigned_iso_code_stored_in_capitals() {
        let with = |country: Value| json!({"city": "Berlin", "country": country});
        let stored = validate(FieldType::PostalAddress, &with(json!(" de "))).unwrap();
        assert_eq!(stored.as_json()["country"], "DE", "trimmed and upper-cased");
        assert_eq!(validate(FieldType::PostalAddress, &with(json!("GB"))).unwrap().as_json()["country"], "GB");
        for bad in ["Germany", "ZZ", "UK", "XK", "Q", "DEU", "D3", "É", "12"] {
            let e = validate(FieldType::PostalAddress, &with(json!(bad))).unwrap_err().to_string();
            assert!(e.starts_with("country must be a two-letter ISO 3166-1 code such as DE"), "{bad}: {e}");
            assert!(!e.contains(bad), "the value is never echoed: {e}");
        }
        // Every code on the list is two capitals, the list is sorted (binary search) and complete.
        assert!(ISO_3166_1_ALPHA_2.windows(2).all(|w| w[0] < w[1]));
        assert!(ISO_3166_1_ALPHA_2.iter().all(|c| c.len() == 2 && c.chars().all(|ch| ch.is_ascii_uppercase())));
        for code in ["AD", "AQ", "DE", "IE", "SS", "SX", "US", "ZW"] {
            assert_eq!(iso_country(code).as_deref(), Some(code));
        }
    }
}
