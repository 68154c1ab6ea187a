//! Microbenchmarks of the core operations, in process (criterion):
//!
//! * seal and open of a realistic 12-field customer record (AES-256-GCM per field, AAD bound to
//!   subject, field and key version), and the data-key unwrap that precedes an open;
//! * the blind index of an e-mail address;
//! * a policy decision (Cedar, uncached, and from the decision cache);
//! * a log append's in-memory work (entry bytes, leaf hash, the subtree hashes it completes);
//! * inclusion and consistency proofs over a 1,000,000- and a 10,000,000-entry tree held in
//!   memory (the stored-node algorithm without the database; `candor bench --log-entries`
//!   measures it over SQLite);
//! * checkpoint signing and verification (Ed25519 signed note).
//!
//! `cargo bench --bench micro` (add `-- --quick` for a fast pass). BENCHMARKS.md has the numbers.

use std::hint::black_box;

use candor_core::catalog::{Catalog, EXAMPLE_CATALOG};
use candor_core::{FieldName, SubjectId};
use candor_crypto::keyfile::{self, parse_keys};
use candor_crypto::{KeyRing, LOG_KEY_LABEL, LogSigner};
use candor_log::Hash;
use candor_log::entry::{Actor, ENTRY_VERSION, LogEntry};
use candor_log::merkle::{self, NodeSource, ProofError};
use candor_log::note::{Checkpoint, VerifierKey, sign_checkpoint};
use candor_policy::{Action, PolicyEngine, Situation, Target};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

/// A realistic profile: the 12 fields a shop keeps, JSON-encoded as the vault stores them.
const RECORD: [(&str, &str); 12] = [
    ("email", r#""ada.lovelace@example.com""#),
    ("full_name", r#""Ada Lovelace""#),
    ("phone", r#""+44 20 7946 0958""#),
    ("date_of_birth", r#""1815-12-10""#),
    ("postal_address", r#"{"street":"12 St James's Square","city":"London","postcode":"SW1Y 4JH","country":"GB"}"#),
    ("loyalty_points", "1842"),
    ("preferences", r#"{"newsletter":true,"language":"en-GB","sizes":["M","L"]}"#),
    ("company", r#""Analytical Engines Ltd""#),
    ("vat_number", r#""GB123456789""#),
    ("notes", r#""Prefers delivery after 6 pm; leave with the concierge.""#),
    ("gender", r#""female""#),
    ("marketing_segment", r#""frequent-buyer""#),
];

fn crypto(c: &mut Criterion) {
    let ring = KeyRing::generate_in_memory();
    let subject = SubjectId::random();
    let (key, stored) = ring.new_subject_key(subject).expect("key");
    let fields: Vec<(FieldName, &[u8])> = RECORD.iter().map(|(f, v)| (FieldName::new(*f), v.as_bytes())).collect();
    let sealed: Vec<_> = fields.iter().map(|(f, v)| key.seal_field(f, v).expect("seal")).collect();

    let mut group = c.benchmark_group("record");
    group.bench_function("seal 12 fields", |b| {
        b.iter(|| {
            for (f, v) in &fields {
                black_box(key.seal_field(f, v).expect("seal"));
            }
        })
    });
    group.bench_function("open 12 fields", |b| {
        b.iter(|| {
            for ((f, _), c) in fields.iter().zip(&sealed) {
                black_box(key.open_field(f, c).expect("open"));
            }
        })
    });
    group.bench_function("unwrap data key + open 12 fields", |b| {
        b.iter(|| {
            let key = ring.open_subject_key(subject, &stored).expect("unwrap");
            for ((f, _), c) in fields.iter().zip(&sealed) {
                black_box(key.open_field(f, c).expect("open"));
            }
        })
    });
    group.bench_function("new data key (random + wrap)", |b| {
        b.iter(|| black_box(ring.new_subject_key(SubjectId::random()).expect("key")))
    });
    group.finish();

    let email = FieldName::new("email");
    c.bench_function("blind index (e-mail)", |b| {
        b.iter(|| black_box(ring.blind_index(&email, black_box(b"ada.lovelace@example.com"))))
    });
}

fn policy(c: &mut Criterion) {
    let catalog = Catalog::from_toml_str(EXAMPLE_CATALOG, "example").expect("example catalog");
    let engine = PolicyEngine::new(&catalog, None).expect("policies compile");
    let situation = Situation { consent_given: false, restricted: false, break_glass: false };
    let phone = Target::Field("phone");
    let mut group = c.benchmark_group("policy decision");
    group.bench_function("Cedar, uncached", |b| {
        b.iter(|| {
            black_box(engine.decide_uncached("support_agent", Action::Read, "customer_support", phone, situation))
        })
    });
    group.bench_function("from the cache", |b| {
        b.iter(|| black_box(engine.decide("support_agent", Action::Read, "customer_support", phone, situation)))
    });
    group.finish();
}

/// Every complete subtree hash of a tree, level by level, in memory.
struct Levels(Vec<Vec<Hash>>);

impl Levels {
    fn build(size: u64) -> Self {
        let mut levels = vec![(0..size).map(|i| merkle::leaf_hash(&i.to_be_bytes())).collect::<Vec<Hash>>()];
        while levels.last().expect("a level").len() > 1 {
            let below = levels.last().expect("a level");
            let up = below.chunks_exact(2).map(|p| merkle::node_hash(&p[0], &p[1])).collect();
            levels.push(up);
        }
        Self(levels)
    }
}

impl NodeSource for Levels {
    fn node(&mut self, level: u32, index: u64) -> Result<Hash, ProofError> {
        self.0
            .get(level as usize)
            .and_then(|l| l.get(index as usize))
            .copied()
            .ok_or(ProofError::MissingNode { level, index })
    }
}

fn log(c: &mut Criterion) {
    let entry = LogEntry {
        v: ENTRY_VERSION,
        time: "2026-11-23T10:00:00.000Z".into(),
        action: "subject.read".into(),
        actor: Actor { token: "tok_4f1c2a9e".into(), role: "support_agent".into() },
        purpose: Some("customer_support".into()),
        subjects: vec![SubjectId::random().to_string()],
        fields: ["email", "full_name", "phone"].map(String::from).to_vec(),
        decision: Some("full".into()),
        detail: None,
    };
    for size in [1_000_000u64, 10_000_000] {
        let mut tree = Levels::build(size);
        let root = merkle::root(&mut tree, size).expect("root");
        let label = if size == 1_000_000 { "1M" } else { "10M" };
        let mut group = c.benchmark_group(format!("log at {label} entries"));
        // What an append computes besides the database writes: the entry's canonical bytes, its
        // leaf hash and the subtree hashes it completes (index 2^k - 1 is the worst case).
        let worst = (1u64 << (63 - size.leading_zeros())) - 1;
        group.bench_function("append (bytes + leaf hash + completed nodes, worst case)", |b| {
            b.iter(|| {
                let leaf = merkle::leaf_hash(&entry.to_bytes());
                black_box(merkle::completed_nodes(&mut tree, worst, leaf).expect("nodes"))
            })
        });
        let mut index = 0u64;
        group.bench_function("inclusion proof + verification", |b| {
            b.iter(|| {
                index = (index + 7_919) % size;
                let proof = merkle::inclusion_proof(&mut tree, index, size).expect("proof");
                let leaf = merkle::leaf_hash(&index.to_be_bytes());
                merkle::verify_inclusion(&leaf, index, size, &proof, &root).expect("verifies");
            })
        });
        let old = size / 3 + 1;
        let old_root = merkle::root(&mut tree, old).expect("root");
        group.bench_function("consistency proof + verification", |b| {
            b.iter(|| {
                let proof = merkle::consistency_proof(&mut tree, old, size).expect("proof");
                merkle::verify_consistency(old, size, &old_root, &root, &proof).expect("verifies");
            })
        });
        group.finish();
    }
}

fn checkpoint(c: &mut Criterion) {
    let line = keyfile::generate_key_line(LOG_KEY_LABEL, 1).expect("key");
    let signer = LogSigner::new(&parse_keys(&line, LOG_KEY_LABEL, "bench").expect("parse")).expect("signer");
    let key = VerifierKey::new("candor.example/log", signer.public_key());
    let checkpoint =
        Checkpoint { origin: "candor.example/log".into(), size: 10_000_000, root: [7u8; 32], map_root: None };
    let note = sign_checkpoint(&checkpoint, &key, |m| signer.sign(m));
    let mut group = c.benchmark_group("checkpoint");
    group.bench_function("sign", |b| {
        b.iter_batched(
            || checkpoint.clone(),
            |cp| black_box(sign_checkpoint(&cp, &key, |m| signer.sign(m))),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("verify", |b| b.iter(|| black_box(key.open(&note).expect("verifies"))));
    group.finish();
}

criterion_group!(benches, crypto, policy, log, checkpoint);
criterion_main!(benches);
