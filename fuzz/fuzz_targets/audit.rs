//! Any bytes as an audit log: verification and reading never panic; a log that verifies
//! still verifies after it is opened (torn-tail recovery) and appended to; and opening a
//! log never loses a line that verified.
#![no_main]

use decision_gate::audit::{self, AuditLog, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("decision-gate-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.jsonl");
    std::fs::write(&path, data).unwrap();
    let files = vec![path.clone()];
    let before = audit::verify(&files);
    let _ = audit::read(&files, |_| true);
    if let Ok(log) = AuditLog::open(&path, 1 << 20) {
        let record = Record {
            event_type: "decision_requested".into(),
            actor: "fuzz".into(),
            message: "appended".into(),
            discriminator: "1".into(),
            ..Default::default()
        };
        let appended = log.append(&[record], chrono::Utc::now());
        if let (Ok(verified), Ok(_)) = (&before, &appended) {
            let files = audit::log_files(&path).unwrap();
            let after = audit::verify(&files).expect("a log that verified stops verifying after an append");
            assert_eq!(after.entries, verified.entries + 1);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
