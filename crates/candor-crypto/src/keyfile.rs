//! Key files and key text.
//!
//! A key text holds one key per line: `<label> v<version> <base64 of 32 bytes>`; blank lines
//! and `#` comments are ignored; `;` also separates keys (handy in environment variables).
//! Key files are created owner-only (0600) and refused when group or others can read them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// Label of key-encryption-key lines.
pub const KEK_LABEL: &str = "candor-kek";
/// Label of blind-index-key lines.
pub const INDEX_LABEL: &str = "candor-index-key";

/// One versioned 256-bit key.
pub struct KeyMaterial {
    pub version: u32,
    pub bytes: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyMaterial(v{}, <redacted>)", self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write key file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "key file {path} can be read by group or others (mode {mode:o}); keys must be readable \
         only by their owner: run `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{origin} line {line}: {reason}")]
    Format { origin: String, line: usize, reason: String },
    #[error("{origin} holds no `{label}` key")]
    Empty { origin: String, label: &'static str },
    #[error("the system random number generator failed")]
    Random,
    #[error(
        "key-encryption key v{version} is in both {first} and {second}; every version must live in \
         exactly one place (retire one of them)"
    )]
    DuplicateVersion { version: u32, first: String, second: String },
    /// The HSM could not be opened or used; the message never holds the PIN.
    #[error("{0}")]
    Provider(String),
}

/// Parses key text. `origin` names where it came from (a path or a variable) for errors.
pub fn parse_keys(text: &str, label: &'static str, origin: &str) -> Result<Vec<KeyMaterial>, KeyError> {
    let mut keys: Vec<KeyMaterial> = Vec::new();
    let bad = |line: usize, reason: String| KeyError::Format { origin: origin.to_string(), line, reason };
    for (i, raw_line) in text.lines().enumerate() {
        if raw_line.trim_start().starts_with('#') {
            continue;
        }
        for entry in raw_line.split(';') {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = entry.split_whitespace().collect();
            if parts.len() != 3 || parts[0] != label {
                return Err(bad(i + 1, format!("expected `{label} v<N> <base64 key>`")));
            }
            let version = parts[1]
                .strip_prefix('v')
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| bad(i + 1, "the version must look like v1, v2, …".into()))?;
            let decoded = Zeroizing::new(
                STANDARD.decode(parts[2]).map_err(|_| bad(i + 1, "the key is not valid base64".into()))?,
            );
            if decoded.len() != 32 {
                return Err(bad(i + 1, "the key must be 32 bytes (256 bits)".into()));
            }
            if keys.iter().any(|k| k.version == version) {
                return Err(bad(i + 1, format!("version v{version} appears twice")));
            }
            let mut bytes = Zeroizing::new([0u8; 32]);
            bytes.copy_from_slice(&decoded);
            keys.push(KeyMaterial { version, bytes });
        }
    }
    if keys.is_empty() {
        return Err(KeyError::Empty { origin: origin.to_string(), label });
    }
    keys.sort_by_key(|k| k.version);
    Ok(keys)
}

/// Reads a key file after checking that only its owner can read it.
pub fn read_key_file(path: &Path, label: &'static str) -> Result<Vec<KeyMaterial>, KeyError> {
    check_owner_only(path)?;
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?);
    parse_keys(&text, label, &path.display().to_string())
}

/// Reads a one-line secret (an HSM PIN) from an owner-only file, without its line ending.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    check_owner_only(path)?;
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?);
    Ok(Zeroizing::new(text.trim_end_matches(['\r', '\n']).to_string()))
}

#[cfg(unix)]
pub(crate) fn check_owner_only(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| KeyError::Read { path: path.into(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { path: path.into(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn check_owner_only(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// Generates a fresh random key as a key-text line (`<label> v<version> <base64>`).
pub fn generate_key_line(label: &'static str, version: u32) -> Result<Zeroizing<String>, KeyError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut raw[..]).map_err(|_| KeyError::Random)?;
    Ok(Zeroizing::new(format!("{label} v{version} {}\n", STANDARD.encode(&raw[..]))))
}

/// Creates a new key file holding one fresh key (version 1), readable only by its owner.
/// Refuses to overwrite an existing file: losing a key loses the data it protects.
pub fn create_key_file(path: &Path, label: &'static str, comment: &str) -> Result<(), KeyError> {
    let line = generate_key_line(label, 1)?;
    let werr = |source| KeyError::Write { path: path.into(), source };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(werr)?;
    for c in comment.lines() {
        writeln!(file, "# {c}").map_err(werr)?;
    }
    file.write_all(line.as_bytes()).map_err(werr)?;
    file.sync_all().map_err(werr)?;
    Ok(())
}

/// Rewrites an owner-only key file with `text` (owner-only, synced, then renamed into place).
fn replace_file(path: &Path, text: &str) -> Result<(), KeyError> {
    let werr = |source| KeyError::Write { path: path.into(), source };
    let tmp = path.with_extension("tmp");
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(werr)?;
    file.write_all(text.as_bytes()).map_err(werr)?;
    file.sync_all().map_err(werr)?;
    fs::rename(&tmp, path).map_err(werr)
}

/// Adds a fresh key to a key file as the next version (which becomes primary). Returns it.
pub fn add_key_version(path: &Path, label: &'static str) -> Result<u32, KeyError> {
    let keys = read_key_file(path, label)?;
    let version = keys.last().map_or(1, |k| k.version + 1);
    let mut text =
        Zeroizing::new(fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&generate_key_line(label, version)?);
    replace_file(path, &text)?;
    Ok(version)
}

/// Removes key `version` from a key file (the caller made sure nothing needs it any more).
pub fn remove_key_version(path: &Path, label: &'static str, version: u32) -> Result<(), KeyError> {
    read_key_file(path, label)?;
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.into(), source })?);
    let marker = format!("{label} v{version} ");
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with(&marker)).collect();
    replace_file(path, &Zeroizing::new(kept.join("\n") + "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_added_as_the_next_one_and_removed_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.key");
        create_key_file(&path, KEK_LABEL, "test").unwrap();
        assert_eq!(add_key_version(&path, KEK_LABEL).unwrap(), 2);
        assert_eq!(add_key_version(&path, KEK_LABEL).unwrap(), 3);
        remove_key_version(&path, KEK_LABEL, 1).unwrap();
        let versions: Vec<u32> = read_key_file(&path, KEK_LABEL).unwrap().iter().map(|k| k.version).collect();
        assert_eq!(versions, [2, 3]);
        assert!(fs::read_to_string(&path).unwrap().starts_with("# test"), "comments stay");
    }

    #[test]
    fn key_text_parses_versions_comments_and_semicolons() {
        let a = generate_key_line(KEK_LABEL, 2).unwrap();
        let b = generate_key_line(KEK_LABEL, 1).unwrap();
        let text = format!("# comment; with a semicolon\n{}; {}", a.trim(), b.trim());
        let keys = parse_keys(&text, KEK_LABEL, "test").unwrap();
        assert_eq!(keys.iter().map(|k| k.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(format!("{:?}", keys[0]), "KeyMaterial(v1, <redacted>)");
    }

    #[test]
    fn malformed_key_text_is_refused_with_its_line() {
        for (text, want) in [
            ("candor-kek v1 notbase64!", "line 1: the key is not valid base64"),
            ("\ncandor-kek v1 AAAA", "line 2: the key must be 32 bytes"),
            ("candor-kek 1 AAAA", "the version must look like v1"),
            ("candor-index-key v1 AAAA", "expected `candor-kek v<N> <base64 key>`"),
            ("# nothing", "holds no `candor-kek` key"),
        ] {
            let e = parse_keys(text, KEK_LABEL, "test").unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn key_files_are_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.key");
        create_key_file(&path, KEK_LABEL, "test key").unwrap();
        assert_eq!(read_key_file(&path, KEK_LABEL).unwrap().len(), 1);
        assert!(create_key_file(&path, KEK_LABEL, "again").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            let e = read_key_file(&path, KEK_LABEL).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }
}
