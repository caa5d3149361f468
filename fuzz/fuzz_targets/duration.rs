//! Any text as a duration: never a panic, and the bounded reading agrees with the plain
//! one and stays within the bounds a manifest may give.
#![no_main]

use decision_gate::api::duration::{self, Duration, MAX, MIN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let plain = duration::parse(text);
    match Duration::from(text).parse() {
        Ok(d) => {
            assert!((MIN..=MAX).contains(&d), "{text:?} read as {d:?}");
            assert_eq!(plain.as_ref().ok(), Some(&d), "{text:?}");
        }
        Err(e) => {
            assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
            if let Ok(d) = plain {
                assert!(!(MIN..=MAX).contains(&d), "{text:?} refused though it reads as {d:?}");
            }
        }
    }
});
