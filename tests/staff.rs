//! Staff sign-in through a real OpenID Provider (`oidc-provider` from npm, started on loopback
//! from tests/oidc with test accounts and groups): the authorization code flow over real HTTP,
//! role mapping, refusals, tampered answers, session expiry and sign-out, services' JWT access
//! tokens (client credentials) and forged ones, the pseudonym in the
//! log, `candor staff whois`, and the customer's view; and one sign-in in Chromium
//! (tests/browser/staff.mjs). Nothing of the protocol is mocked.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::visitor::Visitor;
use common::{Install, Server, candor};
use serde_json::{Value, json};

/// The real OpenID Provider; killed (by its own process id) on drop.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts it, or `None` (said loudly) when its npm package is not installed.
    fn start(client_secret: &str) -> Option<Self> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            assert!(
                std::env::var_os("CANDOR_OIDC_TESTS").is_none(),
                "CANDOR_OIDC_TESTS is set but tests/oidc/node_modules is missing: run `npm ci --prefix tests/oidc`"
            );
            eprintln!("SKIPPED: staff sign-in tests need the real OpenID Provider: run `npm ci --prefix tests/oidc`");
            eprintln!("SKIPPED (scripts/test.sh installs it and sets CANDOR_OIDC_TESTS)");
            return None;
        }
        let mut child = Command::new("node")
            .arg("op.mjs")
            .arg(client_secret)
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("issuer: ") {
                    let _ = tx.send(issuer.trim().to_string());
                }
            }
        });
        let issuer = rx.recv_timeout(Duration::from_secs(60)).expect("the OpenID Provider did not start");
        Some(Self { child, issuer })
    }

    /// An access token for `resource` by the client credentials grant of `backend-service`.
    async fn client_token(&self, secret: &str, resource: &str) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth("backend-service", Some(secret))
            .form(&[("grant_type", "client_credentials"), ("resource", resource)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    /// An access token the provider did not issue (see tests/oidc/op.mjs).
    async fn forged_token(&self, kind: &str) -> String {
        let r = reqwest::get(format!("{}/__test/forge?kind={kind}", self.issuer)).await.unwrap();
        let body: Value = r.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    async fn tamper(&self, mode: &str) {
        let r = reqwest::get(format!("{}/__test/tamper?mode={mode}", self.issuer)).await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

/// An installation with `[staff]` pointing at the provider.
fn staff_install(issuer: &str, secret: &str) -> Install {
    let install = Install::new();
    let dir = install.dir.path();
    let secret_file = dir.join("keys/oidc-client-secret");
    std::fs::write(&secret_file, secret).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut config = std::fs::read_to_string(install.config()).unwrap();
    config.push_str(&format!(
        "\n[staff]\nsession_idle_minutes = 15\nsession_max_hours = 8\n\n[staff.oidc]\nissuer = \"{issuer}\"\nclient_id = \"candor\"\nclient_secret_file = \"keys/oidc-client-secret\"\nscopes = [\"email\", \"groups\"]\nroles_claim = \"groups\"\napi_audience = \"https://candor.test/api\"\n\n[staff.clients]\n\"vault-writer\" = \"shop_backend\"\n\n[staff.roles]\n\"support-team\" = \"support_agent\"\n\"privacy-team\" = \"privacy_team\"\n\"it-admins\" = \"admin\"\n"
    ));
    std::fs::write(install.config(), config).unwrap();
    install
}

/// Stores Ada (e-mail, name, phone) through the shop's backend token; returns her id.
async fn ada_with_a_phone(server: &Server, install: &Install) -> String {
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let r = backend
        .with_purpose("order_fulfilment")
        .patch(&format!("/v1/subjects/{id}"), json!({"fields": {"phone": "+442079460000"}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    id
}

/// A browser without a browser, across two sites (the provider and Candor, both on
/// 127.0.0.1, so one cookie jar as a browser would keep): never follows redirects by itself.
struct Browser {
    http: reqwest::Client,
    jar: BTreeMap<String, String>,
    /// Where a sign-in starts (the console's sign-in, or its re-authentication link).
    start: String,
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
    set_cookies: Vec<String>,
}

impl Browser {
    fn new() -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { http, jar: BTreeMap::new(), start: "/console/sign-in".into() }
    }

    fn cookie(&self, name: &str) -> Option<&String> {
        self.jar.get(name)
    }

    async fn send(&mut self, r: reqwest::RequestBuilder) -> Answer {
        let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let r = if cookies.is_empty() { r } else { r.header("cookie", cookies.join("; ")) };
        let resp = r.send().await.expect("HTTP");
        let status = resp.status().as_u16();
        let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string());
        let mut set_cookies = Vec::new();
        for set in resp.headers().get_all("set-cookie") {
            let set = set.to_str().unwrap().to_string();
            let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") || set.contains("expires=Thu, 01 Jan 1970") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_string(), value.to_string());
            }
            set_cookies.push(set);
        }
        Answer { status, location, body: resp.text().await.unwrap_or_default(), set_cookies }
    }

    async fn get(&mut self, url: &str) -> Answer {
        let r = self.http.get(url);
        self.send(r).await
    }

    /// Submits a form (as a page of the console would).
    async fn post_form(&mut self, url: &str, fields: &[(&str, &str)]) -> Answer {
        let r = self.http.post(url).form(fields);
        self.send(r).await
    }

    /// Signs `login` in: Candor's sign-in, the provider's own login form, back to Candor's
    /// callback. `auth` may change the authorization URL, `back` the callback URL, on the way.
    async fn sign_in_with(
        &mut self,
        candor: &str,
        issuer: &str,
        login: &str,
        auth: impl Fn(String) -> String,
        back: impl Fn(String) -> String,
    ) -> Answer {
        let start = self.get(&format!("{candor}{}", self.start)).await;
        assert_eq!(start.status, 303, "{}", start.body);
        let mut url = auth(start.location.unwrap());
        assert!(url.starts_with(issuer), "{url}");
        // The provider: its login form, then (loopback clients are always asked) its consent
        // form, then back to Candor.
        for _ in 0..20 {
            if url.starts_with(candor) {
                return self.get(&back(url)).await;
            }
            let a = self.get(&url).await;
            let next = match a.location {
                Some(l) => l,
                None => {
                    assert_eq!(a.status, 200, "{}", a.body);
                    let action = between(&a.body, "action=\"", "\"").to_string();
                    let prompt = between(&a.body, "name=\"prompt\" value=\"", "\"").to_string();
                    let form: Vec<(&str, &str)> = if prompt == "login" {
                        vec![("prompt", "login"), ("login", login), ("password", "pw")]
                    } else {
                        vec![("prompt", prompt.as_str())]
                    };
                    let to = if action.starts_with('/') { format!("{issuer}{action}") } else { action };
                    let posted = self.send(self.http.post(to).form(&form)).await;
                    posted.location.expect("the provider's form redirects")
                }
            };
            url = if next.starts_with('/') { format!("{issuer}{next}") } else { next };
        }
        panic!("the provider never sent the browser back to Candor");
    }

    async fn sign_in(&mut self, candor: &str, issuer: &str, login: &str) -> Answer {
        self.sign_in_with(candor, issuer, login, |u| u, |u| u).await
    }

    /// The API with this browser's cookies (as a page of the console would call it).
    async fn api(
        &mut self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(method, url).header("Candor-Purpose", "customer_support");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let a = self.send(r).await;
        (a.status, serde_json::from_str(&a.body).unwrap_or(Value::Null))
    }
}

/// Whether the provider asks `browser` to log in when it starts a sign-in at Candor (`false`:
/// the provider still holds a session and sends it straight back).
async fn provider_asks_login(browser: &mut Browser, candor: &str, issuer: &str) -> bool {
    let start = browser.get(&format!("{candor}/console/sign-in")).await;
    let mut url = start.location.expect("a redirect to the provider");
    for _ in 0..10 {
        if url.starts_with(candor) {
            return false;
        }
        let a = browser.get(&url).await;
        match a.location {
            Some(next) => url = if next.starts_with('/') { format!("{issuer}{next}") } else { next },
            None => return a.body.contains("name=\"prompt\" value=\"login\""),
        }
    }
    panic!("the provider neither asked nor answered");
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    text.split(start).nth(1).unwrap_or_else(|| panic!("no {start} in {text}")).split(end).next().unwrap()
}

/// Whether `entries` hold `action` by a signed-in person (a staff pseudonym) acting as `role`.
fn logged_by_staff(entries: &[Value], role: &str, action: &str) -> bool {
    entries.iter().any(|e| {
        e["action"] == action
            && e["actor"]["role"] == role
            && e["actor"]["token"].as_str().is_some_and(|t| t.starts_with("staff:stf_"))
    })
}

async fn log_entries(server: &Server, admin: &str) -> Vec<Value> {
    let c = server.client(admin, None);
    let size = reqwest::get(format!("{}/v1/log/checkpoint", server.url)).await.unwrap().text().await.unwrap();
    let size: u64 = size.lines().nth(1).unwrap().parse().unwrap();
    let r = c.get(&format!("/v1/log/entries?start=0&end={size}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["entries"].as_array().unwrap().iter().map(|e| e["entry"].clone()).collect()
}

#[tokio::test]
async fn staff_sign_in_through_a_real_provider_is_attributed_to_a_pseudonym() {
    let secret = "test-client-secret-4f1c2a9e7d";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let candor_url = server.url.clone();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = ada_with_a_phone(&server, &install).await;

    // Not signed in: the console offers sign-in; the API wants a token.
    let mut alice = Browser::new();
    let home = alice.get(&format!("{candor_url}/console")).await;
    assert!(home.body.contains("/console/sign-in"), "{}", home.body);

    // Alice (group support-team) signs in: role support_agent, a locked-down session cookie.
    let back = alice.sign_in(&candor_url, &op.issuer, "alice").await;
    assert_eq!(back.status, 200, "{}", back.body);
    let set = back.set_cookies.iter().find(|c| c.starts_with("candor_staff=")).expect("a session cookie");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    assert!(alice.cookie("candor_staff_flow").is_none(), "the flow cookie is cleared");
    let console = alice.get(&format!("{candor_url}/console")).await;
    assert_eq!(console.status, 200, "{}", console.body);
    assert_eq!(between(&console.body, "id=\"role\">", "<"), "support_agent");
    let pseudonym = between(&console.body, "id=\"pseudonym\">", "<").to_string();
    assert!(pseudonym.starts_with("stf_") && pseudonym.len() == 36, "{pseudonym}");
    let csrf = between(&console.body, "id=\"csrf\">", "<").to_string();
    assert!(!console.body.contains("alice"), "the console shows no name or e-mail address");

    // She reads a customer under customer_support with her session, the same path as a token.
    let (status, body) = alice.api(reqwest::Method::GET, &format!("{candor_url}/v1/subjects/{id}"), &[], None).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["masked"].as_array().unwrap().contains(&json!("phone")),
        "support agents see the phone masked: {body}"
    );
    // A change needs the session's anti-forgery token; a token and a cookie together are refused.
    let patch = json!({"fields": {"full_name": "Ada King"}});
    let (status, body) =
        alice.api(reqwest::Method::PATCH, &format!("{candor_url}/v1/subjects/{id}"), &[], Some(patch.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("csrf_token_required")), "{body}");
    let (status, body) = alice
        .api(reqwest::Method::PATCH, &format!("{candor_url}/v1/subjects/{id}"), &[("Candor-CSRF", &csrf)], Some(patch))
        .await;
    assert_ne!(body["error"]["code"], "csrf_token_required", "{status} {body}");
    let admin = install.admin_token.clone();
    let (status, body) = alice
        .api(
            reqwest::Method::GET,
            &format!("{candor_url}/v1/subjects/{id}"),
            &[("Authorization", &format!("Bearer {admin}"))],
            None,
        )
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_authorization")), "{body}");
    let (status, body) = alice
        .api(reqwest::Method::GET, &format!("{candor_url}/v1/subjects/{id}"), &[("Sec-Fetch-Site", "cross-site")], None)
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("cross_site_request")), "{body}");

    // The log names her pseudonym next to the role, never her name or e-mail address.
    let entries = log_entries(&server, &admin).await;
    let actor = format!("staff:{pseudonym}");
    let read = entries
        .iter()
        .find(|e| e["action"] == "subject.read" && e["actor"]["token"] == actor.as_str())
        .expect("the read is logged under her pseudonym");
    assert_eq!(read["actor"]["role"], "support_agent");
    assert_eq!(read["purpose"], "customer_support");
    assert!(entries.iter().any(|e| e["action"] == "staff.sign_in" && e["actor"]["token"] == actor.as_str()));
    let all = serde_json::to_string(&entries).unwrap();
    assert!(!all.contains("alice") && !all.contains("staff.example"), "no name or e-mail in the log");
    let server_log = std::fs::read_to_string(&server.log_path).unwrap();
    assert!(!server_log.contains("alice.agent@staff.example"), "no e-mail in the server log");

    // whois: an auditor resolves the pseudonym, and the look-up is logged; others may not.
    let dir = install.dir.path();
    let config = install.config();
    let config = config.to_str().unwrap();
    let (ok, out, err) = candor(&["staff", "whois", &pseudonym, "--token", &admin, "--config", config], dir);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("issuer      {}", op.issuer)) && out.contains("subject     alice"), "{out}");
    assert!(out.contains("last role   support_agent"), "{out}");
    let agent = install.token("support_agent");
    let (ok, _, err) = candor(&["staff", "whois", &pseudonym, "--token", &agent, "--config", config], dir);
    assert!(!ok && err.contains("audit"), "{err}");
    let auditor = install.token("privacy_team");
    let (ok, out, err) =
        candor(&["staff", "whois", &format!("staff:{pseudonym}"), "--token", &auditor, "--config", config], dir);
    assert!(ok && out.contains("subject     alice"), "{err}");
    let entries = log_entries(&server, &admin).await;
    let lookups: Vec<&Value> =
        entries.iter().filter(|e| e["action"] == "staff.whois" && e["decision"].is_null()).collect();
    assert_eq!(lookups.len(), 2, "{lookups:?}");
    assert!(lookups.iter().all(|e| e["detail"].as_str().unwrap().contains(&pseudonym)));
    assert!(entries.iter().any(|e| e["action"] == "staff.whois"
        && e["decision"] == "denied"
        && e["detail"] == "audit_not_allowed"
        && e["actor"]["role"] == "support_agent"));

    // Breach assessment: everything this person read, by pseudonym; a stranger's pseudonym
    // matches nothing; malformed ones and --staff with --token are refused.
    let assess = |who: &str| {
        let (ok, out, err) = candor(&["breach", "assess", "--staff", who, "--config", config], dir);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let found = assess(&pseudonym);
    assert_eq!(found["filters"]["token"], actor.as_str(), "{found}");
    assert_eq!(found["customers"], 1, "{found}");
    assert!(found["matching_accesses"].as_u64().unwrap() >= 1, "{found}");
    assert!(found["by_category"].as_object().is_some_and(|c| !c.is_empty()), "{found}");
    let found = assess(&format!("staff:stf_{}", "0".repeat(32)));
    assert_eq!((found["customers"].as_u64(), found["matching_accesses"].as_u64()), (Some(0), Some(0)), "{found}");
    let (ok, _, err) = candor(&["breach", "assess", "--staff", "alice", "--config", config], dir);
    assert!(!ok && err.contains("not a staff pseudonym"), "{err}");
    let (ok, _, err) = candor(&["breach", "assess", "--staff", &pseudonym, "--token", "t1", "--config", config], dir);
    assert!(!ok && err.contains("cannot be used with"), "{err}");

    // The customer's own access page names the role in plain words, never a person.
    let r = backend
        .with_purpose("privacy_requests")
        .post(&format!("/v1/subjects/{id}/privacy-center-links"), json!({}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut customer = Visitor::new(&server);
    customer.sign_in(r.body["path"].as_str().unwrap()).await;
    let page = customer.get("/privacy/me/access").await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("Customer-service staff"), "{}", page.html);
    assert!(!page.html.contains("stf_") && !page.html.contains("alice"), "{}", page.html);

    // Idle for longer than session_idle_minutes: the session has ended, on the API and the console.
    install.advance_clock(Duration::from_secs(16 * 60));
    let (status, body) = alice.api(reqwest::Method::GET, &format!("{candor_url}/v1/subjects/{id}"), &[], None).await;
    assert_eq!(status, 401, "{body}");
    let console = alice.get(&format!("{candor_url}/console")).await;
    assert_eq!(console.status, 401, "{}", console.body);

    // Signing in again, then out: the old cookie no longer works, and both are logged.
    let back = alice.sign_in(&candor_url, &op.issuer, "alice").await;
    assert_eq!(back.status, 200, "{}", back.body);
    let console = alice.get(&format!("{candor_url}/console")).await;
    assert_eq!(between(&console.body, "id=\"pseudonym\">", "<"), pseudonym, "the pseudonym is stable");
    let cookie = alice.cookie("candor_staff").unwrap().clone();
    let csrf = between(&console.body, "name=\"csrf\" value=\"", "\"").to_string();
    let out = alice.send(alice.http.post(format!("{candor_url}/console/sign-out")).form(&[("csrf", "forged")])).await;
    assert_eq!(out.status, 403);
    let out =
        alice.send(alice.http.post(format!("{candor_url}/console/sign-out")).form(&[("csrf", csrf.as_str())])).await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(alice.cookie("candor_staff").is_none());
    // RP-initiated logout: the signed-out page links to the provider's end-session endpoint;
    // until she follows it the provider still holds her session (single sign-on), afterwards
    // it asks her to log in again.
    let logout = between(&out.body, "<a href=\"", "\"").replace("&amp;", "&");
    assert!(
        logout.starts_with(&format!("{}/session/end?", op.issuer)) && logout.contains("client_id=candor"),
        "{logout}"
    );
    assert!(
        !provider_asks_login(&mut Browser { jar: alice.jar.clone(), ..Browser::new() }, &candor_url, &op.issuer).await
    );
    let confirm = alice.get(&logout).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let action = between(&confirm.body, "action=\"", "\"").to_string();
    let xsrf = between(&confirm.body, "name=\"xsrf\" value=\"", "\"").to_string();
    let to = if action.starts_with('/') { format!("{}{action}", op.issuer) } else { action };
    let done = alice.send(alice.http.post(to).form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])).await;
    assert!(done.status == 303 || done.status == 302 || done.status == 200, "{} {}", done.status, done.body);
    assert!(provider_asks_login(&mut alice, &candor_url, &op.issuer).await, "the provider's session has ended");
    let r = reqwest::Client::new()
        .get(format!("{candor_url}/v1/subjects/{id}"))
        .header("cookie", format!("candor_staff={cookie}"))
        .header("Candor-Purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let entries = log_entries(&server, &admin).await;
    let outs: Vec<&Value> =
        entries.iter().filter(|e| e["action"] == "staff.sign_out" && e["actor"]["token"] == actor.as_str()).collect();
    assert_eq!(outs.len(), 2, "idle timeout and sign-out: {outs:?}");
    assert!(outs[0]["detail"].as_str().unwrap().contains("idle timeout"));

    // The log still verifies end to end.
    let (ok, out, err) = candor(&["log", "verify", "--config", config], dir);
    assert!(ok, "{out}\n{err}");
}

#[tokio::test]
async fn people_without_one_role_and_tampered_answers_are_refused() {
    let secret = "test-client-secret-91b0c3";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let candor_url = server.url.clone();
    let refused = |a: &Answer| a.status == 403 && !a.set_cookies.iter().any(|c| c.starts_with("candor_staff="));

    // Bob's groups map to no role: a clear page, no session.
    let mut bob = Browser::new();
    let a = bob.sign_in(&candor_url, &op.issuer, "bob").await;
    assert!(refused(&a), "{} {}", a.status, a.body);
    assert!(a.body.contains("not in any group that has a role"), "{}", a.body);
    // Carol's map to two: refused too, naming them.
    let a = Browser::new().sign_in(&candor_url, &op.issuer, "carol").await;
    assert!(refused(&a) && a.body.contains("privacy_team, support_agent"), "{}", a.body);
    // Dora's groups claim is one string: privacy_team.
    let mut dora = Browser::new();
    let a = dora.sign_in(&candor_url, &op.issuer, "dora").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let console = dora.get(&format!("{candor_url}/console")).await;
    assert_eq!(between(&console.body, "id=\"role\">", "<"), "privacy_team");

    // A changed state (or a callback in a browser that did not start the sign-in) is refused.
    let a =
        Browser::new().sign_in_with(&candor_url, &op.issuer, "alice", |u| u, |u| u.replace("state=", "state=x")).await;
    assert!(refused(&a) && a.body.contains("not started in this browser"), "{}", a.body);
    let mut one = Browser::new();
    let start = one.get(&format!("{candor_url}/console/sign-in")).await;
    assert_eq!(start.status, 303);
    let a =
        Browser::new().sign_in_with(&candor_url, &op.issuer, "alice", |_| start.location.clone().unwrap(), |u| u).await;
    assert!(refused(&a), "login CSRF: {}", a.body);

    // A nonce changed on the way to the provider: the ID token carries the wrong one.
    let a =
        Browser::new().sign_in_with(&candor_url, &op.issuer, "alice", |u| u.replace("nonce=", "nonce=x"), |u| u).await;
    assert!(refused(&a) && a.body.contains("nonce"), "{}", a.body);

    // ID tokens altered after the provider signed them: a changed claim, and `alg: none`.
    op.tamper("payload").await;
    let a = Browser::new().sign_in(&candor_url, &op.issuer, "alice").await;
    assert!(refused(&a) && a.body.contains("did not pass"), "{}", a.body);
    op.tamper("none").await;
    let a = Browser::new().sign_in(&candor_url, &op.issuer, "alice").await;
    assert!(refused(&a) && a.body.contains("did not pass"), "{}", a.body);
    op.tamper("off").await;
    let a = Browser::new().sign_in(&candor_url, &op.issuer, "alice").await;
    assert_eq!(a.status, 200, "{}", a.body);

    // A flow older than ten minutes is refused.
    let mut slow = Browser::new();
    let a = slow
        .sign_in_with(
            &candor_url,
            &op.issuer,
            "alice",
            |u| u,
            |u| {
                install.advance_clock(Duration::from_secs(11 * 60));
                u
            },
        )
        .await;
    assert!(refused(&a), "{}", a.body);

    // An ID token already expired by Candor's clock (the provider's last an hour; Candor's clock
    // is moved two hours on, the provider's is not) is refused: expiry is Candor's clock's call.
    install.advance_clock(Duration::from_secs(2 * 3600));
    let a = Browser::new().sign_in(&candor_url, &op.issuer, "alice").await;
    assert!(refused(&a) && a.body.contains("expired"), "{}", a.body);
}

/// `candor quickstart --staff-issuer` (what `scripts/quickstart-idp.sh` runs with this very
/// provider): the demo installation signs staff in through the provider, for that run only.
#[tokio::test]
async fn the_quickstart_signs_staff_in_through_the_bundled_provider() {
    let secret = "test-client-secret-5e1a70";
    let Some(op) = Provider::start(secret) else { return };
    let dir = tempfile::tempdir().unwrap();
    let quickstart = |with_secret: bool| {
        let mut command = Command::new(common::BIN);
        command
            .args(["quickstart", "--dir", "qs", "--listen", "127.0.0.1:0", "--staff-issuer", &op.issuer])
            .args(["--staff-role", "support-team=support_agent", "--staff-role", "privacy-team=privacy_team"])
            .current_dir(dir.path())
            .env_remove("CANDOR_OIDC_CLIENT_SECRET");
        if with_secret {
            command.env("CANDOR_OIDC_CLIENT_SECRET", secret);
        }
        command
    };
    // Without the client secret: refused before anything is created.
    let out = quickstart(false).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CANDOR_OIDC_CLIENT_SECRET"));
    assert!(!dir.path().join("qs").exists(), "nothing is created");

    let mut child = quickstart(true).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let lines = common::lines_until_listening(&mut child, Duration::from_secs(120));
    let _stop = KillOnDrop(child);
    let lines = lines.expect("quickstart starts");
    let url = lines.iter().find_map(|l| l.strip_prefix("listening on ")).unwrap().trim().to_string();
    assert!(lines.iter().any(|l| l.contains(&format!("{url}/console")) && l.contains(&op.issuer)), "{lines:#?}");

    // Alice (support-team) signs in as a support agent and reads a demo customer.
    let mut alice = Browser::new();
    let a = alice.sign_in(&url, &op.issuer, "alice").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let console = alice.get(&format!("{url}/console")).await;
    assert_eq!(between(&console.body, "id=\"role\">", "<"), "support_agent");
    let (status, found) =
        alice.api(reqwest::Method::GET, &format!("{url}/v1/subjects?email=ada@example.com"), &[], None).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["ids"].as_array().map(Vec::len), Some(1), "{found}");
    // Bob's group maps to no role.
    let a = Browser::new().sign_in(&url, &op.issuer, "bob").await;
    assert_eq!(a.status, 403, "{}", a.body);
}

/// The staff console's first job (issue 23 §1): a support agent finds a customer under a
/// purpose they choose, sees the record as their role may (masked fields marked), corrects a
/// field and opens break-glass with a reason — each through the vault's operations, logged
/// exactly as the API calls are, under the person's pseudonym.
#[tokio::test]
async fn a_support_agent_serves_a_customer_in_the_console() {
    let secret = "test-client-secret-c0501e";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let url = server.url.clone();
    let id = ada_with_a_phone(&server, &install).await;

    // Not signed in: the console's pages say so and show nothing.
    let mut stranger = Browser::new();
    let a = stranger.get(&format!("{url}/console/customers/{id}?purpose=customer_support")).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(!a.body.contains("Lovelace"));

    let mut alice = Browser::new();
    assert_eq!(alice.sign_in(&url, &op.issuer, "alice").await.status, 200);
    let form = alice.get(&format!("{url}/console/customers")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("value=\"customer_support\""), "{}", form.body);
    assert!(!form.body.contains("value=\"marketing\""), "only the role's purposes are offered");
    let csrf = between(&form.body, "name=\"csrf\" value=\"", "\"").to_string();

    // Find by e-mail under customer_support: the record opens; its address holds no value.
    let found = alice
        .post_form(
            &format!("{url}/console/customers/find"),
            &[("csrf", &csrf), ("purpose", "customer_support"), ("field", "email"), ("value", "ada@example.com")],
        )
        .await;
    assert_eq!(found.status, 303, "{}", found.body);
    let record = found.location.unwrap();
    assert_eq!(record, format!("/console/customers/{id}?purpose=customer_support"));
    let page = alice.get(&format!("{url}{record}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Ada Lovelace") && page.body.contains("customer_support"), "{}", page.body);
    let phone_row = between(&page.body, "data-field=\"phone\">", "</tr>").to_string();
    assert!(phone_row.contains("masked") && !phone_row.contains("2079460000"), "{phone_row}");
    assert!(!page.body.contains("id=\"break-glass\""));

    // Refusals: a purpose the role does not act under, a form without the session's token,
    // a lookup value the field cannot hold.
    let a = alice
        .post_form(
            &format!("{url}/console/customers/find"),
            &[("csrf", &csrf), ("purpose", "marketing"), ("field", "email"), ("value", "ada@example.com")],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(!a.body.contains(&id));
    let a = alice
        .post_form(
            &format!("{url}/console/customers/find"),
            &[("csrf", "forged"), ("purpose", "customer_support"), ("field", "email"), ("value", "ada@example.com")],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("csrf_token_required"), "{}", a.body);
    let a = alice.get(&format!("{url}/console/customers/{id}?purpose=marketing")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(!a.body.contains("Lovelace"));

    // Correct the name; the page says so and shows the new value.
    let a = alice
        .post_form(
            &format!("{url}/console/customers/{id}/correct"),
            &[("csrf", &csrf), ("purpose", "customer_support"), ("field", "full_name"), ("value", "Ada King")],
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let page = alice.get(&format!("{url}{}", a.location.unwrap())).await;
    assert!(page.body.contains("id=\"done\"") && page.body.contains("Ada King"), "{}", page.body);
    // A field customer_support may not write, and a correction without the session's token:
    // refused, nothing changed.
    let correct = format!("{url}/console/customers/{id}/correct");
    let a = alice
        .post_form(
            &correct,
            &[("csrf", &csrf), ("purpose", "customer_support"), ("field", "date_of_birth"), ("value", "1815-12-10")],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = alice
        .post_form(&correct, &[("purpose", "customer_support"), ("field", "full_name"), ("value", "Mallory")])
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let page = alice.get(&format!("{url}/console/customers/{id}?purpose=customer_support")).await;
    assert!(page.body.contains("Ada King") && !page.body.contains("Mallory"), "{}", page.body);

    // Break-glass: refused without a proper reason, then open with one; the banner shows until when.
    let a = alice
        .post_form(
            &format!("{url}/console/customers/{id}/break-glass"),
            &[("csrf", &csrf), ("purpose", "customer_support"), ("reason", "urgent")],
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = alice
        .post_form(
            &format!("{url}/console/customers/{id}/break-glass"),
            &[
                ("csrf", &csrf),
                ("purpose", "customer_support"),
                ("reason", "The customer is on the phone and the courier needs the full number to deliver today"),
            ],
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let page = alice.get(&format!("{url}{}", a.location.unwrap())).await;
    assert!(page.body.contains("id=\"break-glass\""), "{}", page.body);
    let phone_row = between(&page.body, "data-field=\"phone\">", "</tr>").to_string();
    assert!(phone_row.contains("+442079460000") && phone_row.contains("in full"), "{phone_row}");
    assert!(!page.body.contains("Open break-glass"), "no second override while one is open");

    // An event the catalog lets customer_support record: a purchase, with what happened. An
    // empty note, or a type the purpose may not record, is refused and stores nothing.
    assert!(page.body.contains("<option value=\"purchase\">") && !page.body.contains("page_view"));
    let events = format!("{url}/console/customers/{id}/events");
    let note = "Customer called: parcel arrived damaged, replacement sent";
    let a = alice
        .post_form(
            &events,
            &[("csrf", &csrf), ("purpose", "customer_support"), ("event_type", "purchase"), ("note", " ")],
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = alice
        .post_form(
            &events,
            &[("csrf", &csrf), ("purpose", "customer_support"), ("event_type", "page_view"), ("note", note)],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = alice
        .post_form(
            &events,
            &[("csrf", &csrf), ("purpose", "customer_support"), ("event_type", "purchase"), ("note", note)],
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let page = alice.get(&format!("{url}{}", a.location.unwrap())).await;
    assert!(page.body.contains("The event is recorded and logged."), "{}", page.body);
    let listed = server
        .client(&install.token("support_agent"), Some("customer_support"))
        .get(&format!("/v1/subjects/{id}/events"))
        .await;
    assert_eq!(listed.body["events"].as_array().map(Vec::len), Some(1), "{:?}", listed.body);
    assert_eq!(listed.body["events"][0]["data"]["note"], note);

    // Every step is in the log under Alice's pseudonym and role, as the API's calls would be.
    let entries = log_entries(&server, &install.admin_token).await;
    let by_alice = |action: &str, decision: Option<&str>| {
        entries.iter().any(|e| {
            e["action"] == action
                && e["actor"]["role"] == "support_agent"
                && e["actor"]["token"].as_str().is_some_and(|t| t.starts_with("staff:stf_"))
                && decision.is_none_or(|d| e["decision"] == d)
        })
    };
    assert!(by_alice("subject.lookup", None), "{entries:#?}");
    assert!(by_alice("subject.read", Some("masked")));
    assert!(by_alice("subject.read", Some("break_glass")));
    assert!(by_alice("subject.correct", None));
    assert!(by_alice("break_glass.open", Some("break_glass")));
    assert!(by_alice("event.append", None));
    assert!(by_alice("event.append", Some("denied")), "the page_view attempt is a logged refusal");
    assert!(by_alice("access.denied", None), "the marketing read is a logged refusal");
    let text = serde_json::to_string(&entries).unwrap();
    assert!(
        !text.contains("Lovelace")
            && !text.contains("ada@example.com")
            && !text.contains("courier")
            && !text.contains("damaged")
    );
}

/// The console's request queue (issue 23 §2, first part): a privacy officer sees open requests
/// with their legal deadlines, overdue first, duplicates flagged, and closes one — logged as
/// the API's `request.list` and `request.close` under her pseudonym. A role that answers no
/// requests gets 403 there and no link to it.
#[tokio::test]
async fn a_privacy_officer_works_the_request_queue_in_the_console() {
    let secret = "test-client-secret-9a7e44";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let url = server.url.clone();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ada = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let bob = backend.create(json!({"email": "bob@example.com", "full_name": "Bob Builder"})).await;
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let received = |days_ago: i64| {
        let t = std::time::SystemTime::now() - Duration::from_secs(days_ago as u64 * 86_400);
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        jiff::Timestamp::from_second(secs).unwrap().to_string()
    };
    let mut opened = Vec::new();
    for (subject, kind, days_ago) in [(&ada, "access", 2), (&bob, "erasure", 40), (&ada, "access", 1)] {
        let r = privacy
            .post("/v1/requests", json!({"subject_id": subject, "kind": kind, "received_at": received(days_ago)}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        opened.push(r.body["id"].as_str().unwrap().to_string());
    }

    let mut dora = Browser::new();
    assert_eq!(dora.sign_in(&url, &op.issuer, "dora").await.status, 200);
    let queue = dora.get(&format!("{url}/console/requests")).await;
    assert_eq!(queue.status, 200, "{}", queue.body);
    // Overdue first (Bob's erasure, received 40 days ago), marked; Ada's two access requests flagged.
    let rows: Vec<&str> = queue.body.split("<tr data-request=\"").skip(1).collect();
    assert_eq!(rows.len(), 3, "{}", queue.body);
    assert!(rows[0].starts_with(&opened[1]) && rows[0].contains("class=\"alert\"") && rows[0].contains("overdue by"));
    assert!(rows[1..].iter().all(|r| r.contains("duplicate") && r.contains("days left")), "{rows:#?}");
    assert!(queue.body.contains("href=\"/console/requests\""), "the menu links the queue for her role");
    let csrf = between(&queue.body, "name=\"csrf\" value=\"", "\"").to_string();

    // Close Bob's as completed: the queue shows the two left.
    let closed = dora
        .post_form(&format!("{url}/console/requests/{}/close", opened[1]), &[("csrf", &csrf), ("status", "completed")])
        .await;
    assert_eq!(closed.status, 303, "{}", closed.body);
    let queue = dora.get(&format!("{url}{}", closed.location.unwrap())).await;
    assert!(queue.body.contains("id=\"done\"") && !queue.body.contains(&opened[1]), "{}", queue.body);
    // Without the session's token, or with a status that is not one: refused.
    let a = dora.post_form(&format!("{url}/console/requests/{}/close", opened[0]), &[("status", "completed")]).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = dora
        .post_form(&format!("{url}/console/requests/{}/close", opened[0]), &[("csrf", &csrf), ("status", "lost")])
        .await;
    assert_eq!(a.status, 422, "{}", a.body);

    // Ada's first access request, from its own page: assigned to Dora, its clock stopped for
    // proof of identity and restarted, the access report and the export downloaded, then
    // refused without a reason (422) and with one.
    let page = format!("{url}/console/requests/{}", opened[0]);
    let detail = dora.get(&page).await;
    assert_eq!(detail.status, 200, "{}", detail.body);
    assert!(detail.body.contains("id=\"assignee\">nobody<") && detail.body.contains(&ada), "{}", detail.body);
    let update = format!("{page}/update");
    let a = dora.post_form(&update, &[("csrf", &csrf), ("assignee", "me")]).await;
    assert_eq!(
        (a.status, a.location.as_deref()),
        (303, Some(format!("/console/requests/{}?done=assigned", opened[0]).as_str()))
    );
    let detail = dora.get(&page).await;
    assert!(detail.body.contains("id=\"assignee\">you<") && detail.body.contains("Release it"), "{}", detail.body);
    let a = dora.post_form(&update, &[("csrf", &csrf), ("identity", "requested")]).await;
    assert_eq!(a.status, 303, "{}", a.body);
    let queue = dora.get(&format!("{url}/console/requests")).await;
    let row = queue.body.split(&format!("<tr data-request=\"{}\"", opened[0])).nth(1).unwrap();
    let row = row.split("</tr>").next().unwrap();
    assert!(row.contains("waiting-for-identity") && row.contains("clock stopped") && row.contains(">you<"), "{row}");
    let a = dora.post_form(&update, &[("csrf", &csrf), ("identity", "proven")]).await;
    assert_eq!(a.status, 303, "{}", a.body);
    let a = dora.post_form(&update, &[("identity", "proven")]).await;
    assert_eq!(a.status, 403, "a form without the session's token is refused");
    let report = dora.get(&format!("{page}/report")).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let report: Value = serde_json::from_str(&report.body).unwrap();
    let email = report["fields"].as_array().unwrap().iter().find(|f| f["field"] == "email").unwrap();
    assert_eq!(email["value"], "ada@example.com", "{report:#}");
    let export = dora.get(&format!("{page}/export?format=json")).await;
    assert_eq!(export.status, 200);
    assert!(export.body.contains("Ada Lovelace"));
    let a = dora.get(&format!("{page}/export?format=pdf")).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let close = format!("{page}/close");
    let a = dora.post_form(&close, &[("csrf", &csrf), ("status", "rejected")]).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("a refusal must give its reason"), "{}", a.body);
    let a = dora.post_form(&close, &[("csrf", &csrf), ("status", "rejected"), ("reason", "excessive")]).await;
    assert_eq!(a.status, 303, "{}", a.body);
    let detail = dora.get(&page).await;
    assert!(detail.body.contains("id=\"closed\">rejected on") && detail.body.contains("excessive:"), "{}", detail.body);
    assert!(!detail.body.contains("/update\""), "a closed request offers no forms");

    // Bob's erasure, from his record under privacy_requests: refused without the typed
    // confirmation, then done, with the signed certificate shown; his record is gone.
    let record = dora.get(&format!("{url}/console/customers/{bob}?purpose=privacy_requests")).await;
    assert_eq!(record.status, 200, "{}", record.body);
    assert!(record.body.contains("Erase this customer"), "{}", record.body);
    let erase = format!("{url}/console/customers/{bob}/erase");
    let a = dora.post_form(&erase, &[("csrf", &csrf), ("purpose", "privacy_requests"), ("confirm", "yes")]).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("confirmation_required"));
    let a = dora.post_form(&erase, &[("csrf", &csrf), ("purpose", "privacy_requests"), ("confirm", "erase")]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("id=\"certificate\"") && a.body.contains("signature"), "{}", a.body);
    let gone = dora.get(&format!("{url}/console/customers/{bob}?purpose=privacy_requests")).await;
    assert!(matches!(gone.status, 404 | 410) && !gone.body.contains("Builder"), "{}", gone.body);

    // A support agent answers no requests: 403 there, and no link to it.
    let mut alice = Browser::new();
    assert_eq!(alice.sign_in(&url, &op.issuer, "alice").await.status, 200);
    let a = alice.get(&format!("{url}/console/requests")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(!a.body.contains(&ada) && !a.body.contains("href=\"/console/requests\""), "{}", a.body);
    let find = alice.get(&format!("{url}/console/customers")).await;
    assert!(!find.body.contains("href=\"/console/requests\"") && !find.body.contains("href=\"/console/log\""));
    // Nor does she audit: the log view is refused (and the refusal logged, as the API's is).
    let a = alice.get(&format!("{url}/console/log")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(!a.body.contains(&bob));

    let entries = log_entries(&server, &install.admin_token).await;
    let by_dora = |action: &str| logged_by_staff(&entries, "privacy_team", action);
    for action in [
        "request.list",
        "request.read",
        "request.update",
        "request.close",
        "subject.report",
        "subject.export",
        "subject.erase",
    ] {
        assert!(by_dora(action), "{action}: {entries:#?}");
    }

    // Dora's role audits (audit = true): the log view, filtered to her own pseudonym, shows
    // her erasure; filtered by customer, the entries about Bob; the checkpoint is shown.
    let pseudonym = entries
        .iter()
        .find(|e| e["action"] == "subject.erase")
        .and_then(|e| e["actor"]["token"].as_str())
        .unwrap()
        .trim_start_matches("staff:")
        .to_string();
    let log = dora.get(&format!("{url}/console/log?actor={pseudonym}&action=subject.erase")).await;
    assert_eq!(log.status, 200, "{}", log.body);
    let rows: Vec<&str> = log.body.split("<tr data-index=").skip(1).collect();
    assert_eq!(rows.len(), 1, "{}", log.body);
    assert!(rows[0].contains("subject.erase") && rows[0].contains(&bob), "{}", rows[0]);
    assert!(log.body.contains("id=\"checkpoint\"") && log.body.contains("href=\"/console/log\""));
    let about_bob = dora.get(&format!("{url}/console/log?customer={bob}")).await;
    let rows: Vec<&str> = about_bob.body.split("<tr data-index=").skip(1).collect();
    assert!(rows.len() >= 3 && rows.iter().all(|r| r.contains(&bob)), "{}", about_bob.body);
    // Alice (support_agent, no `erase`) is offered no erasure, and a forged form is refused.
    let record = alice.get(&format!("{url}/console/customers/{ada}?purpose=customer_support")).await;
    assert!(record.status == 200 && !record.body.contains("Erase this customer"), "{}", record.body);
    let csrf = between(&record.body, "name=\"csrf\" value=\"", "\"").to_string();
    let a = alice
        .post_form(
            &format!("{url}/console/customers/{ada}/erase"),
            &[("csrf", &csrf), ("purpose", "customer_support"), ("confirm", "erase")],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
}

/// The console's pages as people's browsers get them (tests/browser/pages.mjs, Debian's
/// Chromium): without JavaScript, nothing fetched from another host, one h1, the skip link
/// first, no sideways scrolling, and no axe finding at all, at desktop and phone
/// widths; screenshots in target/screenshots.
#[tokio::test]
async fn the_console_pages_pass_axe_without_script_at_both_widths() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ready = Path::new("/usr/bin/chromium").exists() && browser_dir.join("node_modules/axe-core").is_dir();
    if !ready {
        assert!(
            std::env::var_os("CANDOR_BROWSER_TESTS").is_none(),
            "CANDOR_BROWSER_TESTS is set but Chromium or tests/browser/node_modules is missing"
        );
        eprintln!("SKIPPED: the console page checks need /usr/bin/chromium and `npm ci --prefix tests/browser`");
        return;
    }
    let secret = "test-client-secret-77ad02";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let url = server.url.clone();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = privacy.post("/v1/requests", json!({"subject_id": id, "kind": "access"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let request = format!("/console/requests/{}", r.body["id"].as_str().unwrap());
    let r = privacy.post("/v1/requests", json!({"subject_id": id, "kind": "erasure"})).await;
    let erasure = format!("/console/requests/{}", r.body["id"].as_str().unwrap());
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let record = format!("/console/customers/{id}?purpose=customer_support");
    for (login, pages) in [
        ("alice", vec!["/console", "/console/customers", record.as_str()]),
        (
            "dora",
            vec![
                "/console/requests",
                request.as_str(),
                erasure.as_str(),
                "/console/log",
                "/console/log?action=request.open&since=2026-01-01",
                "/console/accountability?verify=1",
                "/console/sharing",
                "/console/incidents?assess=1&countries_from=shipping_address",
            ],
        ),
    ] {
        let mut person = Browser::new();
        assert_eq!(person.sign_in(&url, &op.issuer, login).await.status, 200);
        let cookie = format!("candor_staff={}", person.cookie("candor_staff").unwrap());
        let (url, shots, pages2) =
            (url.clone(), shots.clone(), pages.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        let dir = browser_dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("node")
                .arg(dir.join("pages.mjs"))
                .args([url.as_str(), shots.to_str().unwrap()])
                .args(&pages2)
                .env("CANDOR_PAGES_COOKIE", &cookie)
                .output()
                .expect("run node")
        })
        .await
        .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "console page checks failed for {login}:\n{stdout}\n{stderr}");
        for page in pages {
            assert!(stdout.contains(&format!("{page} (phone)")), "{page} checked: {stdout}");
        }
    }
}

/// Kills a child process when dropped (a failed assertion must not leave a server running).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn services_call_the_api_with_the_providers_access_tokens() {
    let secret = "test-client-secret-7d30ae";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let admin = install.admin_token.clone();
    let message = |r: &common::Resp| r.body["error"]["message"].as_str().unwrap_or("").to_string();

    // A client credentials token for Candor's API: the service acts as shop_backend
    // ([staff.clients] maps its `roles` value vault-writer), logged as client:backend-service.
    let jwt = op.client_token(secret, "https://candor.test/api").await;
    let service = server.client(&jwt, Some("account"));
    let id = service.create(json!({"email": "grace@example.com", "full_name": "Grace Hopper"})).await;
    let r = service.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let entries = log_entries(&server, &admin).await;
    let created = entries.iter().find(|e| e["action"] == "subject.create").expect("the create is logged");
    assert_eq!(created["actor"], json!({"token": "client:backend-service", "role": "shop_backend"}));
    assert!(entries.iter().any(|e| e["action"] == "subject.read" && e["actor"]["token"] == "client:backend-service"));

    // Candor's own tokens keep working beside them.
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.status, 200);

    // A token the provider issued for another service's API: wrong audience.
    let other = op.client_token(secret, "https://other.test/api").await;
    let r = server.client(&other, Some("account")).get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{:?}", r.body);
    assert!(message(&r).contains("audience"), "{:?}", r.body);

    // Signed with the provider's own key but naming another issuer.
    let r = server.client(&op.forged_token("issuer").await, Some("account")).get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{:?}", r.body);
    assert!(message(&r).contains("another issuer"), "{:?}", r.body);

    // Signed with another key under the provider's key id.
    let r = server.client(&op.forged_token("key").await, Some("account")).get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{:?}", r.body);
    assert!(message(&r).contains("signature is not the identity provider's"), "{:?}", r.body);

    // Unsigned (`alg: none`), and HMAC-"signed" (as with the client secret): refused by algorithm.
    let r = server.client(&op.forged_token("none").await, Some("account")).get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{:?}", r.body);
    assert!(message(&r).contains("signed with `none`"), "{:?}", r.body);
    let payload = jwt.split('.').nth(1).unwrap();
    let hs256 = format!("eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.{payload}.c2lnbmF0dXJl");
    let r = server.client(&hs256, Some("account")).get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{:?}", r.body);
    assert!(message(&r).contains("signed with `HS256`"), "{:?}", r.body);

    // A changed claim under the provider's signature.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(payload).unwrap()).unwrap();
    claims["client_id"] = json!("admin-tool");
    let parts: Vec<&str> = jwt.split('.').collect();
    let changed = format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    let r = server.client(&changed, Some("account")).get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (401, "invalid_token"), "{:?}", r.body);

    // The provider rotates its keys: a token under its new key id is accepted once Candor's
    // cached keys may be fetched again (at most every 10 s, on Candor's clock, moved here).
    let r = reqwest::get(format!("{}/__test/rotate", op.issuer)).await.unwrap();
    assert_eq!(r.status(), 200);
    install.advance_clock(Duration::from_secs(11));
    let r = server.client(&op.forged_token("rotated").await, Some("account")).get(&format!("/v1/subjects/{id}")).await;
    assert_eq!(r.status, 200, "a key the provider now publishes: {:?}", r.body);

    // Nothing refused was logged as an access, and no token reached the server log.
    let entries = log_entries(&server, &admin).await;
    assert!(!entries.iter().any(|e| e["actor"]["token"].as_str().is_some_and(|t| t.contains("admin-tool"))));
    let server_log = std::fs::read_to_string(&server.log_path).unwrap();
    assert!(!server_log.contains(payload), "no token in the server log");

    // Past `exp` (300 s) and the 30 s leeway on Candor's clock: expired.
    install.advance_clock(Duration::from_secs(331));
    let r = service.get(&format!("/v1/subjects/{id}")).await;
    assert_eq!((r.status, r.code()), (401, "token_expired"), "{:?}", r.body);
    assert_eq!(backend.get(&format!("/v1/subjects/{id}")).await.status, 200, "Candor tokens are unaffected");
}

#[tokio::test]
async fn stronger_powers_need_a_recent_multi_factor_sign_in() {
    let secret = "test-client-secret-c4e81f";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let mut config = std::fs::read_to_string(install.config()).unwrap();
    config.push_str(
        "\n[staff.require_mfa]\npowers = [\"break_glass\", \"erase\"]\nmax_age_minutes = 10\nacr = [\"urn:candor:test:mfa\"]\n",
    );
    std::fs::write(install.config(), config).unwrap();
    let server = install.serve();
    let candor_url = server.url.clone();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let id = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let glass = format!("{candor_url}/v1/subjects/{id}/break-glass");
    let reason = json!({"reason": "Caller locked out after a SIM swap, verifying identity"});

    // Alice signs in with her password only (amr [pwd]): reading works, break-glass does not.
    let mut alice = Browser::new();
    let a = alice.sign_in(&candor_url, &op.issuer, "alice").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let console = alice.get(&format!("{candor_url}/console")).await;
    let csrf = between(&console.body, "id=\"csrf\">", "<").to_string();
    let (status, body) = alice.api(reqwest::Method::GET, &format!("{candor_url}/v1/subjects/{id}"), &[], None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        alice.api(reqwest::Method::POST, &glass, &[("Candor-CSRF", &csrf)], Some(reason.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("reauthentication_required")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("break_glass") && message.contains("10 minutes"), "{message}");
    assert!(message.contains("/console/sign-in?reauth=1"), "the message links to re-authentication: {message}");
    let entries = log_entries(&server, &install.admin_token).await;
    assert!(!entries.iter().any(|e| e["action"] == "override.open"), "nothing was opened");
    let refused =
        entries.iter().find(|e| e["detail"] == "reauthentication_required:break_glass").expect("the refusal is logged");
    assert_eq!((refused["action"].as_str(), refused["decision"].as_str()), (Some("access.denied"), Some("denied")));
    assert!(refused["actor"]["token"].as_str().unwrap().starts_with("staff:stf_"), "{refused}");
    assert_eq!(refused["subjects"], json!([id]), "logged against the customer, as every refusal is");
    // The console's break-glass form is held to the same rule (no second way round it).
    let a = alice
        .post_form(
            &format!("{candor_url}/console/customers/{id}/break-glass"),
            &[
                ("csrf", &csrf),
                ("purpose", "customer_support"),
                ("reason", "Caller locked out after a SIM swap, verifying identity"),
            ],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("reauthentication_required") && a.body.contains("/console/sign-in?reauth=1"), "{}", a.body);
    let entries = log_entries(&server, &install.admin_token).await;
    assert_eq!(entries.iter().filter(|e| e["detail"] == "reauthentication_required:break_glass").count(), 2);
    assert!(!entries.iter().any(|e| e["action"] == "break_glass.open"), "nothing was opened");
    let password_only = alice.cookie("candor_staff").unwrap().clone();

    // The link asks the provider for a fresh sign-in with the multi-factor class; the provider
    // steps up (amr [pwd, otp, mfa]) and the new session may break the glass.
    alice.start = "/console/sign-in?reauth=1".into();
    let asked = std::sync::Mutex::new(String::new());
    let a = alice
        .sign_in_with(
            &candor_url,
            &op.issuer,
            "alice",
            |u| {
                *asked.lock().unwrap() = u.clone();
                u
            },
            |u| u,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let asked = asked.into_inner().unwrap();
    assert!(
        asked.contains("prompt=login")
            && asked.contains("max_age=0")
            && asked.contains("acr_values=urn%3Acandor%3Atest%3Amfa"),
        "{asked}"
    );
    let console = alice.get(&format!("{candor_url}/console")).await;
    let csrf = between(&console.body, "id=\"csrf\">", "<").to_string();
    let (status, body) =
        alice.api(reqwest::Method::POST, &glass, &[("Candor-CSRF", &csrf)], Some(reason.clone())).await;
    assert_eq!(status, 201, "{body}");

    // Eleven minutes later (the session is still live: 15 minutes idle) the sign-in is too old
    // for break-glass, though not for reading.
    install.advance_clock(Duration::from_secs(11 * 60));
    let (status, body) =
        alice.api(reqwest::Method::POST, &glass, &[("Candor-CSRF", &csrf)], Some(reason.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("reauthentication_required")), "{body}");
    let (status, body) = alice.api(reqwest::Method::GET, &format!("{candor_url}/v1/subjects/{id}"), &[], None).await;
    assert_eq!(status, 200, "{body}");
    // Erasure is guarded the same way (before the role's own rights are even weighed).
    let (status, body) = alice
        .api(reqwest::Method::DELETE, &format!("{candor_url}/v1/subjects/{id}"), &[("Candor-CSRF", &csrf)], None)
        .await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("reauthentication_required")), "{body}");

    // A proof changed in the cookie finds no session (only the whole secret's hash is stored).
    let forged = password_only.replace(".p.", ".m.");
    assert_ne!(forged, password_only);
    let r = reqwest::Client::new()
        .get(format!("{candor_url}/v1/subjects/{id}"))
        .header("cookie", format!("candor_staff={forged}"))
        .header("Candor-Purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new()
        .get(format!("{candor_url}/v1/subjects/{id}"))
        .header("cookie", format!("candor_staff={password_only}"))
        .header("Candor-Purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the unchanged cookie still works");

    // Tokens are not sessions: a Candor token of the same role is not held to it.
    let support = server.client(&install.token("support_agent"), Some("customer_support"));
    let r = support.post(&format!("/v1/subjects/{id}/break-glass"), reason).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn a_support_agent_signs_in_in_chromium() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ready = Path::new("/usr/bin/chromium").exists() && browser_dir.join("node_modules/playwright-core").is_dir();
    if !ready {
        assert!(
            std::env::var_os("CANDOR_BROWSER_TESTS").is_none(),
            "CANDOR_BROWSER_TESTS is set but Chromium or tests/browser/node_modules is missing"
        );
        eprintln!(
            "SKIPPED: the staff sign-in browser test needs /usr/bin/chromium and `npm ci --prefix tests/browser`"
        );
        return;
    }
    let secret = "test-client-secret-0b77d2";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let id = ada_with_a_phone(&server, &install).await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    let (url, subject) = (server.url.clone(), id.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(browser_dir.join("staff.mjs"))
            .args([url.as_str(), subject.as_str(), shots.to_str().unwrap()])
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser checks failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("ok - after signing out the API refuses (401)"), "{stdout}");
    assert!(stdout.contains("ok - under break-glass the phone is shown in full"), "{stdout}");

    // The browser's reads and changes are logged under the person's pseudonym, with the role.
    let entries = log_entries(&server, &install.admin_token).await;
    for action in ["subject.read", "subject.lookup", "subject.correct", "break_glass.open"] {
        assert!(logged_by_staff(&entries, "support_agent", action), "{action}");
    }
}

/// Runs one of the browser stories in tests/browser (`node SCRIPT ARGS…`) and returns its
/// output, or `None` (with a loud SKIPPED) when Chromium or the npm packages are missing.
async fn browser_story(script: &str, args: Vec<String>) -> Option<String> {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ready = Path::new("/usr/bin/chromium").exists() && browser_dir.join("node_modules/playwright-core").is_dir();
    if !ready {
        assert!(
            std::env::var_os("CANDOR_BROWSER_TESTS").is_none(),
            "CANDOR_BROWSER_TESTS is set but Chromium or tests/browser/node_modules is missing"
        );
        eprintln!("SKIPPED: the browser story {script} needs /usr/bin/chromium and `npm ci --prefix tests/browser`");
        return None;
    }
    let script = browser_dir.join(script);
    let out =
        tokio::task::spawn_blocking(move || Command::new("node").arg(script).args(args).output().expect("run node"))
            .await
            .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser checks failed:\n{stdout}\n{stderr}");
    Some(stdout.into_owned())
}

fn screenshots() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots").to_string_lossy().into_owned()
}

#[tokio::test]
async fn a_privacy_officer_answers_requests_in_chromium() {
    let secret = "test-client-secret-5c31f0";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ada = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let bob = backend.create(json!({"email": "bob@example.com", "full_name": "Bob Builder"})).await;
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let days_ago = |days: i64| (jiff::Timestamp::now() - jiff::Span::new().hours(24 * days)).to_string();
    let mut opened = Vec::new();
    for (subject, kind, days) in [(&bob, "erasure", 40), (&ada, "access", 3), (&ada, "access", 1)] {
        let r = privacy
            .post("/v1/requests", json!({"subject_id": subject, "kind": kind, "received_at": days_ago(days)}))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        opened.push(r.body["id"].as_str().unwrap().to_string());
    }
    let mut args = vec![server.url.clone()];
    args.extend(opened.iter().cloned());
    args.push(screenshots());
    let Some(stdout) = browser_story("officer.mjs", args).await else { return };
    assert!(stdout.contains("ok - the overdue erasure comes first"), "{stdout}");
    assert!(stdout.contains("ok - the duplicate is refused"), "{stdout}");

    // What the browser did is what the API shows, and the log has each step under her pseudonym.
    let r = privacy.get(&format!("/v1/requests/{}", opened[0])).await;
    assert_eq!(r.body["status"], "completed", "{:?}", r.body);
    assert!(matches!(backend.get(&format!("/v1/subjects/{bob}")).await.status, 404 | 410), "Bob is erased");
    let r = privacy.get(&format!("/v1/requests/{}", opened[2])).await;
    assert_eq!((r.body["status"].as_str(), r.body["reason"].as_str()), (Some("rejected"), Some("excessive")));
    let entries = log_entries(&server, &install.admin_token).await;
    for action in ["request.list", "request.read", "request.update", "subject.erase", "subject.report", "request.close"]
    {
        assert!(logged_by_staff(&entries, "privacy_team", action), "{action}");
    }
}

#[tokio::test]
async fn an_auditor_filters_the_log_and_checks_it_in_chromium() {
    let secret = "test-client-secret-a0d17e";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let url = server.url.clone();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ada = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let bob = backend.create(json!({"email": "bob@example.com", "full_name": "Bob Builder"})).await;
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    for (subject, kind) in [(&ada, "access"), (&ada, "export"), (&bob, "access")] {
        let r = privacy.post("/v1/requests", json!({"subject_id": subject, "kind": kind})).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    let today = jiff::Timestamp::now().to_string()[..10].to_string();
    let args = vec![url.clone(), ada.clone(), today, screenshots()];
    let Some(stdout) = browser_story("auditor.mjs", args).await else { return };
    assert!(stdout.contains("ok - the whole log checks out"), "{stdout}");

    // An entry edited in the database: the same check, now, says so and names it.
    let db = install.dir.path().join("data/candor.db");
    let edited = Command::new("sqlite3")
        .arg(&db)
        .arg("UPDATE log_entries SET entry = CAST(REPLACE(CAST(entry AS TEXT), 'request.open', 'request.shut') AS BLOB) WHERE idx = (SELECT MIN(idx) FROM log_entries WHERE CAST(entry AS TEXT) LIKE '%request.open%')")
        .output()
        .expect("the sqlite3 tool is installed (scripts/test.sh installs it)");
    assert!(edited.status.success(), "{}", String::from_utf8_lossy(&edited.stderr));
    let mut dora = Browser::new();
    assert_eq!(dora.sign_in(&url, &op.issuer, "dora").await.status, 200);
    let page = dora.get(&format!("{url}/console/accountability?verify=1")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("The log does NOT check out.") && page.body.contains("do not match their stored hash"),
        "{}",
        page.body
    );
    // Dora audits but is not the admin: no tokens, no role mapping.
    assert!(!page.body.contains("id=\"tokens\"") && !page.body.contains("staff-roles"), "{}", page.body);

    // The admin (a person whose provider group maps to `admin`) also sees the tokens, by id
    // only, and who gets which role.
    let mut erin = Browser::new();
    assert_eq!(erin.sign_in(&url, &op.issuer, "erin").await.status, 200);
    let page = erin.get(&format!("{url}/console/accountability")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"tokens\"") && page.body.contains("support_agent"), "{}", page.body);
    assert!(!page.body.contains(&install.token("support_agent")), "never a token's secret");
    assert!(page.body.contains("provider group <code>it-admins</code> act as <strong>admin</strong>"), "{}", page.body);
    let entries = log_entries(&server, &install.admin_token).await;
    assert!(
        entries.iter().any(|e| e["action"] == "token.list"
            && e["actor"]["token"].as_str().is_some_and(|t| t.starts_with("staff:stf_")))
    );

    // A support agent neither audits nor administers: 403 there, no link to it, refusal logged.
    let mut alice = Browser::new();
    assert_eq!(alice.sign_in(&url, &op.issuer, "alice").await.status, 200);
    let a = alice.get(&format!("{url}/console/accountability?verify=1")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(!a.body.contains("href=\"/console/accountability\"") && !a.body.contains("kek v"), "{}", a.body);
    let entries = log_entries(&server, &install.admin_token).await;
    assert!(
        entries.iter().any(|e| e["action"] == "log.entries"
            && e["decision"] == "denied"
            && e["detail"] == "audit_not_allowed"
            && e["actor"]["role"] == "support_agent"),
        "{entries:#?}"
    );
}

#[tokio::test]
async fn a_privacy_officer_oversees_consent_and_sharing_in_the_console() {
    let secret = "test-client-secret-3e8b51";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let url = server.url.clone();
    let backend = server.client(&install.token("shop_backend"), Some("account"));
    let ada = backend.create(json!({"email": "ada@example.com", "full_name": "Ada Lovelace"})).await;
    let bob = backend.create(json!({"email": "bob@example.com", "full_name": "Bob Builder"})).await;
    let r = backend
        .post(
            &format!("/v1/subjects/{ada}/consents"),
            json!({"changes": [{"purpose": "marketing", "channel": "email", "action": "grant"}], "evidence": "sign-up form, checkbox"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24)).to_string();
    let r = backend
        .with_purpose("order_fulfilment")
        .post(
            "/v1/grants",
            json!({"recipient": "parcel_carrier", "subjects": [ada, bob], "fields": ["full_name"], "expires_at": expires}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let grant = r.body["id"].as_str().unwrap().to_string();
    // Bob is erased: the carrier, which received his name, gets a notice.
    let privacy = server.client(&install.token("privacy_team"), Some("privacy_requests"));
    let r = privacy.send(privacy.request(reqwest::Method::DELETE, &format!("/v1/subjects/{bob}"))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let mut dora = Browser::new();
    assert_eq!(dora.sign_in(&url, &op.issuer, "dora").await.status, 200);
    let page = dora.get(&format!("{url}/console/sharing")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let slot = between(&page.body, "<tr data-slot=\"marketing/email\">", "</tr>");
    assert!(slot.contains("<td>1</td><td>0</td><td>0</td>"), "one granted: {slot}");
    assert!(
        page.body.contains(&format!("<tr data-grant=\"{grant}\">")) && page.body.contains("Parcel"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(&ada), "counts and grants name no customer: {}", page.body);
    let notice = between(&page.body, "<tr data-notice=\"", "\"").to_string();
    assert!(!notice.is_empty() && page.body.contains(&bob), "the erasure notice names its customer id: {}", page.body);
    let csrf = between(&page.body, "name=\"csrf\" value=\"", "\"").to_string();

    // The notice sent again now, and the grant stopped; each as the API would log it.
    assert!(page.body.contains("Send again now"), "the carrier has no webhook here, so it stays undelivered");
    let a = dora.post_form(&format!("{url}/console/sharing/notices/{notice}/retry"), &[("csrf", &csrf)]).await;
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/console/sharing?done=retried")), "{}", a.body);
    let a = dora.post_form(&format!("{url}/console/sharing/grants/{grant}/stop"), &[("csrf", &csrf)]).await;
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/console/sharing?done=stopped")), "{}", a.body);
    let page = dora.get(&format!("{url}/console/sharing?done=stopped")).await;
    let row = between(&page.body, &format!("<tr data-grant=\"{grant}\">"), "</tr>");
    assert!(row.contains("revoked") && !row.contains("Stop"), "{row}");
    let a = dora.post_form(&format!("{url}/console/sharing/grants/{grant}/stop"), &[]).await;
    assert_eq!(a.status, 403, "a form without the session's token is refused");

    let entries = log_entries(&server, &install.admin_token).await;
    let by_dora = |action: &str| logged_by_staff(&entries, "privacy_team", action);
    for action in ["consent.counts", "grant.list", "recipient_notices.read", "recipient_notice.retry", "grant.revoke"] {
        assert!(by_dora(action), "{action}");
    }

    // A support agent answers no requests: 403 there, no link to it.
    let mut alice = Browser::new();
    assert_eq!(alice.sign_in(&url, &op.issuer, "alice").await.status, 200);
    let a = alice.get(&format!("{url}/console/sharing")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(!a.body.contains("href=\"/console/sharing\"") && !a.body.contains(&grant), "{}", a.body);
    let alice_csrf =
        between(&alice.get(&format!("{url}/console")).await.body, "name=\"csrf\" value=\"", "\"").to_string();
    for form in
        [format!("{url}/console/sharing/grants/{grant}/stop"), format!("{url}/console/sharing/notices/{notice}/retry")]
    {
        let a = alice.post_form(&form, &[("csrf", &alice_csrf)]).await;
        assert_eq!(a.status, 403, "{form}: {}", a.body);
    }
}

#[tokio::test]
async fn an_auditor_assesses_and_records_a_breach_in_the_console() {
    let secret = "test-client-secret-0f4c9a";
    let Some(op) = Provider::start(secret) else { return };
    let install = staff_install(&op.issuer, secret);
    let server = install.serve();
    let url = server.url.clone();
    let id = ada_with_a_phone(&server, &install).await;
    let r = server
        .client(&install.token("shop_backend"), Some("order_fulfilment"))
        .patch(
            &format!("/v1/subjects/{id}"),
            json!({"fields": {"shipping_address": {"street": "1 Main St", "city": "Leeds", "country": "GB"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Alice, a support agent, reads Ada in the console: the read is what the incident is about.
    let mut alice = Browser::new();
    assert_eq!(alice.sign_in(&url, &op.issuer, "alice").await.status, 200);
    let read = alice.get(&format!("{url}/console/customers/{id}?purpose=customer_support")).await;
    assert_eq!(read.status, 200, "{}", read.body);
    let entries = log_entries(&server, &install.admin_token).await;
    let alice_actor = entries
        .iter()
        .find(|e| e["action"] == "subject.read" && e["actor"]["role"] == "support_agent")
        .and_then(|e| e["actor"]["token"].as_str())
        .unwrap()
        .to_string();
    let pseudonym = alice_actor.trim_start_matches("staff:").to_string();
    // She may not assess, record or update: 403, no link, the refusal logged.
    let a = alice.get(&format!("{url}/console/incidents")).await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(!a.body.contains("href=\"/console/incidents\""));
    let alice_csrf = between(&read.body, "name=\"csrf\" value=\"", "\"").to_string();
    let a = alice
        .post_form(
            &format!("{url}/console/incidents/record"),
            &[
                ("csrf", &alice_csrf),
                ("nature", "A support agent's session was used from an unknown device"),
                ("consequences", "Contact details of one customer may have been seen"),
                ("measures", "The session was ended and the account's password reset"),
            ],
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = alice
        .post_form(&format!("{url}/console/incidents/breach-x/update"), &[("csrf", &alice_csrf), ("step", "closed")])
        .await;
    assert_eq!(a.status, 403, "{}", a.body);

    // Dora assesses what Alice's pseudonym could have exposed, with countries.
    let mut dora = Browser::new();
    assert_eq!(dora.sign_in(&url, &op.issuer, "dora").await.status, 200);
    let page = dora
        .get(&format!("{url}/console/incidents?assess=1&pseudonym={pseudonym}&countries_from=shipping_address"))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<strong>1</strong> customers"), "{}", page.body);
    let by_country = between(&page.body, "<table id=\"by-country\">", "</table>");
    assert!(by_country.contains("GB") && by_country.contains("<td>1</td>"), "{by_country}");
    assert!(!page.body.contains("Leeds") && !page.body.contains("ada@example.com"), "counts, never values");
    let a = dora.get(&format!("{url}/console/incidents?assess=1&pseudonym=alice")).await;
    assert_eq!(a.status, 400, "{}", a.body);

    // Recorded: the Art. 33 summary, the Art. 34 notice, Ada's notice code, the 72-hour clock.
    let csrf = between(&page.body, "name=\"csrf\" value=\"", "\"").to_string();
    let recorded = dora
        .post_form(
            &format!("{url}/console/incidents/record"),
            &[
                ("csrf", &csrf),
                ("pseudonym", &pseudonym),
                ("countries_from", "shipping_address"),
                ("nature", "A support agent's session was used from an unknown device"),
                ("consequences", "Contact details of one customer may have been seen"),
                ("measures", "The session was ended and the account's password reset"),
            ],
        )
        .await;
    assert_eq!(recorded.status, 200, "{}", recorded.body);
    assert!(recorded.body.contains("id=\"authority-summary\"") && recorded.body.contains("id=\"customer-notice\""));
    let codes = between(&recorded.body, "<pre class=\"certificate\" id=\"codes\" tabindex=\"0\">", "</pre>");
    assert!(codes.contains(&id), "{codes}");
    let list = dora.get(&format!("{url}/console/incidents")).await;
    let row = between(&list.body, "<tr data-breach=\"", "</tr>");
    assert!(row.contains("hours left to tell the authority") && row.contains("The authority is told"), "{row}");
    let breach = row.split('"').next().unwrap().to_string();
    let a = dora
        .post_form(&format!("{url}/console/incidents/{breach}/update"), &[("csrf", &csrf), ("step", "notified")])
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let list = dora.get(&format!("{url}/console/incidents?done=updated")).await;
    assert!(list.body.contains("authority notified"), "{}", list.body);

    let entries = log_entries(&server, &install.admin_token).await;
    let by_dora = |action: &str| logged_by_staff(&entries, "privacy_team", action);
    for action in ["breach.country", "breach.record", "breach.authority_notified"] {
        assert!(by_dora(action), "{action}: {entries:#?}");
    }
    assert!(
        entries.iter().any(|e| e["action"] == "log.entries"
            && e["decision"] == "denied"
            && e["actor"]["role"] == "support_agent")
    );
}
