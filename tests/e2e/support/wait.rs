//! Waits with a deadline: on an object through a watch, or on a check polled.

use std::time::Duration;

use decision_gate::api::{Decision, DecisionPhase};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::DEADLINE;

/// Polls `check` every 200ms until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if check() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
    }
}

/// The phase of a Decision, if it exists and has one.
pub fn phase(d: Option<&Decision>) -> Option<DecisionPhase> {
    d.and_then(|d| d.status.as_ref()).and_then(|s| s.phase)
}

/// Waits for the Decision to reach `want` and returns it.
pub async fn reaches(api: &Api<Decision>, name: &str, want: DecisionPhase) -> Decision {
    let what = format!("{want:?}");
    wait_for(api, name, &what, move |d: Option<&Decision>| {
        phase(d) == Some(want)
    })
    .await
}

/// Watches one object until `condition` holds, failing the test with the object's last
/// state after [`DEADLINE`].
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, condition: impl Condition<K>) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match tokio::time::timeout(DEADLINE, await_condition(api.clone(), name, condition)).await {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{name} was deleted while waiting for {what}"),
        Ok(Err(e)) => panic!("watching {name} for {what} failed: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await;
            panic!(
                "timed out after {DEADLINE:?} waiting for {name} to be {what}; last seen: {last:#?}"
            )
        }
    }
}

/// Waits until the object is gone, failing the test after [`DEADLINE`].
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let gone = |obj: Option<&K>| obj.is_none();
    match tokio::time::timeout(DEADLINE, await_condition(api.clone(), name, gone)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("watching {name} until it is gone failed: {e}"),
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {name} to be deleted"),
    }
}
