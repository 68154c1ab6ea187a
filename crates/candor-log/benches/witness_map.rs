//! Figures for BENCHMARKS.md (issue 25): the completeness map at scale, map proofs, and the CPU
//! side of a witness's cosigning. `cargo bench -p candor-log --bench witness_map [-- CUSTOMERS]`.
//! Prints medians of repeated runs; no HTTP, no disk (the witness's fsync is measured apart).

use std::time::{Duration, Instant};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use candor_log::map::{Map, MapKey};
use candor_log::merkle::{LeafSource, consistency_proof, leaf_hash, root};
use candor_log::note::{Checkpoint, VerifierKey, sign_checkpoint};
use candor_log::witness::{AddCheckpoint, CosignerKey, check_add_checkpoint, cosign, verify_cosigned};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The process's resident memory (Linux `/proc/self/statm`, 4 KiB pages).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    Some(statm.split_whitespace().nth(1)?.parse::<u64>().ok()? * 4096)
}

fn key(i: u64) -> MapKey {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &i.to_be_bytes()).as_ref().try_into().unwrap()
}

/// What a server does before its first checkpoint after a start: rebuild the map from every
/// entry (parse its subjects, the HMAC salt, the key, the trie), `entries` entries naming
/// `customers` customers. Reading the entries from the store is apart (BENCHMARKS.md).
fn rebuild(entries: u64, customers: u64) {
    use aws_lc_rs::hmac;
    let secret = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
    let bytes: Vec<Vec<u8>> = (0..entries)
        .map(|i| {
            format!(
                r#"{{"v":1,"time":"2026-12-03T10:00:00.000Z","action":"subject.read","actor":{{"token":"bench-token-{}","role":"support_agent"}},"purpose":"customer_support","subjects":["{:08x}-0000-4000-8000-{:012x}"],"fields":["email","phone"],"decision":"full"}}"#,
                i % 50,
                (i * 2_654_435_761) % customers,
                (i * 2_654_435_761) % customers
            )
            .into_bytes()
        })
        .collect();
    let t = Instant::now();
    let mut map = Map::new();
    for (i, e) in bytes.iter().enumerate() {
        let leaf = leaf_hash(e);
        for s in candor_log::map::entry_subjects(e) {
            let salt: [u8; 32] = hmac::sign(&secret, s.as_bytes()).as_ref().try_into().unwrap();
            map.append(candor_log::map::subject_key(&salt, &s), i as u64, &leaf);
        }
    }
    std::hint::black_box(map.root());
    let took = t.elapsed();
    println!(
        "map rebuild from {entries} entries naming {} customers (parse, salt, key, trie, root): {:.2?} ({:.0} entries/s)",
        map.len(),
        took,
        entries as f64 / took.as_secs_f64()
    );
}

fn main() {
    let customers: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    println!("completeness map, {customers} customers (one entry each)");
    let before = resident_bytes();
    let mut map = Map::new();
    let t = Instant::now();
    for i in 0..customers {
        map.append(key(i), i, &leaf_hash(&i.to_be_bytes()));
    }
    println!("  load: {:.2?}", t.elapsed());
    let t = Instant::now();
    std::hint::black_box(map.root());
    println!("  first root (every node hashed): {:.2?}", t.elapsed());
    if let (Some(a), Some(b)) = (before, resident_bytes()) {
        println!("  resident memory of the map: {:.0} MiB", (b.saturating_sub(a)) as f64 / (1024.0 * 1024.0));
    }
    // What a server keeps besides: the map as it was at each recent checkpoint, sharing all but
    // the paths changed since (here 16 checkpoints of 1,000 changes each).
    let before = resident_bytes();
    let mut kept = Vec::new();
    for r in 0..16u64 {
        for j in 0..1000u64 {
            map.append(key((j * 7919 + r * 13) % customers), customers + j, &leaf_hash(&j.to_be_bytes()));
        }
        std::hint::black_box(map.root());
        kept.push(map.clone());
    }
    if let (Some(a), Some(b)) = (before, resident_bytes()) {
        println!(
            "  16 kept checkpoint maps of 1,000 changes each: {:.0} MiB more",
            (b.saturating_sub(a)) as f64 / (1024.0 * 1024.0)
        );
    }
    drop(kept);
    let runs: Vec<Duration> = (0..3)
        .map(|r| {
            // A checkpoint's worth of changes (1,000 entries), then the new root.
            for j in 0..1000u64 {
                map.append(key((j * 7919 + r) % customers), customers + j, &leaf_hash(&j.to_be_bytes()));
            }
            let t = Instant::now();
            std::hint::black_box(map.root());
            t.elapsed()
        })
        .collect();
    println!("  map root after 1,000 changes: median {:.2?}", median(runs));
    let map_root = map.root();
    let proofs: Vec<_> = (0..20u64).map(|i| map.prove(&key(i * 31))).collect();
    let t = Instant::now();
    for i in 0..5u64 {
        std::hint::black_box(map.prove(&key(i)));
    }
    println!("  build one proof: {:.2?}", t.elapsed() / 5);
    let sizes: Vec<usize> = proofs.iter().map(|p| p.encoded_len()).collect();
    println!(
        "  proof size: {}-{} bytes ({}-{} sibling hashes)",
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap(),
        proofs.iter().map(|p| p.siblings.len()).min().unwrap(),
        proofs.iter().map(|p| p.siblings.len()).max().unwrap()
    );
    let n = 20_000u32;
    let t = Instant::now();
    for k in 0..n {
        let i = (k % 20) as u64;
        std::hint::black_box(proofs[i as usize].verify(&key(i * 31), &map_root).unwrap());
    }
    println!("  verify one proof: {:.2?}", t.elapsed() / n);

    println!("witness, CPU per add-checkpoint (log of 1,000,000 entries, proof from 999,000)");
    let leaves: Vec<_> = (0..1_000_000u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let log = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    let log_key = VerifierKey::new("bench/log", log.public_key().as_ref().try_into().unwrap());
    let w = Ed25519KeyPair::from_seed_unchecked(&[2; 32]).unwrap();
    let w_key = CosignerKey::new("bench/witness", w.public_key().as_ref().try_into().unwrap());
    let (old, new) = (999_000u64, 1_000_000u64);
    let old_root = root(&mut LeafSource(&leaves), old).unwrap();
    let cp = Checkpoint {
        origin: "bench/log".into(),
        size: new,
        root: root(&mut LeafSource(&leaves), new).unwrap(),
        map_root: None,
    };
    let note = sign_checkpoint(&cp, &log_key, |m| log.sign(m).as_ref().try_into().unwrap());
    let proof = consistency_proof(&mut LeafSource(&leaves), old, new).unwrap();
    let body = AddCheckpoint { old_size: old, proof, note: note.clone() }.to_body();
    let n = 2_000u32;
    let t = Instant::now();
    let mut line = String::new();
    for _ in 0..n {
        let req = AddCheckpoint::parse(&body).unwrap();
        check_add_checkpoint(&req, std::slice::from_ref(&log_key), Some((old, old_root))).unwrap();
        line = cosign(&req.note, &w_key, 1_700_000_000, |m| w.sign(m).as_ref().try_into().unwrap()).unwrap();
    }
    println!("  parse + verify log signature + consistency proof + cosign: {:.2?}", t.elapsed() / n);
    let cosigned = format!("{note}{line}");
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(verify_cosigned(&cosigned, &log_key, std::slice::from_ref(&w_key), 1).unwrap());
    }
    println!("  verify a checkpoint with 1 cosignature: {:.2?}", t.elapsed() / n);
    // Last, so the memory figures above are not hidden by memory this frees.
    rebuild(customers, customers / 4);
}
