//! `approve` and `reject`: the answer given as the caller (see [`decision_gate::answer`]),
//! and what came of it in one line.

use decision_gate::answer::{Answer, Outcome, RECORD_WAIT, Refused, give};
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
    let me = &answered.me;
    let done = answer.done();
    match answered.outcome {
        Outcome::AlreadyApproved => println!("{namespace}/{name} already has your approval"),
        Outcome::NotRecordedYet => println!(
            "{done} {namespace}/{name} as {me}; the operator has not recorded it yet (is it running?)"
        ),
        Outcome::Ignored { answer, reason } => {
            return Err(Failure(format!("your {answer} does not count: {reason}")));
        }
        Outcome::Counted { phase, progress } => match answer {
            Answer::Approve { .. } => {
                println!("approved {namespace}/{name} as {me} ({progress}); it is now {phase}")
            }
            Answer::Reject { .. } => {
                println!("rejected {namespace}/{name} as {me}; it is now {phase}")
            }
        },
    }
    Ok(())
}
