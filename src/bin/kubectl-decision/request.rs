//! `request`: ask for a Decision from a script or a CI job, and with `--wait` block until it
//! is settled, ending with an exit status the script can branch on.

use decision_gate::plugin::{printable, printable_json};
use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use decision_gate::agent::{self, WaitEnd};
use decision_gate::api::Decision;
use decision_gate::api::decision::{Criticality, Priority};
use decision_gate::api::duration::Duration as ManifestDuration;
use decision_gate::request::{REQUESTED_THROUGH, Report, Request, TIMED_OUT};
use kube::{Api, Client};

use super::Failure;

/// The exit status when the request could not be made or watched at all.
pub(crate) const NOT_ASKED: u8 = 4;

#[derive(Args)]
pub(crate) struct RequestArgs {
    /// The action asked for, such as deploy, delete_data or budget_spend.
    action_type: String,
    /// What will happen, in words an approver understands.
    #[arg(short = 'd', long)]
    description: String,
    /// Critical, High, Normal or Info.
    #[arg(short = 'c', long, default_value = "High", value_parser = criticality)]
    criticality: Criticality,
    /// Low, Medium, High or Urgent.
    #[arg(long, value_parser = priority)]
    priority: Option<Priority>,
    /// A detail of the request for spec.context, KEY=VALUE (repeatable); VALUE is read as
    /// JSON when it is JSON (numbers, true, objects), else as text. (--context is the
    /// kubeconfig context, as everywhere in kubectl.)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    details: Vec<String>,
    /// The ExecutionPlan to run once approved.
    #[arg(long)]
    plan: Option<String>,
    /// The person you act for; they may not approve this Decision.
    #[arg(long)]
    on_behalf_of: Option<String>,
    /// How long to wait for an answer before the Decision expires, such as 30m.
    #[arg(long)]
    expires_after: Option<String>,
    /// The requesting system, such as ci/deploy-pipeline.
    #[arg(long)]
    source: Option<String>,
    /// The expected duration of the action, in minutes.
    #[arg(long)]
    estimated_duration_minutes: Option<u32>,
    /// The Decision's name (default: made from the action type).
    #[arg(long)]
    name: Option<String>,
    /// Block until the Decision is settled: exit 0 approved (or its plan succeeded),
    /// 1 rejected or failed, 2 expired, 3 timed out, 4 the request could not be made.
    #[arg(long)]
    wait: bool,
    /// With --wait, how long to wait, such as 30m.
    #[arg(long, default_value = "1h")]
    timeout: String,
    /// Print the Decision as JSON on standard output (at the end, with --wait).
    #[arg(short = 'o', long, value_parser = ["json"])]
    output: Option<String>,
}

fn criticality(text: &str) -> Result<Criticality, String> {
    Criticality::ALL
        .iter()
        .copied()
        .find(|c| c.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| "one of Critical, High, Normal or Info".to_owned())
}

fn priority(text: &str) -> Result<Priority, String> {
    Priority::ALL
        .iter()
        .copied()
        .find(|p| p.as_str().eq_ignore_ascii_case(text))
        .ok_or_else(|| "one of Low, Medium, High or Urgent".to_owned())
}

/// `KEY=VALUE` pairs as a context object.
fn context(pairs: &[String]) -> Result<BTreeMap<String, serde_json::Value>, Failure> {
    pairs
        .iter()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| Failure(format!("--set {pair}: expected KEY=VALUE")))?;
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_owned()));
            Ok((key.to_owned(), value))
        })
        .collect()
}

impl RequestArgs {
    fn request(&self) -> Result<Request, Failure> {
        let expires_after = match &self.expires_after {
            Some(text) => {
                let d = ManifestDuration(text.clone());
                d.parse().map_err(|e| Failure(e.to_string()))?;
                Some(d)
            }
            None => None,
        };
        Ok(Request {
            name: self.name.clone(),
            action_type: self.action_type.clone(),
            description: self.description.clone(),
            criticality: Some(self.criticality),
            priority: self.priority,
            estimated_duration_minutes: self.estimated_duration_minutes,
            source: self.source.clone(),
            context: context(&self.details)?,
            plan: self.plan.clone(),
            on_behalf_of: self.on_behalf_of.clone(),
            expires_after,
            not_before: None,
            labels: [(REQUESTED_THROUGH.to_owned(), "kubectl".to_owned())].into(),
        })
    }
}

/// Runs `request`; the exit status is the verdict's with `--wait`, else 0.
pub(crate) async fn request(
    client: &Client,
    namespace: &str,
    args: &RequestArgs,
) -> Result<u8, Failure> {
    let request = args.request()?;
    let limit = decision_gate::api::duration::parse(&args.timeout)
        .map_err(|e| Failure(format!("--timeout: {e}")))?;
    let api: Api<Decision> = Api::namespaced(client.clone(), namespace);
    let created = agent::submit(&api, &request).await.map_err(Failure)?;
    let name = created.metadata.name.clone().unwrap_or_default();
    eprintln!("decision/{name} requested in namespace {namespace}");
    if !args.wait {
        let evaluated = agent::watch_until(
            &api,
            &name,
            Duration::from_secs(10),
            decision_gate::request::evaluated,
            |_| {},
        )
        .await
        .ok();
        let d = evaluated.unwrap_or(created);
        print_outcome(&d, args.output.is_some());
        return Ok(0);
    }
    let mut said = String::new();
    let waited = agent::wait_for_verdict(&api, &name, limit, |d| {
        let summary = Report::of(d).summary;
        if summary != said {
            eprintln!("{}", printable(&summary));
            said = summary;
        }
    })
    .await;
    match waited {
        Ok((verdict, d)) => {
            print_outcome(&d, args.output.is_some());
            Ok(verdict.exit_code())
        }
        Err(WaitEnd::TimedOut(last)) => {
            eprintln!(
                "timed out after {}: decision/{name} is still not settled",
                args.timeout
            );
            if let Some(d) = last {
                print_outcome(&d, args.output.is_some());
            }
            Ok(TIMED_OUT)
        }
        Err(end) => Err(Failure(format!("decision/{name}: {end}"))),
    }
}

fn print_outcome(d: &Decision, json: bool) {
    if json {
        println!(
            "{}",
            printable_json(
                &serde_json::to_string_pretty(d)
                    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
            )
        );
    } else {
        let report = Report::of(d);
        match report.verdict {
            Some(v) => println!("{}: {}", v, printable(&report.summary)),
            None => println!("{}: {}", report.phase, printable(&report.summary)),
        }
    }
}

/// Keeps the verdict names and exit codes documented in `--help` in step with the core.
#[cfg(test)]
mod tests {
    use super::*;
    use decision_gate::request::Verdict;

    #[test]
    fn the_documented_exit_codes_are_the_verdicts() {
        assert_eq!(Verdict::Approved.exit_code(), 0);
        assert_eq!(Verdict::Succeeded.exit_code(), 0);
        assert_eq!(Verdict::Rejected.exit_code(), 1);
        assert_eq!(Verdict::Failed.exit_code(), 1);
        assert_eq!(Verdict::Expired.exit_code(), 2);
        assert_eq!(TIMED_OUT, 3);
        assert_eq!(NOT_ASKED, 4);
    }

    #[test]
    fn context_values_are_json_when_they_read_as_json() {
        let c = context(&[
            "amount=250".to_owned(),
            "service=api-gateway".to_owned(),
            "tags=[\"a\",\"b\"]".to_owned(),
        ])
        .ok()
        .unwrap();
        assert_eq!(c["amount"], serde_json::json!(250));
        assert_eq!(c["service"], serde_json::json!("api-gateway"));
        assert_eq!(c["tags"], serde_json::json!(["a", "b"]));
        assert!(context(&["novalue".to_owned()]).is_err());
    }
}
