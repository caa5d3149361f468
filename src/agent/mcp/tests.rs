use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::tools::*;
use crate::api::annotations::REQUESTED_BY;
use crate::api::decision::{Criticality, DecisionStatus, Priority};
use crate::api::{Decision, DecisionPhase, ExecutionPlan};
use crate::request::{REQUESTED_THROUGH, Report, Request};

fn arguments(value: serde_json::Value) -> RequestApproval {
    serde_json::from_value(value).expect("arguments the schema admits")
}

#[test]
fn arguments_make_a_request_labelled_as_made_through_mcp() {
    let args = arguments(json!({
        "actionType": "deploy",
        "description": "  Deploy api-gateway 2.0  ",
        "criticality": "Critical",
        "priority": "Urgent",
        "context": {"service": "api-gateway", "replicas": 3},
        "plan": "ship",
        "onBehalfOf": "alice",
        "expiresAfter": "1h30m",
        "source": "agents/release-bot",
        "estimatedDurationMinutes": 15,
        "name": "ship-2-0",
    }));
    let request = args.request().unwrap();
    assert_eq!(
        request,
        Request {
            name: Some("ship-2-0".to_owned()),
            action_type: "deploy".to_owned(),
            description: "Deploy api-gateway 2.0".to_owned(),
            criticality: Some(Criticality::Critical),
            priority: Some(Priority::Urgent),
            estimated_duration_minutes: Some(15),
            source: Some("agents/release-bot".to_owned()),
            context: BTreeMap::from([
                ("replicas".to_owned(), json!(3)),
                ("service".to_owned(), json!("api-gateway")),
            ]),
            plan: Some("ship".to_owned()),
            on_behalf_of: Some("alice".to_owned()),
            expires_after: Some(crate::api::Duration("1h30m".to_owned())),
            not_before: None,
            labels: BTreeMap::from([(REQUESTED_THROUGH.to_owned(), THROUGH_MCP.to_owned())]),
        }
    );
    let d = request.decision();
    assert_eq!(d.metadata.labels.unwrap()[REQUESTED_THROUGH], "mcp");
}

#[test]
fn a_requester_claimed_in_the_arguments_is_not_part_of_the_request() {
    // Who asks comes from the credentials; an argument that says otherwise is ignored and
    // the context is passed on as written, where it claims nothing the API server believes.
    let args = arguments(json!({
        "actionType": "deploy",
        "description": "Deploy",
        "requestedBy": "cto",
        "context": {"requestedBy": "cto"},
    }));
    let d = args.request().unwrap().decision();
    assert!(d.status.is_none());
    assert!(d.metadata.annotations.is_none());
    assert_eq!(d.spec.context.unwrap()["requestedBy"], "cto");
}

#[test]
fn empty_optional_arguments_mean_unset() {
    let args = arguments(json!({
        "actionType": "restart_service",
        "description": "Restart",
        "name": "",
        "plan": " ",
        "onBehalfOf": "",
        "expiresAfter": "",
        "source": null,
    }));
    let request = args.request().unwrap();
    assert_eq!(request.name, None);
    assert_eq!(request.plan, None);
    assert_eq!(request.on_behalf_of, None);
    assert_eq!(request.expires_after, None);
    assert_eq!(request.source, None);
    assert_eq!(
        request.criticality, None,
        "the Decision defaults it to High"
    );
}

#[test]
fn a_duration_the_api_server_would_refuse_is_refused_in_words() {
    for bad in ["0s", "soon", "10 minutes", "-5m"] {
        let args =
            arguments(json!({"actionType": "deploy", "description": "d", "expiresAfter": bad}));
        let why = args.request().unwrap_err();
        assert!(why.starts_with("expiresAfter: "), "{why}");
        assert!(why.contains("for example 30m"), "{why}");
    }
}

#[test]
fn the_argument_schema_tells_an_agent_what_each_field_is() {
    let schema = serde_json::to_value(schemars::schema_for!(RequestApproval)).unwrap();
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["actionType", "description"]);
    let properties = schema["properties"].as_object().unwrap();
    for field in [
        "actionType",
        "description",
        "criticality",
        "priority",
        "context",
        "plan",
        "onBehalfOf",
        "expiresAfter",
        "source",
        "estimatedDurationMinutes",
        "name",
        "namespace",
    ] {
        let p = &properties[field];
        assert!(
            p["description"].as_str().is_some_and(|d| d.len() > 20),
            "{field} has no description: {p}"
        );
    }
    let text = schema.to_string();
    assert!(
        text.contains(r#"["Critical","High","Normal","Info"]"#),
        "{text}"
    );
}

#[test]
fn a_wait_lasts_the_default_unless_told_and_never_beyond_the_cap() {
    assert_eq!(wait_seconds(None), DEFAULT_WAIT_SECONDS);
    assert_eq!(wait_seconds(Some(30)), 30);
    assert_eq!(wait_seconds(Some(0)), 1);
    assert_eq!(wait_seconds(Some(86_400)), MAX_WAIT_SECONDS);
}

fn decision(name: &str, requested_by: Option<&str>, phase: Option<DecisionPhase>) -> Decision {
    let mut d = Request {
        name: Some(name.to_owned()),
        action_type: "deploy".to_owned(),
        description: "Deploy".to_owned(),
        ..Request::default()
    }
    .decision();
    d.metadata.namespace = Some("team".to_owned());
    if requested_by.is_some() || phase.is_some() {
        d.status = Some(DecisionStatus {
            phase,
            requested_by: requested_by.map(str::to_owned),
            ..DecisionStatus::default()
        });
    }
    d
}

#[test]
fn an_agent_lists_its_own_decisions_newest_first() {
    let me = "system:serviceaccount:team:bot";
    let created = |d: &mut Decision, secs: i64| {
        d.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap(),
        ));
    };
    let mut old = decision("old", Some(me), Some(DecisionPhase::Approved));
    created(&mut old, 0);
    let mut new = decision("new", Some(me), Some(DecisionPhase::Pending));
    created(&mut new, 60);
    let mut theirs = decision("theirs", Some("alice"), Some(DecisionPhase::Pending));
    created(&mut theirs, 30);
    // Not evaluated yet: only the annotation admission stamped says who asked.
    let mut fresh = decision("fresh", None, None);
    fresh
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(REQUESTED_BY.to_owned(), me.to_owned());
    created(&mut fresh, 90);

    let items = vec![old.clone(), theirs.clone(), new.clone(), fresh.clone()];
    let names = |reports: Vec<Report>| reports.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(own_decisions(items.clone(), me, false)),
        ["fresh", "new", "old"]
    );
    assert_eq!(names(own_decisions(items, me, true)), ["fresh", "new"]);

    let listed = OwnDecisions {
        namespace: "team".to_owned(),
        requester: me.to_owned(),
        decisions: own_decisions(vec![new], me, false),
    };
    assert!(listed.text().starts_with(&format!(
        "1 Decision(s) of {me} in namespace team:\n- new (Pending): "
    )));
    let none = OwnDecisions {
        decisions: Vec::new(),
        ..listed
    };
    assert_eq!(
        none.text(),
        format!("No Decisions of {me} in namespace team.")
    );
}

#[test]
fn the_next_step_says_whether_to_go_ahead() {
    let waiting = Report::of(&decision("ship", Some("bot"), Some(DecisionPhase::Pending)));
    assert_eq!(
        next_step(&waiting),
        "Do not go ahead yet: call wait_for_decision with name ship to wait for the answer."
    );
    let approved = Report::of(&decision(
        "ship",
        Some("bot"),
        Some(DecisionPhase::Approved),
    ));
    assert_eq!(next_step(&approved), "You may go ahead.");
    let rejected = Report::of(&decision(
        "ship",
        Some("bot"),
        Some(DecisionPhase::Rejected),
    ));
    assert_eq!(next_step(&rejected), "Do not go ahead.");
}

#[test]
fn a_wait_that_ran_out_says_it_still_waits_and_is_not_a_verdict() {
    let report = Report::of(&decision("ship", Some("bot"), Some(DecisionPhase::Pending)));
    let waited = Waited {
        timed_out: true,
        waited_seconds: 30,
        report,
    };
    assert!(
        waited
            .text()
            .starts_with("Still waiting after 30s: ship is Pending."),
        "{}",
        waited.text()
    );
    assert!(
        waited
            .text()
            .ends_with("Call wait_for_decision again to keep waiting; do not go ahead yet.")
    );
    let json = serde_json::to_value(&waited).unwrap();
    assert_eq!(json["timedOut"], true);
    assert_eq!(
        json["name"], "ship",
        "the report's fields are at the top level: {json}"
    );
    assert_eq!(json["phase"], "Pending");
    assert!(json.get("verdict").is_none());
}

#[test]
fn a_plan_is_summarised_with_what_it_is_for_and_what_it_runs() {
    let plan: ExecutionPlan = serde_json::from_value(json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "ExecutionPlan",
        "metadata": {"name": "ship", "namespace": "team"},
        "spec": {
            "actionTypes": ["deploy", "rollout"],
            "mode": "Real",
            "criticality": "High",
            "steps": [
                {"name": "migrate", "template": {"spec": {
                    "initContainers": [{"name": "wait", "image": "busybox"}],
                    "containers": [{"name": "main", "image": "migrate:1.2"}]}}},
                {"name": "roll", "template": {"spec": {"containers": [{"name": "main", "image": "kubectl:1.36"}]}}},
            ],
        },
        "status": {"phase": "Ready"},
    }))
    .unwrap();
    let unchecked: ExecutionPlan = serde_json::from_value(json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "ExecutionPlan",
        "metadata": {"name": "audit", "namespace": "team"},
        "spec": {"actionTypes": ["report_generation"], "steps": [{"name": "run", "template": {}}]},
    }))
    .unwrap();
    let plans = Plans::of("team", &[plan, unchecked]);
    let json = serde_json::to_value(&plans).unwrap();
    assert_eq!(
        json,
        json!({"namespace": "team", "plans": [
            {"name": "audit", "actionTypes": ["report_generation"], "mode": "DryRun",
             "steps": [{"name": "run", "images": []}], "phase": "Unchecked"},
            {"name": "ship", "actionTypes": ["deploy", "rollout"], "mode": "Real", "criticality": "High",
             "steps": [{"name": "migrate", "images": ["busybox", "migrate:1.2"]},
                       {"name": "roll", "images": ["kubectl:1.36"]}],
             "phase": "Ready"},
        ]})
    );
    assert_eq!(
        plans.text(),
        "ExecutionPlans in namespace team:\n- audit (DryRun, Unchecked): for report_generation; steps run\n- ship (Real, Ready): for deploy, rollout; steps migrate → roll"
    );
    assert_eq!(
        Plans::of("empty", &[]).text(),
        "No ExecutionPlans in namespace empty: a request there can only be a gate (no plan)."
    );
}

#[test]
fn a_progress_message_says_what_the_wait_is_on() {
    use crate::api::decision::{ExecutionStatus, StepPhase, StepStatus};
    let mut d = decision("ship", Some("bot"), None);
    d.status = None;
    assert_eq!(
        progress_message(&d),
        "ship is requested; the operator has not evaluated it yet"
    );
    let mut d = decision("ship", Some("bot"), Some(DecisionPhase::Pending));
    d.status.as_mut().unwrap().approval_progress = Some("1/2".to_owned());
    assert_eq!(
        progress_message(&d),
        "ship is Pending: waiting for people to answer (approvals 1/2)"
    );

    let step = |name: &str, phase: StepPhase| StepStatus {
        phase,
        ..serde_json::from_value(json!({"name": name, "phase": "Pending"})).unwrap()
    };
    let mut d = decision("ship", Some("bot"), Some(DecisionPhase::Executing));
    d.status.as_mut().unwrap().execution = Some(ExecutionStatus {
        steps: vec![
            step("one", StepPhase::Succeeded),
            step("two", StepPhase::Running),
            step("three", StepPhase::Pending),
        ],
        ..serde_json::from_value(json!({"mode": "Real"})).unwrap()
    });
    assert_eq!(
        progress_message(&d),
        "ship is running its plan: step 2 of 3 (two) Running"
    );
    let rejected = decision("ship", Some("bot"), Some(DecisionPhase::Rejected));
    assert_eq!(progress_message(&rejected), Report::of(&rejected).summary);
}

#[test]
fn sentences_are_joined_with_one_full_stop() {
    assert_eq!(
        sentences("It waits.", "Call again."),
        "It waits. Call again."
    );
    assert_eq!(
        sentences("approval is required", "Call again."),
        "approval is required. Call again."
    );
}

#[test]
fn a_bearer_token_is_read_from_an_authorization_header() {
    use super::bearer_token;
    assert_eq!(bearer_token("Bearer abc.def"), Some("abc.def".to_owned()));
    assert_eq!(bearer_token("bearer  abc "), Some("abc".to_owned()));
    assert_eq!(bearer_token("Basic dXNlcg=="), None);
    assert_eq!(bearer_token("Bearer "), None);
    assert_eq!(bearer_token("abc"), None);
}

#[test]
fn a_refusal_is_a_tool_error_in_the_api_server_s_words() {
    use crate::error::{describe_watch, testing};
    for (error, message) in testing::refusals() {
        let result = serde_json::to_value(super::refused(crate::agent::refusal(&error))).unwrap();
        assert_eq!(result["isError"], true, "{result:#}");
        testing::assert_told(result["content"][0]["text"].as_str().unwrap(), message);
        // A wait whose watch the API server refused.
        let watch = kube::runtime::watcher::Error::WatchFailed(error);
        let ended = crate::agent::WaitEnd::Failed(describe_watch(&watch)).to_string();
        testing::assert_told(&ended, message);
    }
}
