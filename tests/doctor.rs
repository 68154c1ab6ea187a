//! `candor doctor` and the server's own hardening, with the real binary.

mod common;

use common::{Install, candor};

#[test]
fn doctor_passes_a_fresh_installation_and_names_a_key_file_others_can_read() {
    let install = Install::new();
    let config = install.config();
    let dir = install.config().parent().unwrap().to_path_buf();
    let (ok, out, err) = candor(&["doctor", "--config", config.to_str().unwrap()], &dir);
    assert!(ok, "{out}{err}");
    assert!(out.contains("ok    KEK file") && out.contains("owner-only"), "{out}");
    assert!(!out.contains("database ./data/candor.db can be read"), "init makes the data directory private: {out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let kek = dir.join("keys/kek.key");
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (ok, out, _) = candor(&["doctor", "--config", config.to_str().unwrap()], &dir);
        assert!(!ok);
        assert!(out.contains("FAIL  KEK file") && out.contains("chmod 600"), "{out}");
        std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o600)).unwrap();
        // The database files and their directory are checked too.
        for (path, mode, chmod) in [("data/candor.db", 0o644, "chmod 600"), ("data", 0o755, "chmod 700")] {
            let path = dir.join(path);
            let before = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(before & 0o077, 0, "init made {} owner-only", path.display());
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let (ok, out, _) = candor(&["doctor", "--config", config.to_str().unwrap()], &dir);
            assert!(!ok && out.contains("FAIL") && out.contains(chmod), "{out}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(before)).unwrap();
        }
        let (ok, out, _) = candor(&["doctor", "--config", config.to_str().unwrap()], &dir);
        assert!(ok, "{out}");
        // An https public_url passes; an http one on a public address fails.
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replace("[privacy_center]\n", "[privacy_center]\npublic_url = \"http://privacy.shop.example\"\n"),
        )
        .unwrap();
        let (ok, out, _) = candor(&["doctor", "--config", config.to_str().unwrap()], &dir);
        assert!(!ok && out.contains("is not https"), "{out}");
    }
    // Trusting every address as a proxy lets any client pick its recorded address.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("trusted_proxies = []", "trusted_proxies = [\"10.0.0.0/8\", \"::/0\"]"))
        .unwrap();
    let (ok, out, _) = candor(&["doctor", "--config", config.to_str().unwrap()], &dir);
    assert!(!ok && out.contains("trusted_proxies holds ::/0, which trusts every address"), "{out}");
}

#[cfg(target_os = "linux")]
#[test]
fn the_server_cannot_dump_core() {
    let install = Install::new();
    let server = install.serve();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    let numbers: Vec<&str> = core.split_whitespace().skip(4).take(2).collect();
    assert_eq!(numbers, ["0", "0"], "{core}");
}
