//! `approve` and `reject`: the answer given as the caller (see [`decision_gate::answer`]),
//! and what came of it in one line.

use decision_gate::answer::{Answer, Outcome, RECORD_WAIT, Refused, give};
use decision_gate::plugin::printable;
use kube::Client;

use super::{Failure, api_failure};

pub(crate) async fn answer(
    client: &Client,
    namespace: &str,
    name: &str,
    answer: Answer,
) -> Result<(), Failure> {
    let verb = answer.verb();
    let answered = give(client, namespace, name, &answer, RECORD_WAIT)
        .await
        .map_err(|refused| match refused {
            Refused::NotWaiting(_) => Failure(format!("cannot {verb} {name}: {refused}")),
            Refused::Denied(_) | Refused::Identity(_) => Failure(refused.to_string()),
            Refused::NotFound => Failure(format!("no Decision {name} in namespace {namespace}")),
            Refused::Api(e) => api_failure(e, name, namespace),
        })?;
    if let Some(confirmed) = &answered.confirmed {
        println!("{}", printable(&confirmed.told()));
    }
    let told = answered.told(&answer, namespace, name);
    if matches!(answered.outcome, Outcome::Ignored { .. }) {
        return Err(Failure(told));
    }
    println!("{}", printable(&told));
    Ok(())
}
