//! Least exposure of the server process: no core dumps (a dump would hold unwrapped data keys and
//! decrypted values from memory) and, on Linux, not dumpable or traceable by other processes of
//! the same user.

/// Turns core dumps off for this process. Returns what could not be done (start-up goes on and
/// says so: refusing to start would not make a running system safer).
pub fn no_core_dumps() -> Vec<String> {
    let mut failed = Vec::new();
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
        if let Err(e) = setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) }) {
            failed.push(format!("core dump size limit: {e}"));
        }
        if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
            failed.push(format!("not dumpable: {e}"));
        }
    }
    failed
}
