use super::*;
use candor_core::catalog::EXAMPLE_CATALOG;

fn catalog() -> Catalog {
    Catalog::from_toml_str(EXAMPLE_CATALOG, "example").unwrap()
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(&catalog(), None).unwrap()
}

fn with_policies(text: &str) -> Result<PolicyEngine, PolicyErrors> {
    PolicyEngine::new(&catalog(), Some(OperatorPolicies { source_name: "policies.cedar", text }))
}

/// The outcome name of `name` for role/purpose in situation `s` ("denied" when refused as a whole).
fn outcome(e: &PolicyEngine, role: &str, purpose: &str, name: &str, s: Situation) -> String {
    let case = table::Case { line: 0, role: role.into(), purpose: purpose.into(), situation: s, expected: vec![] };
    table::actual(e, &case, name).unwrap()
}

const N: Situation = Situation::NEUTRAL;

#[test]
fn roles_get_their_purposes_fields_in_full_masked_or_withheld() {
    let e = engine();
    assert_eq!(outcome(&e, "shop_backend", "account", "email", N), "full");
    assert_eq!(outcome(&e, "shop_backend", "account", "phone", N), "withheld");
    assert_eq!(outcome(&e, "support_agent", "customer_support", "full_name", N), "full");
    assert_eq!(outcome(&e, "support_agent", "customer_support", "phone", N), "masked");
    assert_eq!(outcome(&e, "support_agent", "customer_support", "email", N), "masked");
    assert_eq!(outcome(&e, "support_agent", "customer_support", "shipping_address", N), "withheld");
    assert_eq!(outcome(&e, "support_agent", "customer_support", "purchase", N), "full");
    assert_eq!(outcome(&e, "support_agent", "customer_support", "page_view", N), "withheld");
    assert_eq!(outcome(&e, "fraud_service", "fraud_prevention", "shipping_address", N), "masked");
    assert_eq!(outcome(&e, "support_agent", "account", "email", N), "denied");
}

#[test]
fn break_glass_unmasks_but_reveals_nothing_outside_the_purpose() {
    let e = engine();
    let bg = Situation { break_glass: true, ..N };
    assert_eq!(outcome(&e, "support_agent", "customer_support", "phone", bg), "full");
    assert_eq!(outcome(&e, "support_agent", "customer_support", "shipping_address", bg), "withheld");
    let open =
        |role: &str, purpose: &str| e.decide(role, Action::BreakGlass, purpose, Target::Purpose, N).unwrap().allowed;
    assert!(open("support_agent", "customer_support"));
    assert!(!open("fraud_service", "fraud_prevention"), "fraud_service has no break_glass in the catalog");
    assert!(!open("support_agent", "account"));
}

#[test]
fn consent_and_restriction_refuse_with_their_own_policy() {
    let e = engine();
    let no_consent = Situation { consent_given: false, ..N };
    let d = e.decide("marketing_tool", Action::Act, "marketing", Target::Purpose, no_consent).unwrap();
    assert!(d.refused_by(CONSENT_POLICY), "{d:?}");
    assert_eq!(outcome(&e, "marketing_tool", "marketing", "email", N), "full");
    assert_eq!(outcome(&e, "marketing_tool", "marketing", "email", no_consent), "denied");
    // Consent only matters for consent purposes.
    assert_eq!(outcome(&e, "shop_backend", "account", "email", no_consent), "full");

    let restricted = Situation { restricted: true, ..N };
    let d = e.decide("shop_backend", Action::Act, "account", Target::Purpose, restricted).unwrap();
    assert!(d.refused_by(RESTRICTION_POLICY), "{d:?}");
    assert_eq!(outcome(&e, "shop_backend", "legal_accounting", "full_name", restricted), "full");
}

#[test]
fn erase_export_and_manage_follow_the_catalog() {
    let e = engine();
    let may = |role: &str, action: Action, purpose: &str| {
        e.decide(role, action, purpose, Target::Purpose, N).unwrap().allowed
    };
    // Erasure is a power of its own (`erase = true`): the privacy team has it, the shop does not.
    assert!(may("privacy_team", Action::Erase, "privacy_requests"));
    assert!(may(CUSTOMER_ROLE, Action::Erase, "privacy_requests"), "customers delete their own account");
    for (role, purpose) in [
        ("shop_backend", "account"),
        ("support_agent", "customer_support"),
        ("fraud_service", "fraud_prevention"),
        ("marketing_tool", "marketing"),
        ("analytics_service", "analytics"),
    ] {
        assert!(!may(role, Action::Erase, purpose), "{role} may not erase");
    }
    // Recording a consent grant on the customer's behalf: only `record_consent = true`.
    assert!(may("shop_backend", Action::RecordConsent, "account"));
    for (role, purpose) in [
        ("support_agent", "customer_support"),
        ("fraud_service", "fraud_prevention"),
        ("privacy_team", "privacy_requests"),
        ("marketing_tool", "marketing"),
    ] {
        assert!(!may(role, Action::RecordConsent, purpose), "{role} may not record consent");
    }
    // Reading the whole log: admin and `audit = true`.
    assert!(e.may_audit(ADMIN_ROLE) && e.may_audit("privacy_team"));
    for role in ["shop_backend", "support_agent", "fraud_service", "marketing_tool", CUSTOMER_ROLE, "nobody"] {
        assert!(!e.may_audit(role), "{role} may not audit");
    }
    assert!(may("privacy_team", Action::Export, "privacy_requests"));
    assert!(!may("shop_backend", Action::Export, "account"));
    assert!(!may("support_agent", Action::Share, "customer_support"), "nothing is shared without a grant");
    let share = |role: &str, purpose: &str, field: &str| {
        e.decide(role, Action::Share, purpose, Target::Field(field), N).unwrap().allowed
    };
    assert!(share("shop_backend", "order_fulfilment", "shipping_address"), "roles with share = true");
    assert!(!share("shop_backend", "order_fulfilment", "date_of_birth"), "only data the purpose declares");
    assert!(!share("support_agent", "customer_support", "full_name"), "roles without share = true");
    assert!(e.may_manage(ADMIN_ROLE));
    assert!(!e.may_manage("shop_backend"));
    assert!(!e.may_manage("nobody"));
    for p in &catalog().purposes {
        assert!(!e.decide(ADMIN_ROLE, Action::Act, p.id.as_str(), Target::Purpose, N).unwrap().allowed);
    }
}

#[test]
fn unknown_names_are_errors_not_refusals() {
    let e = engine();
    assert_eq!(e.outcomes("ghost", "account", N).unwrap_err(), Unknown::Role("ghost".into()));
    assert_eq!(e.outcomes("shop_backend", "resale", N).unwrap_err(), Unknown::Purpose("resale".into()));
    assert!(e.explain("shop_backend", "account", "shoe_size", N).is_err());
}

#[test]
fn operator_policies_narrow_further_and_explanations_name_them() {
    let e = with_policies(
        "// Support staff do not need loyalty balances.\n\
         @id(\"no_loyalty_for_support\")\n\
         @reason(\"support does not handle loyalty points\")\n\
         forbid(principal == Candor::Role::\"support_agent\", action in [Candor::Action::\"read\", Candor::Action::\"read_masked\"], resource == Candor::Field::\"loyalty_points\");\n\
         \n\
         forbid(principal, action, resource in Candor::Category::\"demographic\") when { context.break_glass };\n",
    )
    .unwrap();
    assert_eq!(e.operator_policy_count(), 2);
    assert_eq!(outcome(&e, "support_agent", "customer_support", "loyalty_points", N), "withheld");
    assert_eq!(outcome(&e, "shop_backend", "account", "loyalty_points", N), "full");
    let x = e.explain("support_agent", "customer_support", "loyalty_points", N).unwrap();
    let text = x.to_string();
    assert!(text.starts_with("decision: withheld"), "{text}");
    assert!(
        text.contains("forbidden by no_loyalty_for_support (policies.cedar:2): support does not handle loyalty points"),
        "{text}"
    );
    let x = e.explain("support_agent", "customer_support", "phone", N).unwrap().to_string();
    assert!(x.contains("decision: masked (last 2 digits)"), "{x}");
    assert!(x.contains("forbidden by catalog.role.support_agent.mask (the catalog)"), "{x}");
    // The unnamed policy is named after its line.
    let bg = Situation { break_glass: true, ..N };
    let d = e.decide("shop_backend", Action::Read, "account", Target::Field("date_of_birth"), bg).unwrap();
    assert_eq!(d.forbid().unwrap().id, "policies.cedar:6");
}

#[test]
fn operator_permits_cannot_widen_the_catalog() {
    let e = with_policies(
        "permit(principal, action, resource);\n\
         permit(principal == Candor::Role::\"support_agent\", action == Candor::Action::\"read\", resource == Candor::Field::\"phone\");\n",
    )
    .unwrap();
    assert_eq!(outcome(&e, "support_agent", "customer_support", "phone", N), "masked", "the mask forbid wins");
    assert_eq!(outcome(&e, "support_agent", "customer_support", "shipping_address", N), "withheld");
    assert_eq!(outcome(&e, "support_agent", "account", "email", N), "denied");
    let d = e.decide("support_agent", Action::Act, "account", Target::Purpose, N).unwrap();
    assert_eq!(d.forbid().unwrap().id, "catalog.bounds.purposes");
    let no_consent = Situation { consent_given: false, ..N };
    assert_eq!(outcome(&e, "marketing_tool", "marketing", "email", no_consent), "denied");
}

#[test]
fn a_policy_file_with_a_syntax_error_is_refused_with_its_line() {
    let err =
        with_policies("permit(principal, action, resource);\n\nforbid(principal action, resource);\n").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("policies.cedar:3:"), "{text}");
}

#[test]
fn a_policy_that_does_not_fit_the_schema_or_catalog_is_refused() {
    let err = with_policies(
        "permit(principal, action == Candor::Action::\"read\", resource)\n  when { resource.colour == \"red\" };\n",
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("policies.cedar:"), "{err}");
    assert!(err.to_string().contains("colour"), "{err}");

    let err = with_policies("forbid(principal == Candor::Role::\"suport_agent\", action, resource);").unwrap_err();
    assert!(err.to_string().contains("role `suport_agent` is not declared"), "{err}");

    let err = with_policies("@id(\"catalog.mine\")\npermit(principal, action, resource);").unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");

    let err = with_policies(
        "@id(\"a\")\nforbid(principal, action, resource);\n@id(\"a\")\nforbid(principal, action, resource);",
    )
    .unwrap_err();
    assert!(err.to_string().contains("policies.cedar:3:1: policy id `a` is used twice"), "{err}");
}

#[test]
fn decision_tables_report_mismatches_with_their_line() {
    let e = engine();
    let cases = table::parse(
        "role,purpose,consent,break_glass,email,phone,purchase\n\
         support_agent,customer_support,,,masked,masked,full\n\
         support_agent,customer_support,,yes,full,full,\n\
         marketing_tool,marketing,no,,denied,,\n\
         shop_backend,account,,,full,full,\n",
    )
    .unwrap();
    let (checked, mismatches) = table::run(&e, &cases).unwrap();
    assert_eq!(checked, 8);
    assert_eq!(mismatches.len(), 1);
    assert_eq!(
        (mismatches[0].line, mismatches[0].name.as_str(), mismatches[0].actual.as_str()),
        (5, "phone", "withheld")
    );

    let errs = table::parse("role,purpose,email\nshop_backend,account,visible\n").unwrap_err();
    assert!(errs[0].starts_with("line 2:"), "{errs:?}");
    assert!(table::parse("purpose,email\n").is_err());
    let cases = table::parse("role,purpose,shoe_size\nshop_backend,account,full\n").unwrap();
    assert!(table::run(&e, &cases).unwrap_err().contains("shoe_size"));
}

#[test]
fn decisions_are_cached_and_the_same_twice() {
    let e = engine();
    let a = e.outcomes("support_agent", "customer_support", N).unwrap();
    let b = e.outcomes("support_agent", "customer_support", N).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
}

#[test]
fn a_signed_in_customer_sees_downloads_corrects_and_deletes_only_under_customer_requests() {
    let e = engine();
    let may = |action: Action, purpose: &str| e.decide(CUSTOMER_ROLE, action, purpose, Target::Purpose, N).unwrap();
    for action in [Action::Act, Action::Export, Action::Erase] {
        assert!(may(action, "privacy_requests").allowed, "{action:?}");
        assert!(!may(action, "account").allowed, "{action:?} under account");
        assert!(!may(action, "marketing").allowed, "{action:?} under marketing");
    }
    assert!(!may(Action::BreakGlass, "privacy_requests").allowed);
    assert!(!may(Action::Share, "privacy_requests").allowed);
    assert!(!e.may_manage(CUSTOMER_ROLE));
    // Rectification: any of their own fields, though no field is declared for the purpose.
    let write = |field: &str, purpose: &str| {
        e.decide(CUSTOMER_ROLE, Action::Write, purpose, Target::Field(field), N).unwrap().allowed
    };
    assert!(write("phone", "privacy_requests"));
    assert!(write("date_of_birth", "privacy_requests"));
    assert!(write("shipping_address", "privacy_requests"));
    assert!(!write("phone", "account"));
    assert!(!write("loyalty_points", "privacy_requests"), "numbers the business keeps are corrected on request");
    assert!(!write("shop_preferences", "privacy_requests"));
    let event = e.decide(CUSTOMER_ROLE, Action::Write, "privacy_requests", Target::Event("purchase"), N).unwrap();
    assert!(!event.allowed, "events are not corrected by the customer");
    // Other roles under the same purpose gain nothing from the customer's exception.
    let staff = e.decide("privacy_team", Action::Write, "privacy_requests", Target::Field("phone"), N).unwrap();
    assert!(!staff.allowed);
    // A customer cannot read field by field (the privacy center reads through the export).
    assert_eq!(outcome(&e, CUSTOMER_ROLE, "privacy_requests", "email", N), "withheld");
}

#[test]
fn operator_policies_can_narrow_what_customers_do() {
    let e = with_policies(
        "@id(\"no-self-erase\")\n@reason(\"erasure goes through support\")\n\
         forbid(principal == Candor::Role::\"customer\", action == Candor::Action::\"erase\", resource);",
    )
    .unwrap();
    let d = e.decide(CUSTOMER_ROLE, Action::Erase, "privacy_requests", Target::Purpose, N).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.operator_forbid().map(|p| p.id.as_str()), Some("no-self-erase"));
}

mod operator_policies_only_narrow {
    use super::*;
    use proptest::prelude::*;

    const ROLES: [&str; 7] = [
        "shop_backend",
        "privacy_team",
        "support_agent",
        "fraud_service",
        "marketing_tool",
        "analytics_service",
        "customer",
    ];
    const ACTIONS: [Action; 10] = [
        Action::Act,
        Action::Read,
        Action::ReadMasked,
        Action::Write,
        Action::Erase,
        Action::Export,
        Action::BreakGlass,
        Action::Share,
        Action::RecordConsent,
        Action::Manage,
    ];

    /// The neutral situation and each fact that narrows or widens on its own.
    fn situations() -> [Situation; 4] {
        [
            N,
            Situation { consent_given: false, ..N },
            Situation { restricted: true, ..N },
            Situation { break_glass: true, ..N },
        ]
    }

    /// One operator permit: some role (or any), some action (or several), any resource.
    fn permit() -> impl Strategy<Value = String> {
        let names =
            ["act", "read", "read_masked", "write", "erase", "export", "break_glass", "share", "record_consent"];
        (prop::option::of(0..ROLES.len()), prop::collection::vec(0..names.len(), 1..4), prop::bool::ANY).prop_map(
            move |(role, actions, when_restricted)| {
                let principal =
                    role.map_or("principal".to_string(), |r| format!("principal == Candor::Role::\"{}\"", ROLES[r]));
                let list: Vec<String> = actions.iter().map(|a| format!("Candor::Action::\"{}\"", names[*a])).collect();
                let condition =
                    if when_restricted { " when { context.restricted || !context.consent_given }" } else { "" };
                format!("permit({principal}, action in [{}], resource){condition};", list.join(", "))
            },
        )
    }

    /// An operator permit of an installation power (audit, manage) to some role or to all.
    fn installation_permit() -> impl Strategy<Value = String> {
        (prop::option::of(0..ROLES.len()), prop::bool::ANY).prop_map(|(role, audit)| {
            let principal =
                role.map_or("principal".to_string(), |r| format!("principal == Candor::Role::\"{}\"", ROLES[r]));
            let action = if audit { "audit" } else { "manage" };
            format!("permit({principal}, action == Candor::Action::\"{action}\", resource);")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
        /// For random sets of operator permits, no decision is allowed that the catalog alone refuses.
        #[test]
        fn no_operator_permit_allows_what_the_catalog_refuses(
            mut permits in prop::collection::vec(permit(), 1..5),
            installation in prop::collection::vec(installation_permit(), 0..3),
        ) {
            permits.extend(installation);
            let text: String = permits.iter().enumerate()
                .map(|(i, p)| format!("@id(\"op{i}\")\n{p}\n"))
                .collect();
            let widened = with_policies(&text).expect("valid operator policies");
            let base = engine();
            let c = catalog();
            // Purpose-level powers on the purpose; data actions on a masked field, a field of
            // another purpose, a special-looking one and an event type.
            let purpose_level = [Action::Act, Action::Erase, Action::Export, Action::BreakGlass, Action::RecordConsent];
            let data_targets = [Target::Field("email"), Target::Field("phone"), Target::Field("date_of_birth"), Target::Event("page_view")];
            for role in ROLES {
                prop_assert!(!widened.may_audit(role) || base.may_audit(role), "audit widened for {}", role);
                prop_assert!(!widened.may_manage(role) || base.may_manage(role), "manage widened for {}", role);
                for purpose in c.purposes.iter().map(|p| p.id.as_str()) {
                    for action in ACTIONS {
                        let targets: &[Target<'_>] =
                            if purpose_level.contains(&action) { &[Target::Purpose] } else { &data_targets };
                        for target in targets {
                            for s in situations() {
                                let after = widened.decide(role, action, purpose, *target, s).unwrap().allowed;
                                if after {
                                    let before = base.decide(role, action, purpose, *target, s).unwrap().allowed;
                                    prop_assert!(before, "{} {:?} {} {:?} {:?} widened by {}", role, action, purpose, target, s, text);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
