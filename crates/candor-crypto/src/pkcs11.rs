//! KEKs inside a PKCS#11 token (an HSM, or SoftHSM2 in tests).
//!
//! Each KEK version is an AES-256 secret key object labelled `candor-kek-v{N}`, generated inside
//! the token as sensitive and non-extractable: wrapping and unwrapping run inside the token with
//! `CKM_AES_GCM` (Candor supplies the random nonce and the associated data, so wrapped keys have
//! exactly the format of the key-file provider's), and the key bytes never reach this process.
//!
//! The user PIN logs in once per process; a small pool of sessions serves concurrent requests
//! (a PKCS#11 session is used by one thread at a time).

use std::os::raw::c_ulong;
use std::path::Path;
use std::sync::Mutex;

use aws_lc_rs::aead::NONCE_LEN;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::kek::KekProvider;
use crate::keyfile::KeyError;

/// Label prefix of Candor's KEK objects; the version follows (`candor-kek-v3`).
pub const KEK_OBJECT_PREFIX: &str = "candor-kek-v";
/// Where Debian's `softhsm2` package puts its PKCS#11 module (tests and the benchmark use it).
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Whether SoftHSM2 (its module and `softhsm2-util`) is installed.
pub fn softhsm_installed() -> bool {
    Path::new(SOFTHSM_MODULE).exists() && std::process::Command::new("softhsm2-util").arg("--version").output().is_ok()
}

/// Creates a SoftHSM2 token directory under `dir` with one initialised token `label` (user PIN
/// `pin`), for tests and benchmarks. Returns the config file to pass as `SOFTHSM2_CONF` to the
/// processes that load the module. The PIN goes on `softhsm2-util`'s command line: only for
/// throwaway tokens.
pub fn init_softhsm_token(dir: &Path, label: &str, pin: &str) -> Result<std::path::PathBuf, String> {
    let tokens = dir.join("softhsm-tokens");
    std::fs::create_dir_all(&tokens).map_err(|e| format!("cannot create {}: {e}", tokens.display()))?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(&conf, format!("directories.tokendir = {}\nlog.level = ERROR\n", tokens.display()))
        .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
    let out = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--so-pin", "throwaway-so-pin", "--pin", pin])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .map_err(|e| format!("cannot run softhsm2-util: {e}"))?;
    if !out.status.success() {
        return Err(format!("softhsm2-util --init-token failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(conf)
}

/// Sessions kept open for reuse.
const POOL: usize = 8;

/// KEKs in one PKCS#11 token.
pub struct Pkcs11Keks {
    ctx: Pkcs11,
    slot: Slot,
    token: String,
    keys: Vec<(u32, ObjectHandle)>,
    sessions: Mutex<Vec<Session>>,
    /// Holds the login: a token forgets it when an application's last session closes.
    _login: Mutex<Session>,
}

fn p11(what: &str, e: P11Error) -> String {
    match e {
        P11Error::Pkcs11(rv, function) => format!("{what}: {function:?} returned {rv:?}"),
        other => format!("{what}: {other}"),
    }
}

impl Pkcs11Keks {
    /// Loads the PKCS#11 `module` (a shared library), finds the token labelled `token`, logs in
    /// with the user `pin` and lists Candor's KEK objects in it.
    pub fn open(module: &Path, token: &str, pin: &str) -> Result<Self, KeyError> {
        let err = |what: &str, e: P11Error| KeyError::Provider(p11(what, e));
        let ctx = Pkcs11::new(module)
            .map_err(|e| KeyError::Provider(format!("cannot load the PKCS#11 module {}: {e}", module.display())))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(err("cannot initialise the PKCS#11 module", e)),
        }
        let mut found = None;
        for slot in ctx.get_slots_with_initialized_token().map_err(|e| err("cannot list PKCS#11 slots", e))? {
            let info = ctx.get_token_info(slot).map_err(|e| err("cannot read a PKCS#11 token", e))?;
            if info.label().trim_end() == token {
                found = Some(slot);
                break;
            }
        }
        let slot = found.ok_or_else(|| {
            KeyError::Provider(format!(
                "no initialised PKCS#11 token labelled `{token}` in {} (create it first, e.g. `softhsm2-util \
                 --init-token --free --label {token}`)",
                module.display()
            ))
        })?;
        let login = ctx.open_ro_session(slot).map_err(|e| err("cannot open a PKCS#11 session", e))?;
        let pin = AuthPin::from(pin.to_string());
        match login.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(P11Error::Pkcs11(RvError::PinIncorrect, _)) => {
                return Err(KeyError::Provider(format!("the PIN of PKCS#11 token `{token}` is wrong")));
            }
            Err(e) => return Err(err("cannot log in to the PKCS#11 token", e)),
        }
        let keys = list_keks(&login).map_err(KeyError::Provider)?;
        Ok(Self {
            ctx,
            slot,
            token: token.to_string(),
            keys,
            sessions: Mutex::new(Vec::new()),
            _login: Mutex::new(login),
        })
    }

    /// Generates KEK `version` inside the token: AES-256, sensitive, never extractable. The
    /// object is visible to the next [`open`](Self::open).
    pub fn generate(&self, version: u32) -> Result<(), KeyError> {
        if self.keys.iter().any(|(v, _)| *v == version) {
            return Err(KeyError::Provider(format!("token `{}` already holds kek v{version}", self.token)));
        }
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| KeyError::Provider(p11("cannot open a read-write PKCS#11 session", e)))?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen((32 as c_ulong).into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(format!("{KEK_OBJECT_PREFIX}{version}").into_bytes()),
        ];
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(|e| KeyError::Provider(p11("cannot generate a key in the PKCS#11 token", e)))?;
        Ok(())
    }

    /// Destroys KEK `version` inside the token (irreversible: the caller checks nothing needs it).
    pub fn destroy(&self, version: u32) -> Result<(), KeyError> {
        let (_, handle) = self
            .keys
            .iter()
            .find(|(v, _)| *v == version)
            .ok_or_else(|| KeyError::Provider(format!("token `{}` holds no kek v{version}", self.token)))?;
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| KeyError::Provider(p11("cannot open a read-write PKCS#11 session", e)))?;
        session
            .destroy_object(*handle)
            .map_err(|e| KeyError::Provider(p11("cannot destroy the key in the PKCS#11 token", e)))
    }

    fn key(&self, version: u32) -> Result<ObjectHandle, CryptoError> {
        self.keys.iter().find(|(v, _)| *v == version).map(|(_, h)| *h).ok_or(CryptoError::UnknownKeyVersion(version))
    }

    /// Runs `f` on a pooled session (opening one when all are busy).
    fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, CryptoError>) -> Result<T, CryptoError> {
        let pooled = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let session = match pooled {
            Some(s) => s,
            None => self
                .ctx
                .open_ro_session(self.slot)
                .map_err(|e| CryptoError::Provider(p11("cannot open a PKCS#11 session", e)))?,
        };
        let result = f(&session);
        let mut pool = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL {
            pool.push(session);
        }
        result
    }
}

/// Candor's KEK objects in the token, ascending by version.
fn list_keks(session: &Session) -> Result<Vec<(u32, ObjectHandle)>, String> {
    let handles = session
        .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY), Attribute::KeyType(KeyType::AES)])
        .map_err(|e| p11("cannot list the PKCS#11 token's keys", e))?;
    let mut keys: Vec<(u32, ObjectHandle)> = Vec::new();
    for handle in handles {
        let attributes = session
            .get_attributes(handle, &[AttributeType::Label])
            .map_err(|e| p11("cannot read a PKCS#11 key's label", e))?;
        let label = attributes.iter().find_map(|a| match a {
            Attribute::Label(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        });
        let Some(version) = label.as_deref().and_then(|l| l.strip_prefix(KEK_OBJECT_PREFIX)?.parse::<u32>().ok())
        else {
            continue; // another application's key
        };
        if keys.iter().any(|(v, _)| *v == version) {
            return Err(format!("the PKCS#11 token holds two objects labelled {KEK_OBJECT_PREFIX}{version}"));
        }
        keys.push((version, handle));
    }
    keys.sort_by_key(|(v, _)| *v);
    Ok(keys)
}

impl KekProvider for Pkcs11Keks {
    fn name(&self) -> String {
        format!("PKCS#11 token `{}`", self.token)
    }

    fn versions(&self) -> Vec<u32> {
        self.keys.iter().map(|(v, _)| *v).collect()
    }

    fn seal(&self, version: u32, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let key = self.key(version)?;
        self.with_session(|session| {
            let mut iv = nonce;
            let params = GcmParams::new(&mut iv, aad, (128 as c_ulong).into())
                .map_err(|e| CryptoError::Provider(p11("GCM parameters", e)))?;
            session
                .encrypt(&Mechanism::AesGcm(params), key, plaintext)
                .map_err(|e| CryptoError::Provider(p11(&format!("wrapping with kek v{version}"), e)))
        })
    }

    fn open(
        &self,
        version: u32,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = self.key(version)?;
        self.with_session(|session| {
            let mut iv = nonce;
            let params = GcmParams::new(&mut iv, aad, (128 as c_ulong).into())
                .map_err(|e| CryptoError::Provider(p11("GCM parameters", e)))?;
            match session.decrypt(&Mechanism::AesGcm(params), key, sealed) {
                Ok(plain) => Ok(Zeroizing::new(plain)),
                // A GCM tag that does not verify: CKR_ENCRYPTED_DATA_INVALID per the standard;
                // SoftHSM2 (and some HSMs) answer CKR_GENERAL_ERROR instead.
                Err(P11Error::Pkcs11(
                    RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange | RvError::GeneralError,
                    _,
                )) => Err(CryptoError::Integrity("wrapped data key")),
                Err(e) => Err(CryptoError::Provider(p11(&format!("unwrapping with kek v{version}"), e))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::Arc;

    use super::*;
    use crate::KeyRing;
    use crate::kek::LocalKeks;
    use crate::keyfile::{self, INDEX_LABEL, KEK_LABEL};

    const TOKEN: &str = "candor-test";
    const PIN: &str = "1234-test-pin";
    const CHILD: &str = "pkcs11::tests::softhsm_suite_in_child";

    fn module() -> PathBuf {
        std::env::var_os("CANDOR_PKCS11_MODULE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(SOFTHSM_MODULE))
    }

    /// SoftHSM2 reads its token directory from `SOFTHSM2_CONF`, which must be set before the
    /// module loads; so the suite runs in a child test process given a fresh token directory.
    #[test]
    fn softhsm_passes_the_same_suite_as_the_key_file() {
        if !softhsm_installed() {
            assert!(
                std::env::var_os("CANDOR_HSM_TESTS").is_none(),
                "CANDOR_HSM_TESTS is set but SoftHSM2 is not installed (apt install softhsm2)"
            );
            eprintln!("SKIPPED: SoftHSM2 is not installed; the PKCS#11 provider was not tested (apt install softhsm2)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let conf = init_softhsm_token(dir.path(), TOKEN, PIN).unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        let out = format!("{}{}", String::from_utf8_lossy(&child.stdout), String::from_utf8_lossy(&child.stderr));
        assert!(child.status.success() && out.contains("1 passed"), "{out}");
    }

    #[test]
    #[ignore = "run by softhsm_passes_the_same_suite_as_the_key_file in a child process with SOFTHSM2_CONF set"]
    fn softhsm_suite_in_child() {
        assert!(std::env::var_os("SOFTHSM2_CONF").is_some(), "run through the parent test");
        let index_text = keyfile::generate_key_line(INDEX_LABEL, 1).unwrap();
        let index = || keyfile::parse_keys(&index_text, INDEX_LABEL, "t").unwrap();

        // Wrong PIN and unknown token: clear errors that never repeat the PIN.
        let Err(wrong) = Pkcs11Keks::open(&module(), TOKEN, "not-the-pin") else { panic!("wrong PIN accepted") };
        assert!(wrong.to_string().contains("PIN") && !wrong.to_string().contains("not-the-pin"), "{wrong}");
        let Err(missing) = Pkcs11Keks::open(&module(), "no-such-token", PIN) else { panic!("unknown token opened") };
        assert!(missing.to_string().contains("no-such-token"), "{missing}");

        // An empty token holds no KEK; generate v1, then v2, inside it.
        let hsm = Pkcs11Keks::open(&module(), TOKEN, PIN).unwrap();
        assert!(hsm.versions().is_empty());
        hsm.generate(1).unwrap();
        let hsm = Pkcs11Keks::open(&module(), TOKEN, PIN).unwrap();
        assert!(hsm.generate(1).is_err(), "a version exists once");
        let v1 = KeyRing::with_providers(vec![Arc::new(hsm)], index()).unwrap();
        Pkcs11Keks::open(&module(), TOKEN, PIN).unwrap().generate(2).unwrap();
        let hsm = Arc::new(Pkcs11Keks::open(&module(), TOKEN, PIN).unwrap());
        assert_eq!(hsm.name(), format!("PKCS#11 token `{TOKEN}`"));
        let v1_v2 = KeyRing::with_providers(vec![hsm.clone()], index()).unwrap();
        crate::envelope::tests::provider_suite(&v1, &v1_v2);

        // The keys never leave the token: sensitive, not extractable, value unreadable.
        let session = hsm.ctx.open_ro_session(hsm.slot).unwrap();
        for (_, handle) in &hsm.keys {
            let attrs =
                session.get_attributes(*handle, &[AttributeType::Sensitive, AttributeType::Extractable]).unwrap();
            assert!(attrs.contains(&Attribute::Sensitive(true)) && attrs.contains(&Attribute::Extractable(false)));
            let value = session.get_attributes(*handle, &[AttributeType::Value]);
            assert!(!matches!(value.as_deref(), Ok([Attribute::Value(_)])), "the key's bytes are readable");
        }

        // Moving from the key file to the HSM: file v1 and HSM v2 in one ring; a version held by
        // both is refused. A data key wrapped under the file's v1 is rewrapped into the HSM, and
        // its values open with the HSM alone.
        let file_text = keyfile::generate_key_line(KEK_LABEL, 1).unwrap();
        let file_keys = || LocalKeks::new(&keyfile::parse_keys(&file_text, KEK_LABEL, "t").unwrap(), "the key file");
        let clash = KeyRing::with_providers(vec![Arc::new(file_keys()), hsm.clone()], index());
        assert!(matches!(clash, Err(KeyError::DuplicateVersion { version: 1, .. })), "{clash:?}");
        hsm.destroy(1).unwrap();
        let hsm = Arc::new(Pkcs11Keks::open(&module(), TOKEN, PIN).unwrap());
        assert_eq!(hsm.versions(), [2]);
        let file = KeyRing::with_providers(vec![Arc::new(file_keys())], index()).unwrap();
        let subject = candor_core::SubjectId::random();
        let (key, stored) = file.new_subject_key(subject).unwrap();
        let field = candor_core::FieldName::new("email");
        let sealed = key.seal_field(&field, b"ada@example.com").unwrap();
        let mixed = KeyRing::with_providers(vec![Arc::new(file_keys()), hsm.clone()], index()).unwrap();
        assert_eq!(mixed.provider_of(1).unwrap(), "the key file");
        assert_eq!(mixed.provider_of(2).unwrap(), format!("PKCS#11 token `{TOKEN}`"));
        let moved = mixed.rewrap(subject, &stored).unwrap().expect("moved into the HSM");
        let hsm_only = KeyRing::with_providers(vec![hsm], index()).unwrap();
        let reopened = hsm_only.open_subject_key(subject, &moved).unwrap();
        assert_eq!(&reopened.open_field(&field, &sealed).unwrap()[..], b"ada@example.com");
    }
}
