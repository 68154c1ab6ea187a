//! The catalog as Cedar: one policy text per rule the catalog states, and the entities
//! (roles, purposes, fields, event types, categories) the policies are evaluated against.
//!
//! Every generated policy has an `@id` starting with `catalog.` and a `@reason` in plain
//! language, so an explanation can say which line of the catalog allowed or refused a use.

use candor_core::catalog::{ADMIN_ROLE, CUSTOMER_ROLE, Catalog, Category, FieldType, LegalBasis, Role};

/// Prefix of generated policy ids; operator policies may not use it.
pub const CATALOG_PREFIX: &str = "catalog.";
/// The forbid that refuses consent purposes without consent.
pub const CONSENT_POLICY: &str = "catalog.consent";
/// The forbid that refuses use of a restricted customer's data.
pub const RESTRICTION_POLICY: &str = "catalog.restriction";

pub(crate) fn uid(ty: &str, id: &str) -> String {
    // Catalog ids are identifiers (letters, digits, `_`), so they need no escaping.
    format!("Candor::{ty}::\"{id}\"")
}

fn set(ty: &str, ids: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let items: Vec<String> = ids.into_iter().map(|i| uid(ty, i.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

fn action(name: &str) -> String {
    uid("Action", name)
}

fn actions(names: &[&str]) -> String {
    let items: Vec<String> = names.iter().map(|n| action(n)).collect();
    format!("[{}]", items.join(", "))
}

/// Field types customers correct themselves in the privacy center (right to rectification).
const RECTIFIABLE: &str = "[\"text\", \"email\", \"phone\", \"date\", \"postal_address\"]";

/// The policies the catalog states, as Cedar source.
pub fn catalog_policies(catalog: &Catalog) -> String {
    let mut out = String::new();
    for role in &catalog.roles {
        role_policies(catalog, role, &mut out);
    }
    // The catalog's bounds: operator policies may narrow them, never widen them (a forbid wins).
    out.push_str(&format!(
        "@id(\"catalog.bounds.purposes\")\n\
         @reason(\"a role acts only under the purposes the catalog gives it\")\n\
         forbid(principal, action in {}, resource)\n\
         unless {{ principal.purposes.contains(resource) }};\n\n",
        actions(&["act", "erase", "export", "break_glass", "record_consent"])
    ));
    out.push_str(&format!(
        "@id(\"catalog.bounds.data\")\n\
         @reason(\"data is used only under its role's purposes, and only where the catalog declares it for that purpose (customers correct any of their own data)\")\n\
         forbid(principal, action in {}, resource)\n\
         unless {{ principal.purposes.contains(context.purpose) && (resource.purposes.contains(context.purpose) || \
         (principal == {} && action == {} && context.purpose.customer_requests && resource is Candor::Field && \
         {RECTIFIABLE}.contains(resource.type))) }};\n\n",
        actions(&["read", "read_masked", "write", "share"]),
        uid("Role", CUSTOMER_ROLE),
        action("write")
    ));
    power_bounds(catalog, &mut out);
    // Consent and restriction bound every use of the customer's data, powers included.
    let data =
        actions(&["act", "read", "read_masked", "write", "export", "share", "break_glass", "erase", "record_consent"]);
    out.push_str(&format!(
        "@id(\"{CONSENT_POLICY}\")\n\
         @reason(\"the purpose is based on consent, and this customer has not given it\")\n\
         forbid(principal, action in {data}, resource)\n\
         when {{ context.purpose.needs_consent && !context.consent_given }};\n\n"
    ));
    // Correcting restricted data stays possible (contested accuracy is a reason to restrict), and
    // so does erasing it (a right the restriction does not suspend).
    let uses = actions(&["act", "read", "read_masked", "export", "share", "break_glass"]);
    out.push_str(&format!(
        "@id(\"{RESTRICTION_POLICY}\")\n\
         @reason(\"processing of this customer's data is restricted: it is kept, and used only for legal obligations\")\n\
         forbid(principal, action in {uses}, resource)\n\
         when {{ context.restricted && context.purpose.legal_basis != \"{}\" }};\n\n",
        LegalBasis::LegalObligation.name()
    ));
    out.push_str(&format!(
        "@id(\"catalog.customer.requests\")\n\
         @reason(\"customers see, download and delete their own data in the privacy center, under a customer_requests purpose\")\n\
         permit(principal == {customer}, action in {}, resource)\n\
         when {{ resource.customer_requests }};\n\n\
         @id(\"catalog.customer.rectify\")\n\
         @reason(\"customers correct their own names, contact details, addresses and dates in the privacy center (right to rectification); other data through the privacy contact\")\n\
         permit(principal == {customer}, action == {}, resource is Candor::Field)\n\
         when {{ context.purpose.customer_requests && {}.contains(resource.type) }};\n\n",
        actions(&["act", "export", "erase"]),
        action("write"),
        RECTIFIABLE,
        customer = uid("Role", CUSTOMER_ROLE),
    ));
    out.push_str(&format!(
        "@id(\"catalog.admin\")\n\
         @reason(\"the built-in admin role manages the installation and may audit the whole log (it sees no personal data)\")\n\
         permit(principal == {}, action in {}, resource);\n",
        uid("Role", ADMIN_ROLE),
        actions(&["manage", "audit"])
    ));
    out
}

/// Each power beyond reading and writing is held only by the roles whose catalog entry grants it
/// (`share`, `break_glass`, `record_consent`, `erase`, `audit`; export only under
/// `customer_requests` purposes; managing only by admin): forbids, so that an operator's permit
/// can never hand a power to a role the catalog does not give it.
fn power_bounds(catalog: &Catalog, out: &mut String) {
    let holders = |has: fn(&Role) -> bool, builtin: &[&str]| {
        let mut ids: Vec<&str> = builtin.to_vec();
        ids.extend(catalog.roles.iter().filter(|r| has(r)).map(|r| r.id.as_str()));
        set("Role", ids)
    };
    let bounds: [(&str, String, &str); 6] = [
        (
            "share",
            holders(|r| r.share, &[]),
            "only roles the catalog declares `share = true` share data with recipients",
        ),
        (
            "break_glass",
            holders(|r| r.break_glass, &[]),
            "only roles the catalog declares `break_glass = true` open break-glass overrides",
        ),
        (
            "record_consent",
            holders(|r| r.record_consent, &[]),
            "only roles the catalog declares `record_consent = true` record a consent on a customer's behalf",
        ),
        (
            "erase",
            holders(|r| r.erase, &[CUSTOMER_ROLE]),
            "only roles the catalog declares `erase = true` (and the customer themself) erase a customer or lift a restriction",
        ),
        (
            "audit",
            holders(|r| r.audit, &[ADMIN_ROLE]),
            "only admin and roles declared `audit = true` read the whole log",
        ),
        ("manage", set("Role", [ADMIN_ROLE]), "only the built-in admin role manages the installation"),
    ];
    for (power, roles, reason) in bounds {
        // No holder at all: a plain forbid (an empty set literal does not validate).
        let unless = if roles == "[]" { String::new() } else { format!("\nunless {{ principal in {roles} }}") };
        out.push_str(&format!(
            "@id(\"catalog.bounds.{power}\")\n\
             @reason(\"{reason}\")\n\
             forbid(principal, action == {}, resource){unless};\n\n",
            action(power)
        ));
    }
    out.push_str(&format!(
        "@id(\"catalog.bounds.export\")\n\
         @reason(\"reports and exports of everything held are produced only under a customer_requests purpose\")\n\
         forbid(principal, action == {}, resource)\n\
         unless {{ resource.customer_requests }};\n\n",
        action("export")
    ));
}

fn role_policies(catalog: &Catalog, role: &Role, out: &mut String) {
    let id = role.id.as_str();
    let principal = uid("Role", id);
    let purposes = set("Purpose", role.purposes.iter().map(|p| p.as_str()));
    let names: Vec<&str> = role.purposes.iter().map(|p| p.as_str()).collect();
    let names = names.join(", ");
    out.push_str(&format!(
        "@id(\"catalog.role.{id}.purposes\")\n\
         @reason(\"the catalog lets role `{id}` act under: {names}\")\n\
         permit(principal == {principal}, action == {}, resource)\n\
         when {{ {purposes}.contains(resource) }};\n\n",
        action("act")
    ));
    out.push_str(&format!(
        "@id(\"catalog.role.{id}.data\")\n\
         @reason(\"under each of its purposes, role `{id}` uses the fields and event types the catalog declares for that purpose\")\n\
         permit(principal == {principal}, action in {}, resource)\n\
         when {{ {purposes}.contains(context.purpose) && resource.purposes.contains(context.purpose) }};\n\n",
        actions(&["read", "read_masked", "write"])
    ));
    let erasing: Vec<&str> = role
        .purposes
        .iter()
        .filter(|p| catalog.purpose(p.as_str()).is_some_and(|p| !p.needs_consent()))
        .map(|p| p.as_str())
        .collect();
    if role.record_consent && !erasing.is_empty() {
        out.push_str(&format!(
            "@id(\"catalog.role.{id}.record_consent\")\n\
             @reason(\"role `{id}` may record a consent the customer gave it (e.g. its own form), with evidence, on the customer's behalf\")\n\
             permit(principal == {principal}, action == {}, resource)\n\
             when {{ {}.contains(resource) }};\n\n",
            action("record_consent"),
            set("Purpose", &erasing)
        ));
    }
    if role.erase && !erasing.is_empty() {
        out.push_str(&format!(
            "@id(\"catalog.role.{id}.erase\")\n\
             @reason(\"role `{id}` may erase a customer or lift their restriction (catalog `erase = true`), under a purpose that is not consent-based\")\n\
             permit(principal == {principal}, action == {}, resource)\n\
             when {{ {}.contains(resource) }};\n\n",
            action("erase"),
            set("Purpose", &erasing)
        ));
    }
    let requests: Vec<&str> = role
        .purposes
        .iter()
        .filter(|p| catalog.purpose(p.as_str()).is_some_and(|p| p.customer_requests))
        .map(|p| p.as_str())
        .collect();
    if !requests.is_empty() {
        out.push_str(&format!(
            "@id(\"catalog.role.{id}.export\")\n\
             @reason(\"role `{id}` answers customers' access and portability requests\")\n\
             permit(principal == {principal}, action == {}, resource)\n\
             when {{ {}.contains(resource) }};\n\n",
            action("export"),
            set("Purpose", &requests)
        ));
    }
    if !role.mask.is_empty() {
        let masked: Vec<&str> = role.mask.iter().map(|f| f.as_str()).collect();
        out.push_str(&format!(
            "@id(\"catalog.role.{id}.mask\")\n\
             @reason(\"role `{id}` sees {} masked, unless it opened a break-glass override\")\n\
             forbid(principal == {principal}, action == {}, resource)\n\
             when {{ resource in {} }}\n\
             unless {{ context.break_glass }};\n\n",
            masked.join(", "),
            action("read"),
            set("Field", &masked)
        ));
    }
    if role.share {
        out.push_str(&format!(
            "@id(\"catalog.role.{id}.share\")\n\
             @reason(\"role `{id}` may share the data a purpose declares with recipients declared for it, through grants\")\n\
             permit(principal == {principal}, action == {}, resource)\n\
             when {{ {purposes}.contains(context.purpose) && resource.purposes.contains(context.purpose) }};\n\n",
            action("share")
        ));
    }
    if role.audit {
        out.push_str(&format!(
            "@id(\"catalog.role.{id}.audit\")\n\
             @reason(\"role `{id}` audits the whole log (catalog `audit = true`)\")\n\
             permit(principal == {principal}, action == {}, resource);\n\n",
            action("audit")
        ));
    }
    if role.break_glass {
        out.push_str(&format!(
            "@id(\"catalog.role.{id}.break_glass\")\n\
             @reason(\"role `{id}` may open a break-glass override, with a written reason\")\n\
             permit(principal == {principal}, action == {}, resource)\n\
             when {{ {purposes}.contains(resource) }};\n\n",
            action("break_glass")
        ));
    }
}

/// The entities, as Cedar's JSON entity format.
pub fn catalog_entities(catalog: &Catalog) -> String {
    use std::fmt::Write;
    let mut items: Vec<String> = Vec::new();
    let entity = |ty: &str, id: &str, attrs: String, parents: &[(&str, &str)]| {
        let parents: Vec<String> =
            parents.iter().map(|(t, i)| format!("{{\"type\":\"Candor::{t}\",\"id\":\"{i}\"}}")).collect();
        format!(
            "{{\"uid\":{{\"type\":\"Candor::{ty}\",\"id\":\"{id}\"}},\"attrs\":{{{attrs}}},\"parents\":[{}]}}",
            parents.join(",")
        )
    };
    let purpose_set = |ids: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from("[");
        for (i, p) in ids.enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{{\"__entity\":{{\"type\":\"Candor::Purpose\",\"id\":\"{p}\"}}}}");
        }
        s.push(']');
        s
    };
    items.push(entity("Role", ADMIN_ROLE, "\"purposes\":[]".to_string(), &[]));
    let requests = catalog.purposes.iter().filter(|p| p.customer_requests).map(|p| p.id.as_str());
    items.push(entity("Role", CUSTOMER_ROLE, format!("\"purposes\":{}", purpose_set(&mut requests.into_iter())), &[]));
    for r in &catalog.roles {
        let purposes = format!("\"purposes\":{}", purpose_set(&mut r.purposes.iter().map(|p| p.as_str())));
        items.push(entity("Role", r.id.as_str(), purposes, &[]));
    }
    for (name, _) in Category::ALL {
        items.push(entity("Category", name, String::new(), &[]));
    }
    for p in &catalog.purposes {
        items.push(entity(
            "Purpose",
            p.id.as_str(),
            format!(
                "\"legal_basis\":\"{}\",\"needs_consent\":{},\"customer_requests\":{}",
                p.legal_basis.name(),
                p.needs_consent(),
                p.customer_requests
            ),
            &[],
        ));
    }
    for f in &catalog.fields {
        let ty = FieldType::ALL.iter().find(|(_, t)| *t == f.field_type).map(|(n, _)| *n).unwrap_or("text");
        items.push(entity(
            "Field",
            f.name.as_str(),
            format!(
                "\"type\":\"{ty}\",\"category\":\"{}\",\"purposes\":{},\"maskable\":{}",
                f.category.name(),
                purpose_set(&mut f.purposes.iter().map(|p| p.as_str())),
                f.mask.is_some()
            ),
            &[("Category", f.category.name())],
        ));
    }
    for e in &catalog.events {
        items.push(entity(
            "Event",
            e.name.as_str(),
            format!(
                "\"category\":\"{}\",\"purposes\":{}",
                e.category.name(),
                purpose_set(&mut e.purposes.iter().map(|p| p.as_str()))
            ),
            &[("Category", e.category.name())],
        ));
    }
    items.push(entity("Installation", "this", String::new(), &[]));
    format!("[{}]", items.join(",\n"))
}
