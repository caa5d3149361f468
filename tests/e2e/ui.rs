//! `kubectl decision ui` in a real browser: bob reviews a Decision and its plan on the page
//! and approves it; dave, who may not answer, is told so in the admission policy's words.

use std::path::PathBuf;

use decision_gate::api::annotations;
use decision_gate::api::{Decision, DecisionPhase, ExecutionPlan};
use kube::{Api, ResourceExt};

use crate::support::*;

const POLICY: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {name: gate}\nspec: {rules: [{name: deploys-need-an-approver, match: {actionTypes: [deploy]}, outcome: RequireApproval, approvers: {groups: [approvers]}}]}\n";

const PLAN: &str = "apiVersion: decisiongate.io/v1alpha1\nkind: ExecutionPlan\nmetadata: {name: roll-out}\nspec: {mode: DryRun, actionTypes: [deploy], rollbackStrategy: None, steps: [{name: migrate, template: {spec: {serviceAccountName: migrator, restartPolicy: Never, containers: [{name: main, image: 'flyway/flyway:10', args: [migrate, '-target=42']}]}}}, {name: deploy, template: {spec: {restartPolicy: Never, containers: [{name: main, image: 'registry.k8s.io/kubectl:v1.36.3', command: [kubectl, rollout, restart, deployment/api]}]}}}]}\n";

fn deploy(name: &str, what: &str) -> String {
    decision(
        name,
        &format!(
            "{{actionType: deploy, description: {what}, criticality: High, priority: High, source: agents/release-bot, context: {{service: api, version: 2.0.0}}, planRef: {{name: roll-out}}}}"
        ),
    )
}

/// Waits until the Decision waits for an answer with its plan pinned.
async fn pinned_and_pending(api: &Api<Decision>, name: &str) -> Decision {
    wait_for(
        api,
        name,
        "Pending with its plan pinned",
        |d: Option<&Decision>| {
            phase(d) == Some(DecisionPhase::Pending)
                && d.and_then(|d| d.status.as_ref())
                    .is_some_and(|s| s.plan.is_some())
        },
    )
    .await
}

#[tokio::test]
async fn approvers_review_and_answer_in_the_browser() {
    let ns = TestNamespace::new("ui").await;
    let n = ns.name.as_str();
    grant_answering(n);
    bind_role(n, "decision-gate-auditor", "User", &["bob"]);
    bind_role(n, "decision-gate-viewer", "User", &["dave"]);
    // dave may write Decisions too, but holds no "approve": the admission policy decides.
    apply(n, "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: patch-decisions}\nrules:\n- {apiGroups: [decisiongate.io], resources: [decisions], verbs: [patch]}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: patch-decisions}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: patch-decisions}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: User, name: dave}\n").success();
    apply(
        n,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: migrator}\n",
    )
    .success();
    let (_operator, _relay) = operator_behind_service(n).await;
    apply(n, POLICY).success();
    apply(n, PLAN).success();
    let plans: Api<ExecutionPlan> = Api::namespaced(admin().await, n);
    wait_for(
        &plans,
        "roll-out",
        "checked",
        |p: Option<&ExecutionPlan>| {
            p.and_then(|p| p.status.as_ref())
                .is_some_and(|s| s.phase.is_some())
        },
    )
    .await;
    apply(n, &deploy("deploy-api", "Deploy api 2.0 to production")).success();
    apply(n, &deploy("deploy-web", "Deploy web 2.0 to production")).success();
    let api: Api<Decision> = Api::namespaced(admin().await, n);
    let d = pinned_and_pending(&api, "deploy-api").await;
    let status = d.status.unwrap();
    // The page shows the plan's digest and, what an approval confirms, the Decision's.
    let plan_digest = status.plan.unwrap().digest;
    let digest = status.digest.expect("an evaluated Decision has a digest");
    pinned_and_pending(&api, "deploy-web").await;
    wait_can_read_audit("bob", n).await;

    let bob = ReviewPage::start("bob", n, n);

    // Without this run's secret the page serves nothing, and a change from another origin
    // is refused even with it.
    let http = reqwest::Client::new();
    let status = http
        .get(format!("{}/api/decisions", bob.origin()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let forged = http
        .post(format!(
            "{}/api/decisions/{n}/deploy-api/answer",
            bob.origin()
        ))
        .header("Cookie", bob.cookie())
        .header("Origin", "http://127.0.0.1:1")
        .header("Content-Type", "application/json")
        .body(r#"{"answer":"approve","reason":"forged"}"#)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(forged, 403);

    let browser = Browser::start().await;
    browser.open(&bob.url).await;
    // The secret leaves the address bar once the cookie holds it.
    let address = browser.script("return location.href;").await;
    assert!(!address.as_str().unwrap().contains("token="), "{address}");

    // The list: what waits, with its plan's steps.
    let link = format!(r##"#decisions a[href="#/{n}/deploy-api"]"##);
    let item = browser
        .wait_text(&link, "the pending Decision in the list", |t| {
            t.contains("deploy-api")
        })
        .await;
    assert!(item.contains("Deploy api 2.0 to production"), "{item}");
    assert!(item.contains("Plan: migrate → deploy"), "{item}");
    assert!(item.contains("approvals 0/1"), "{item}");
    browser.click(&link).await;

    // The Decision: everything an approver needs.
    browser
        .wait_text("#detail-title", "the Decision's page", |t| {
            t.starts_with("deploy-api")
        })
        .await;
    let page = browser
        .wait_text("#detail-body", "the plan's steps", |t| {
            t.contains("migrate")
        })
        .await;
    for needle in [
        "Deploy api 2.0 to production",
        "agents/release-bot",
        "Requested by\nadmin",
        "version\n2.0.0",
        "Risk: ",
        "policy gate, rule deploys-need-an-approver",
        "groups approvers",
        "Still needed: 1 more approval(s), from groups approvers.",
        "Plan roll-out",
        "flyway/flyway:10",
        "migrate -target=42",
        "ServiceAccount migrator in ",
        "kubectl rollout restart deployment/api",
        "the default ServiceAccount in ",
        &plan_digest,
        &digest,
    ] {
        assert!(page.contains(needle), "no {needle:?} on the page:\n{page}");
    }
    let verdict = browser.text("#dry-run").await.unwrap();
    assert!(
        verdict.starts_with("Ready") || verdict.starts_with("Invalid"),
        "{verdict}"
    );
    let expiry = browser.text("#expiry").await.unwrap();
    assert!(expiry.starts_with("expires in 23h"), "{expiry}");
    browser
        .wait_text("#audit", "the audit trail", |t| {
            t.contains("approval_requested")
        })
        .await;

    // Approve with a reason.
    browser.type_into("#reason", "migration reviewed").await;
    browser.screenshot(&screenshot_path()).await;
    browser.click("#approve").await;
    let outcome = browser
        .wait_text("#outcome", "the outcome", |t| {
            !t.is_empty() && !t.ends_with('…')
        })
        .await;
    assert!(
        outcome.starts_with(&format!("approved {n}/deploy-api as bob (1/1)")),
        "{outcome}"
    );
    let status = api.get("deploy-api").await.unwrap().status.unwrap();
    let approval = status
        .approvals
        .iter()
        .find(|a| a.approver == "bob")
        .unwrap_or_else(|| panic!("bob's approval is not recorded: {status:#?}"));
    assert_eq!(approval.reason.as_deref(), Some("migration reviewed"));
    assert_eq!(approval.digest.as_deref(), Some(digest.as_str()));
    // The page follows: the approval is listed and the Decision leaves the list.
    browser
        .wait_text("#approvals", "bob's approval on the page", |t| {
            t.contains("bob") && t.contains("migration reviewed")
        })
        .await;
    browser
        .wait_text("#decisions", "the list without deploy-api", |t| {
            !t.contains("deploy-api") && t.contains("deploy-web")
        })
        .await;

    // dave may read Decisions but not answer them: the page says why, in the admission
    // policy's words, and nothing is recorded. He may not read the audit log either, and
    // the page says that too and works otherwise.
    let dave = ReviewPage::start("dave", n, n);
    browser.open(&dave.url).await;
    let link = format!(r##"#decisions a[href="#/{n}/deploy-web"]"##);
    browser
        .wait_text(&link, "the pending Decision in dave's list", |t| {
            t.contains("deploy-web")
        })
        .await;
    browser.click(&link).await;
    browser
        .wait_text("#detail-body", "deploy-web's plan", |t| {
            t.contains("deploy-web") && t.contains("flyway/flyway:10")
        })
        .await;
    let note = browser
        .wait_text("#audit-note", "why the audit trail is missing", |t| {
            t.starts_with("the audit trail is not available")
        })
        .await;
    assert!(note.contains("forbidden"), "{note}");
    browser.type_into("#reason", "looks fine to me").await;
    browser.click("#approve").await;
    let outcome = browser
        .wait_text("#outcome", "the refusal", |t| {
            !t.is_empty() && !t.ends_with('…')
        })
        .await;
    assert!(
        outcome.starts_with("refused by the admission policy")
            && outcome.contains("dave may not answer Decisions"),
        "{outcome}"
    );
    let web = api.get("deploy-web").await.unwrap();
    assert!(!web.annotations().contains_key(annotations::APPROVED_BY));

    // On a phone's width the page fits without scrolling sideways, and the answer's
    // controls are labelled and within reach.
    browser.resize(390, 844).await;
    let fits = browser
        .script(
            "const reason = document.getElementById('reason');
             const approve = document.getElementById('approve').getBoundingClientRect();
             return document.documentElement.scrollWidth <= window.innerWidth
               && reason.labels.length === 1
               && approve.left >= 0 && approve.right <= window.innerWidth;",
        )
        .await;
    assert_eq!(
        fits,
        serde_json::json!(true),
        "the page does not fit a phone"
    );
    let status = web.status.unwrap();
    assert!(status.approvals.is_empty(), "{status:#?}");
    assert_eq!(status.phase, Some(DecisionPhase::Pending));

    // Where dave holds no role at all, the page shows the API server's refusal instead of
    // a list.
    let elsewhere = TestNamespace::new("ui-no-role").await;
    let nowhere = ReviewPage::start("dave", &elsewhere.name, &elsewhere.name);
    browser.open(&nowhere.url).await;
    let refusal = browser
        .wait_text("#watch", "the refusal to list Decisions", |t| {
            t.contains("forbidden")
        })
        .await;
    assert!(refusal.contains(r#"User "dave" cannot list"#), "{refusal}");
    let list = browser.text("#decisions").await.unwrap_or_default();
    assert_eq!(list.trim(), "", "a list was shown: {list}");
}

/// Where the screenshot of the review page goes: the README's image when
/// DECISION_GATE_UPDATE_SCREENSHOT=1, else beside the other test logs.
fn screenshot_path() -> PathBuf {
    if std::env::var("DECISION_GATE_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        repo_root().join("docs/images/review-page.png")
    } else {
        repo_root().join("target/e2e-logs/review-page.png")
    }
}
