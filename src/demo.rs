//! Demo customers for `candor quickstart`: stored through the vault like any other data.

use anyhow::Result;
use serde_json::json;

use crate::vault::{NewEventInput, Principal, Vault};

/// Stores a few customers with profile fields and purchases. Returns their ids.
pub async fn seed(vault: &Vault) -> Result<Vec<String>> {
    let backend = Principal { token_id: "quickstart-demo".into(), role: "shop_backend".into(), origin: None };
    let account = vault.authorize(backend.clone(), Some("account"), None).await?;
    let fulfilment = vault.authorize(backend, Some("order_fulfilment"), None).await?;
    let customers = [
        ("ada@example.com", "Ada Lovelace", "+44 20 7946 0101", "London", "GB", "1990-12-10"),
        ("grace@example.com", "Grace Hopper", "+1 212 555 0199", "New York", "US", "1986-12-09"),
        ("katherine@example.com", "Katherine Johnson", "+1 757 555 0123", "Hampton", "US", "1988-08-26"),
    ];
    let mut ids = Vec::new();
    for (i, (email, name, phone, city, country, dob)) in customers.into_iter().enumerate() {
        let fields =
            json!({ "email": email, "full_name": name, "date_of_birth": dob, "loyalty_points": 120 * (i + 1) });
        let id = vault.create_subject(&account, fields.as_object().expect("object")).await?;
        let shipping = json!({
            "phone": phone,
            "shipping_address": { "street": format!("{} Demo Street", 10 + i), "city": city, "country": country },
        });
        vault.correct_subject(&fulfilment, id, shipping.as_object().expect("object")).await?;
        for (item, price) in [("Notebook", 12.5), ("Fountain pen", 48.0)] {
            vault
                .append_event(
                    &fulfilment,
                    id,
                    NewEventInput {
                        event_type: "purchase".into(),
                        data: json!({ "item": item, "price_eur": price }),
                        occurred_at: None,
                    },
                )
                .await?;
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}
