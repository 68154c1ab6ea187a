//! `candor-bench` end to end: short runs (a 50 ms measuring window) whose JSON must have the
//! right shape, never a speed. It starts the `candor` binary built beside it, so it runs from
//! the workspace's test command (`cargo test --workspace`), which builds both.

use std::path::Path;
use std::process::Command;

/// Runs `candor-bench ARGS` in `cwd`; (success, stdout, stderr).
fn bench(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_candor-bench"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("candor-bench runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_writes_every_measurement_as_json_with_the_floor_share_of_each_http_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let (ok, stdout, stderr) = bench(
        &[
            "--subjects",
            "50",
            "--seconds",
            "0.05",
            "--log-entries",
            "0",
            "--audience",
            "0",
            "--rights-events",
            "0",
            "--keys",
            "200",
            "--customers",
            "100",
            "--json",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(ok, "{stdout}{stderr}");
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(run["machine"]["cpus"].as_u64().unwrap() >= 1);
    let results = run["results"].as_array().unwrap();
    let find = |name: &str| results.iter().find(|r| r["operation"].as_str().is_some_and(|o| o.contains(name))).cloned();
    // The shape of the run, never its speed: a measuring window of 50 ms on a busy machine may
    // see anything from one request per client to thousands.
    let rate = |r: &serde_json::Value| {
        let ops = r["ops_per_s"].as_f64().unwrap_or_else(|| panic!("ops_per_s is a number: {r}"));
        assert!(ops.is_finite() && ops > 0.0, "every scenario completes at least one operation: {r}");
        ops
    };
    let floor = find("GET /healthz (floor)").expect("the /healthz floor");
    let floor_rate = rate(&floor);
    assert_eq!(floor["share_of_floor_percent"], 100.0, "the floor is 100% of itself: {floor}");
    let storage_floor = find("storage floor: SQLite insert, 64 rows per durable commit").expect("storage floor");
    let storage_rate = rate(&storage_floor);
    for scenario in [
        "(create)",
        "(audited read)",
        "at half the peak read rate (paced)",
        "(lookup by e-mail)",
        "(correction)",
        "(consent change)",
        "(event append)",
        "export (JSON)",
        "(erasure + certificate)",
    ] {
        let r = find(scenario).unwrap_or_else(|| panic!("{scenario} measured"));
        let ops = rate(&r);
        for key in ["p50_ms", "p99_ms", "p999_ms"] {
            assert!(r[key].as_f64().is_some_and(|v| v.is_finite() && v >= 0.0), "{key}: {r}");
        }
        // Shares are computed from the rates in the same file (each rounded to 0.1 there).
        for (key, base) in [("share_of_floor_percent", floor_rate), ("share_of_storage_floor_percent", storage_rate)] {
            let share = r[key].as_f64().unwrap_or_else(|| panic!("{key} is a number: {r}"));
            let expected = 100.0 * ops / base;
            assert!((share - expected).abs() <= 0.05 + expected * 0.01, "{key} {share} vs {expected}: {r}");
        }
        // CPU time is counted in 10 ms ticks, so a short scenario may see none: present, not negative.
        assert!(r["server_cpu_us_per_request"].as_f64().is_some_and(|c| c >= 0.0), "{r}");
    }
    assert_eq!(find("keys rewrap").unwrap()["data_keys"], 200);
    if std::path::Path::new(candor_crypto::pkcs11::SOFTHSM_MODULE).exists()
        || std::env::var_os("CANDOR_HSM_TESTS").is_some()
    {
        assert_eq!(find("keys rewrap into SoftHSM2").expect("HSM rewrap measured")["data_keys"], 200);
    }
    assert_eq!(find("load customers").unwrap()["customers"], 100);
    assert_eq!(find("breach assess").unwrap()["customers_found"], 2, "1 in 100 reads by the leaked token");
}

#[test]
fn bench_can_serve_from_a_separate_process_and_measure_its_cpu_and_memory_alone() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let args = ["--subjects", "20", "--seconds", "0.05", "--log-entries", "0", "--audience", "0"];
    let mut all = args.to_vec();
    all.extend(["--rights-events", "0", "--server-process", "--json", out.to_str().unwrap()]);
    let (ok, stdout, stderr) = bench(&all, dir.path());
    assert!(ok, "{stdout}{stderr}");
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let results = run["results"].as_array().unwrap();
    let find = |name: &str| results.iter().find(|r| r["operation"].as_str().is_some_and(|o| o.contains(name))).cloned();
    let idle = find("server process RSS before the scenarios").expect("idle RSS")["mib"].as_f64().unwrap();
    let peak = find("peak RSS of the server process").expect("peak RSS")["mib"].as_f64().unwrap();
    assert!(idle > 1.0 && peak >= idle, "{idle} {peak}");
    assert!(find("peak RSS of the benchmark process").is_none(), "the server's memory is reported alone");
    let read = find("(audited read)").unwrap();
    assert!(read["server_cpu_us_per_request"].as_f64().is_some_and(|c| c >= 0.0), "{read}");
}
