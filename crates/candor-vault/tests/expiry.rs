//! Every rule with a deadline, tested in process against a real SQLite store with a clock the
//! test moves: nothing sleeps, so nothing depends on the machine's speed.

use std::sync::Arc;
use std::time::Duration;

use candor_core::SubjectId;
use candor_vault::clock::{Clock, ManualClock};
use candor_vault::testing::{acting_as as as_role, example_vault};
use candor_vault::{BreachClock, BreachInput, Vault, VaultError};
use serde_json::{Map, Value, json};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

struct Setup {
    vault: Vault,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at("2026-12-03T10:00:00Z".parse().unwrap()));
    let vault = example_vault(dir.path(), clock.clone()).await;
    Setup { vault, clock, _dir: dir }
}

async fn customer(vault: &Vault) -> SubjectId {
    let backend = as_role(vault, "shop_backend", "account").await;
    let fields: Map<String, Value> =
        json!({"email": "ada@example.com", "full_name": "Ada Lovelace"}).as_object().unwrap().clone();
    vault.create_subject(&backend, &fields).await.unwrap()
}

#[tokio::test]
async fn a_token_stops_working_when_its_expiry_passes() {
    let Setup { vault, clock, _dir } = setup().await;
    let expires = clock.now_millis() + HOUR.as_millis() as i64;
    let token = vault.create_token("support_agent", "one hour", Some(expires)).await.unwrap();
    assert!(vault.authenticate(&token).await.is_ok());
    clock.advance(HOUR - Duration::from_secs(1));
    assert!(vault.authenticate(&token).await.is_ok(), "still valid a second before its expiry");
    clock.advance(Duration::from_secs(1));
    assert!(matches!(vault.authenticate(&token).await, Err(VaultError::TokenExpired)));
}

#[tokio::test]
async fn a_break_glass_override_lasts_its_window_and_no_longer() {
    let Setup { vault, clock, _dir } = setup().await;
    let vault = vault.with_break_glass_minutes(15);
    let id = customer(&vault).await;
    let support = as_role(&vault, "support_agent", "customer_support").await;
    assert_eq!(vault.break_glass_until(&support, id).await.unwrap(), None);
    let reason = "Customer on the phone reports a fraudulent order and needs the delivery address checked";
    vault.open_break_glass(&support, id, Some(reason)).await.unwrap();
    let until = vault.break_glass_until(&support, id).await.unwrap().expect("open");
    assert_eq!(until, clock.now_millis() + 15 * 60_000);
    clock.advance(15 * MINUTE - Duration::from_secs(1));
    assert_eq!(vault.break_glass_until(&support, id).await.unwrap(), Some(until));
    clock.advance(Duration::from_secs(1));
    assert_eq!(vault.break_glass_until(&support, id).await.unwrap(), None, "closed at its end");
}

#[tokio::test]
async fn a_sign_in_link_expires_and_a_session_ends_when_idle() {
    let Setup { vault, clock, _dir } = setup().await;
    let id = customer(&vault).await;
    let backend = as_role(&vault, "shop_backend", "privacy_requests").await;
    // The default: links last 15 minutes, sessions end after 20 idle minutes.
    let stale = vault.create_sign_in_link(&backend, id).await.unwrap();
    clock.advance(15 * MINUTE);
    assert!(!vault.sign_in_link_usable(&stale.secret).await.unwrap(), "expired at 15 minutes");
    assert!(vault.sign_in(&stale.secret).await.is_err());

    let link = vault.create_sign_in_link(&backend, id).await.unwrap();
    clock.advance(14 * MINUTE);
    let (secret, _) = vault.sign_in(&link.secret).await.unwrap();
    clock.advance(19 * MINUTE);
    assert!(vault.customer_session(&secret).await.is_ok(), "active within the idle limit");
    clock.advance(20 * MINUTE);
    assert!(matches!(vault.customer_session(&secret).await, Err(VaultError::SessionExpired)));
}

#[tokio::test]
async fn a_request_becomes_overdue_one_calendar_month_after_it_was_received() {
    let Setup { vault, clock, _dir } = setup().await;
    let id = customer(&vault).await;
    let privacy = as_role(&vault, "privacy_team", "privacy_requests").await;
    let request = vault.open_request(&privacy, id, "access", None).await.unwrap();
    // Received 3 December: due 3 January.
    assert_eq!(request.due_at - request.received_at, 31 * 24 * 3600 * 1000);
    assert_eq!(vault.metrics().await.unwrap().requests_overdue, 0);
    clock.advance(31 * 24 * HOUR - Duration::from_secs(1));
    assert_eq!(vault.metrics().await.unwrap().requests_overdue, 0, "due, not yet overdue");
    clock.advance(Duration::from_secs(2));
    assert_eq!(vault.metrics().await.unwrap().requests_overdue, 1);
}

#[tokio::test]
async fn waiting_for_proof_of_identity_stops_a_requests_clock_and_moves_its_deadline() {
    use candor_vault::RequestUpdate;
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let Setup { vault, clock, _dir } = setup().await;
    let id = customer(&vault).await;
    let privacy = as_role(&vault, "privacy_team", "privacy_requests").await;
    let request = vault.open_request(&privacy, id, "erasure", None).await.unwrap();
    let due = request.due_at;
    clock.advance(5 * DAY);
    let waiting = vault.update_request(&privacy, &request.id, RequestUpdate::IdentityRequested).await.unwrap();
    assert_eq!(waiting.waiting_since, Some(request.received_at + 5 * 24 * 3600 * 1000));
    // Forty days of waiting: past the original deadline, yet not overdue, since the clock stood still.
    clock.advance(40 * DAY);
    assert_eq!(vault.metrics().await.unwrap().requests_overdue, 0);
    let proven = vault.update_request(&privacy, &request.id, RequestUpdate::IdentityProven).await.unwrap();
    assert_eq!(proven.due_at, due + 40 * 24 * 3600 * 1000, "the deadline moves by the pause");
    assert_eq!((proven.waiting_since, proven.paused_ms), (None, 40 * 24 * 3600 * 1000));
    // Five days of the month were used before the pause: 26 are left, to the moved deadline.
    clock.advance(26 * DAY - Duration::from_secs(1));
    assert_eq!(vault.metrics().await.unwrap().requests_overdue, 0);
    clock.advance(2 * Duration::from_secs(1));
    assert_eq!(vault.metrics().await.unwrap().requests_overdue, 1);
}

#[tokio::test]
async fn a_breach_is_overdue_72_hours_after_it_was_detected_unless_the_authority_was_told() {
    let Setup { vault, clock, _dir } = setup().await;
    let id = customer(&vault).await;
    let input = |detected_at| BreachInput {
        detected_at,
        nature: "A support laptop with an export of customer addresses was stolen".into(),
        consequences: "Customers' postal addresses may be known to the thief".into(),
        measures: "The laptop's disk was encrypted; its credentials were revoked".into(),
        categories: vec!["contact".into()],
        subjects: vec![id],
        records: 1,
        countries: Vec::new(),
    };
    let detected = clock.now_millis();
    let recorded = vault.record_breach(input(detected)).await.unwrap().breach;
    assert_eq!(vault.breach_clock(&recorded), BreachClock::Open { left_ms: 72 * 3_600_000 });
    clock.advance(72 * HOUR);
    assert_eq!(vault.breach_clock(&recorded), BreachClock::Open { left_ms: 0 }, "due, not yet overdue");
    clock.advance(Duration::from_secs(1));
    assert_eq!(vault.breach_clock(&recorded), BreachClock::Overdue);

    let told = vault.record_breach(input(clock.now_millis())).await.unwrap().breach;
    clock.advance(HOUR);
    assert!(vault.update_breach(&told.id, false).await.unwrap());
    let told = vault.breaches().await.unwrap().into_iter().find(|b| b.id == told.id).unwrap();
    assert_eq!(vault.breach_clock(&told), BreachClock::Notified { at: clock.now_millis(), late: false });
    clock.advance(100 * HOUR);
    assert_eq!(
        vault.breach_clock(&told),
        BreachClock::Notified { at: clock.now_millis() - 100 * 3_600_000, late: false }
    );
}

#[tokio::test]
async fn values_past_their_retention_are_swept_and_logged_at_the_vaults_time() {
    let Setup { vault, clock, _dir } = setup().await;
    let id = customer(&vault).await;
    let shop = as_role(&vault, "shop_backend", "order_fulfilment").await;
    let purchase =
        candor_vault::NewEventInput { event_type: "purchase".into(), data: json!({"item": "pen"}), occurred_at: None };
    vault.append_event(&shop, id, purchase).await.unwrap();
    // A purchase is kept ten years.
    clock.advance(366 * 24 * HOUR);
    let report = vault.sweep_retention(vault.now_millis(), |_| {}).await.unwrap();
    assert_eq!(report.events, 0, "not due yet");
    clock.advance(10 * 366 * 24 * HOUR);
    let report = vault.sweep_retention(vault.now_millis(), |_| {}).await.unwrap();
    assert_eq!((report.subjects, report.events), (1, 1));
    let size = vault.log_size().await.unwrap();
    let entries = vault.log_entries(0, size).await.unwrap();
    let swept = entries
        .iter()
        .filter_map(|e| candor_log::entry::LogEntry::from_bytes(&e.bytes))
        .find(|e| e.action == "retention.delete")
        .expect("the sweep is logged");
    assert!(swept.time.starts_with("2037-12-"), "stamped by the vault's clock, not the machine's: {}", swept.time);
    assert_eq!(swept.subjects, [id.to_string()]);
}
