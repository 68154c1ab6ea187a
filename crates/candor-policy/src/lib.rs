//! Candor's access decisions, evaluated by Cedar.
//!
//! The catalog compiles to Cedar policies and entities ([`generate`]); an operator may add
//! policies of their own in a file, validated against Candor's schema when the engine is built
//! ([`operator`]). Decisions depend only on the role, the action, the purpose, the field or
//! event type and three facts about the customer (consent given, restricted, break-glass open),
//! so each distinct question is evaluated by Cedar once and then answered from a cache.
//!
//! Cedar's semantics apply: nothing is allowed unless a policy permits it, and any forbid that
//! applies wins. An evaluation error counts as a refusal (fail closed).
#![forbid(unsafe_code)]

pub mod generate;
mod operator;
pub mod table;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use candor_core::catalog::{ADMIN_ROLE, CUSTOMER_ROLE, Catalog};
use candor_core::mask::MaskStyle;
use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, EntityUid, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};

pub use generate::{CATALOG_PREFIX, CONSENT_POLICY, RESTRICTION_POLICY};
pub use operator::{OperatorPolicies, PolicyError, PolicyErrors};

const SCHEMA: &str = include_str!("schema.cedarschema");

/// What a principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Act under a purpose at all.
    Act,
    Read,
    ReadMasked,
    Write,
    Erase,
    Export,
    BreakGlass,
    Share,
    RecordConsent,
    Manage,
    Audit,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Act => "act",
            Action::Read => "read",
            Action::ReadMasked => "read_masked",
            Action::Write => "write",
            Action::Erase => "erase",
            Action::Export => "export",
            Action::BreakGlass => "break_glass",
            Action::Share => "share",
            Action::RecordConsent => "record_consent",
            Action::Manage => "manage",
            Action::Audit => "audit",
        }
    }
}

/// What is known about the customer a request concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Situation {
    /// The customer has active consent for the (consent-based) purpose.
    pub consent_given: bool,
    /// Processing of the customer's data is restricted.
    pub restricted: bool,
    /// The caller opened a break-glass override for this customer.
    pub break_glass: bool,
}

impl Situation {
    /// Before a customer is known: as if consent were given and nothing were restricted (the
    /// customer-specific facts are checked again once the customer is loaded).
    pub const NEUTRAL: Situation = Situation { consent_given: true, restricted: false, break_glass: false };
}

/// What an action applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The declared purpose itself (for act, erase, export, break-glass, record consent).
    Purpose,
    Field(&'a str),
    Event(&'a str),
}

/// Where a policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Catalog,
    File { name: String, line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Catalog => f.write_str("the catalog"),
            Origin::File { name, line } => write!(f, "{name}:{line}"),
        }
    }
}

/// A policy as explanations show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub id: String,
    pub forbid: bool,
    /// The `@reason` annotation, if any.
    pub reason: Option<String>,
    pub origin: Origin,
}

/// Cedar's answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The policies that decided: the permits that allowed, or the forbids that refused (empty
    /// when nothing permitted).
    pub determining: Vec<Arc<PolicyInfo>>,
    /// Evaluation errors (each refuses: fail closed).
    pub errors: Vec<String>,
}

impl Decision {
    /// Whether a forbid with this id refused.
    pub fn refused_by(&self, id: &str) -> bool {
        !self.allowed && self.determining.iter().any(|p| p.forbid && p.id == id)
    }

    /// The first forbid from the operator's file that refused, if one did.
    pub fn operator_forbid(&self) -> Option<&PolicyInfo> {
        self.determining.iter().find(|p| p.forbid && p.origin != Origin::Catalog).map(|p| p.as_ref())
    }

    /// The first forbid that refused, if one did.
    pub fn forbid(&self) -> Option<&PolicyInfo> {
        self.determining.iter().find(|p| p.forbid).map(|p| p.as_ref())
    }
}

/// How one field reaches the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Full,
    Masked(MaskStyle),
    Withheld,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Full => "full",
            Outcome::Masked(_) => "masked",
            Outcome::Withheld => "withheld",
        }
    }
}

/// Every field's and event type's outcome for one role, purpose and situation, in catalog order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcomes {
    /// Whether the role may act under the purpose at all in this situation.
    pub act: Arc<Decision>,
    pub fields: Vec<Outcome>,
    pub events: Vec<Outcome>,
}

/// A name the catalog does not declare.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unknown {
    #[error("role `{0}` is not declared in the catalog")]
    Role(String),
    #[error("purpose `{0}` is not declared in the catalog")]
    Purpose(String),
    #[error("field or event type `{0}` is not declared in the catalog")]
    Resource(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ResourceKey {
    Purpose,
    Field(u16),
    Event(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    role: u16,
    action: Action,
    purpose: u16,
    resource: ResourceKey,
    situation: Situation,
}

/// The policy engine of one catalog (plus operator policies).
pub struct PolicyEngine {
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
    schema: Schema,
    info: HashMap<String, Arc<PolicyInfo>>,
    roles: HashMap<String, u16>,
    purposes: Vec<String>,
    fields: Vec<(String, Option<MaskStyle>)>,
    events: Vec<String>,
    decisions: RwLock<HashMap<Key, Arc<Decision>>>,
    outcomes: RwLock<HashMap<(u16, u16, Situation), Arc<Outcomes>>>,
    operator_count: usize,
}

impl fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyEngine").field("policies", &self.info.len()).finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Compiles `catalog` and adds the operator's policies, validated against the schema.
    pub fn new(catalog: &Catalog, operator: Option<OperatorPolicies<'_>>) -> Result<Self, PolicyErrors> {
        let (schema, _) = Schema::from_cedarschema_str(SCHEMA).expect("the built-in schema is valid");
        let generated = generate::catalog_policies(catalog);
        let mut policies = PolicySet::from_str(&generated).expect("generated policies parse");
        let mut info = HashMap::new();
        let mut renamed = PolicySet::new();
        for p in policies.policies() {
            let id = p.annotation("id").expect("generated policies have ids").to_string();
            let reason = p.annotation("reason").map(str::to_string);
            let forbid = p.effect() == Effect::Forbid;
            info.insert(id.clone(), Arc::new(PolicyInfo { id: id.clone(), forbid, reason, origin: Origin::Catalog }));
            renamed.add(p.new_id(cedar_policy::PolicyId::new(id))).expect("generated ids are unique");
        }
        policies = renamed;
        let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        assert!(
            result.validation_passed(),
            "generated policies must validate: {:?}",
            result.validation_errors().map(|e| e.to_string()).collect::<Vec<_>>()
        );
        let mut operator_count = 0;
        if let Some(op) = operator {
            let parsed = operator::parse(op, catalog, &schema)?;
            operator_count = parsed.len();
            for (policy, pinfo) in parsed {
                if info.contains_key(&pinfo.id) {
                    return Err(PolicyErrors::single(
                        op.source_name,
                        0,
                        format!("policy id `{}` is used twice", pinfo.id),
                    ));
                }
                info.insert(pinfo.id.clone(), Arc::new(pinfo));
                policies.add(policy).map_err(|e| PolicyErrors::single(op.source_name, 0, e.to_string()))?;
            }
        }
        let entities = Entities::from_json_str(&generate::catalog_entities(catalog), Some(&schema))
            .expect("catalog entities match the schema");
        let mut roles: HashMap<String, u16> =
            catalog.roles.iter().enumerate().map(|(i, r)| (r.id.to_string(), i as u16)).collect();
        roles.insert(ADMIN_ROLE.to_string(), u16::MAX);
        roles.insert(CUSTOMER_ROLE.to_string(), u16::MAX - 1);
        Ok(PolicyEngine {
            authorizer: Authorizer::new(),
            policies,
            entities,
            schema,
            info,
            roles,
            purposes: catalog.purposes.iter().map(|p| p.id.to_string()).collect(),
            fields: catalog.fields.iter().map(|f| (f.name.to_string(), f.mask)).collect(),
            events: catalog.events.iter().map(|e| e.name.to_string()).collect(),
            decisions: RwLock::new(HashMap::new()),
            outcomes: RwLock::new(HashMap::new()),
            operator_count,
        })
    }

    /// How many policies came from the operator's file.
    pub fn operator_policy_count(&self) -> usize {
        self.operator_count
    }

    /// Every policy in force, as Cedar source (the catalog's first).
    pub fn policy_text(&self) -> String {
        self.policies.to_string()
    }

    fn role_index(&self, role: &str) -> Result<u16, Unknown> {
        self.roles.get(role).copied().ok_or_else(|| Unknown::Role(role.to_string()))
    }

    fn purpose_index(&self, purpose: &str) -> Result<u16, Unknown> {
        self.purposes
            .iter()
            .position(|p| p == purpose)
            .map(|i| i as u16)
            .ok_or_else(|| Unknown::Purpose(purpose.to_string()))
    }

    fn resource_key(&self, target: Target<'_>) -> Result<ResourceKey, Unknown> {
        Ok(match target {
            Target::Purpose => ResourceKey::Purpose,
            Target::Field(name) => ResourceKey::Field(
                self.fields.iter().position(|(f, _)| f == name).ok_or_else(|| Unknown::Resource(name.to_string()))?
                    as u16,
            ),
            Target::Event(name) => ResourceKey::Event(
                self.events.iter().position(|e| e == name).ok_or_else(|| Unknown::Resource(name.to_string()))? as u16,
            ),
        })
    }

    /// May `role` do `action` on `target` under `purpose`, in `situation`?
    pub fn decide(
        &self,
        role: &str,
        action: Action,
        purpose: &str,
        target: Target<'_>,
        situation: Situation,
    ) -> Result<Arc<Decision>, Unknown> {
        Ok(self.cached(self.key(role, action, purpose, target, situation)?, role))
    }

    fn key(
        &self,
        role: &str,
        action: Action,
        purpose: &str,
        target: Target<'_>,
        situation: Situation,
    ) -> Result<Key, Unknown> {
        Ok(Key {
            role: self.role_index(role)?,
            action,
            purpose: self.purpose_index(purpose)?,
            resource: self.resource_key(target)?,
            situation,
        })
    }

    /// The same question as [`PolicyEngine::decide`], evaluated by Cedar without the cache (for
    /// benchmarks: what a first-time question costs).
    pub fn decide_uncached(
        &self,
        role: &str,
        action: Action,
        purpose: &str,
        target: Target<'_>,
        situation: Situation,
    ) -> Result<Decision, Unknown> {
        Ok(self.evaluate(self.key(role, action, purpose, target, situation)?, role))
    }

    /// May `role` manage the installation (tokens)?
    pub fn may_manage(&self, role: &str) -> bool {
        self.may_on_installation(role, Action::Manage)
    }

    /// May `role` read the whole log's entries (the catalog's `audit = true`, or admin)?
    pub fn may_audit(&self, role: &str) -> bool {
        self.may_on_installation(role, Action::Audit)
    }

    fn may_on_installation(&self, role: &str, action: Action) -> bool {
        let Ok(principal) = EntityUid::from_str(&generate::uid("Role", role)) else { return false };
        let request = Request::new(
            principal,
            action_uid(action),
            EntityUid::from_str(&generate::uid("Installation", "this")).expect("valid uid"),
            Context::empty(),
            Some(&self.schema),
        );
        request.is_ok_and(|r| {
            let response = self.authorizer.is_authorized(&r, &self.policies, &self.entities);
            response.decision() == CedarDecision::Allow && response.diagnostics().errors().next().is_none()
        })
    }

    fn cached(&self, key: Key, role: &str) -> Arc<Decision> {
        if let Some(d) = self.decisions.read().expect("decision cache lock").get(&key) {
            return d.clone();
        }
        let decision = Arc::new(self.evaluate(key, role));
        self.decisions.write().expect("decision cache lock").insert(key, decision.clone());
        decision
    }

    fn evaluate(&self, key: Key, role: &str) -> Decision {
        let purpose = &self.purposes[key.purpose as usize];
        let resource = match key.resource {
            ResourceKey::Purpose => generate::uid("Purpose", purpose),
            ResourceKey::Field(i) => generate::uid("Field", &self.fields[i as usize].0),
            ResourceKey::Event(i) => generate::uid("Event", &self.events[i as usize]),
        };
        let purpose_uid = EntityUid::from_str(&generate::uid("Purpose", purpose)).expect("valid uid");
        let s = key.situation;
        let context = Context::from_pairs([
            ("purpose".to_string(), RestrictedExpression::new_entity_uid(purpose_uid)),
            ("consent_given".to_string(), RestrictedExpression::new_bool(s.consent_given)),
            ("restricted".to_string(), RestrictedExpression::new_bool(s.restricted)),
            ("break_glass".to_string(), RestrictedExpression::new_bool(s.break_glass)),
        ])
        .expect("context pairs are distinct");
        let request = Request::new(
            EntityUid::from_str(&generate::uid("Role", role)).expect("valid uid"),
            action_uid(key.action),
            EntityUid::from_str(&resource).expect("valid uid"),
            context,
            Some(&self.schema),
        );
        let request = match request {
            Ok(r) => r,
            // The action does not apply to this kind of resource (reading a purpose): refused.
            Err(e) => return Decision { allowed: false, determining: Vec::new(), errors: vec![e.to_string()] },
        };
        let response = self.authorizer.is_authorized(&request, &self.policies, &self.entities);
        let errors: Vec<String> = response.diagnostics().errors().map(|e| e.to_string()).collect();
        let mut determining: Vec<Arc<PolicyInfo>> =
            response.diagnostics().reason().filter_map(|id| self.info.get(id.to_string().as_str()).cloned()).collect();
        determining.sort_by(|a, b| a.id.cmp(&b.id));
        Decision { allowed: response.decision() == CedarDecision::Allow && errors.is_empty(), determining, errors }
    }

    /// Every field's and event type's outcome for `role` under `purpose` in `situation`.
    pub fn outcomes(&self, role: &str, purpose: &str, situation: Situation) -> Result<Arc<Outcomes>, Unknown> {
        let key = (self.role_index(role)?, self.purpose_index(purpose)?, situation);
        if let Some(o) = self.outcomes.read().expect("outcome cache lock").get(&key) {
            return Ok(o.clone());
        }
        let act = self.decide(role, Action::Act, purpose, Target::Purpose, situation)?;
        let mut fields = Vec::with_capacity(self.fields.len());
        for (name, mask) in &self.fields {
            fields.push(self.field_outcome(role, purpose, name, *mask, situation, act.allowed)?);
        }
        let mut events = Vec::with_capacity(self.events.len());
        for name in &self.events {
            let read = act.allowed && self.decide(role, Action::Read, purpose, Target::Event(name), situation)?.allowed;
            events.push(if read { Outcome::Full } else { Outcome::Withheld });
        }
        let outcomes = Arc::new(Outcomes { act, fields, events });
        self.outcomes.write().expect("outcome cache lock").insert(key, outcomes.clone());
        Ok(outcomes)
    }

    fn field_outcome(
        &self,
        role: &str,
        purpose: &str,
        field: &str,
        mask: Option<MaskStyle>,
        situation: Situation,
        may_act: bool,
    ) -> Result<Outcome, Unknown> {
        if !may_act {
            return Ok(Outcome::Withheld);
        }
        if self.decide(role, Action::Read, purpose, Target::Field(field), situation)?.allowed {
            return Ok(Outcome::Full);
        }
        match mask {
            Some(style) if self.decide(role, Action::ReadMasked, purpose, Target::Field(field), situation)?.allowed => {
                Ok(Outcome::Masked(style))
            }
            _ => Ok(Outcome::Withheld),
        }
    }

    /// Why `role` gets what it gets of `field` under `purpose` in `situation`.
    pub fn explain(
        &self,
        role: &str,
        purpose: &str,
        field: &str,
        situation: Situation,
    ) -> Result<Explanation, Unknown> {
        let target = if self.fields.iter().any(|(f, _)| f == field) {
            Target::Field(field)
        } else if self.events.iter().any(|e| e == field) {
            Target::Event(field)
        } else {
            return Err(Unknown::Resource(field.to_string()));
        };
        let act = self.decide(role, Action::Act, purpose, Target::Purpose, situation)?;
        let read = self.decide(role, Action::Read, purpose, target, situation)?;
        let mask = self.fields.iter().find(|(f, _)| f == field).and_then(|(_, m)| *m);
        let read_masked = match target {
            Target::Field(_) => Some(self.decide(role, Action::ReadMasked, purpose, target, situation)?),
            _ => None,
        };
        let outcome = if !act.allowed {
            None
        } else if read.allowed {
            Some(Outcome::Full)
        } else {
            match (mask, &read_masked) {
                (Some(style), Some(d)) if d.allowed => Some(Outcome::Masked(style)),
                _ => Some(Outcome::Withheld),
            }
        };
        Ok(Explanation { act, read, read_masked, mask, outcome })
    }
}

fn action_uid(action: Action) -> EntityUid {
    EntityUid::from_str(&generate::uid("Action", action.name())).expect("valid uid")
}

/// The answer to "why does this role get this of that field?".
#[derive(Debug, Clone)]
pub struct Explanation {
    pub act: Arc<Decision>,
    pub read: Arc<Decision>,
    /// `None` for event types (they are never masked).
    pub read_masked: Option<Arc<Decision>>,
    /// How the field is masked when it is.
    pub mask: Option<MaskStyle>,
    /// `None`: the request is refused as a whole (the role may not act under the purpose here).
    pub outcome: Option<Outcome>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decision = match self.outcome {
            None => "denied (the request is refused)".to_string(),
            Some(Outcome::Masked(style)) => format!("masked ({})", style.plain()),
            Some(o) => o.name().to_string(),
        };
        writeln!(f, "decision: {decision}")?;
        explain_step(f, "act under the purpose", &self.act)?;
        if self.outcome.is_some() {
            explain_step(f, "read in full", &self.read)?;
            if let Some(m) = &self.read_masked
                && !self.read.allowed
            {
                if self.mask.is_none() {
                    writeln!(f, "  read masked: not possible: the field's type cannot be masked")?;
                } else {
                    explain_step(f, "read masked", m)?;
                }
            }
        }
        Ok(())
    }
}

fn explain_step(f: &mut fmt::Formatter<'_>, what: &str, d: &Decision) -> fmt::Result {
    let verdict = if d.allowed { "allowed" } else { "refused" };
    if d.determining.is_empty() {
        let why = if d.allowed { "" } else { "no policy permits it (Cedar denies by default)" };
        writeln!(f, "  {what}: {verdict}: {why}")?;
    } else {
        let by = if d.allowed { "permitted by" } else { "forbidden by" };
        writeln!(f, "  {what}: {verdict}")?;
        for p in &d.determining {
            let reason = p.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            writeln!(f, "    {by} {} ({}){reason}", p.id, p.origin)?;
        }
    }
    for e in &d.errors {
        writeln!(f, "    error (counts as a refusal): {e}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
