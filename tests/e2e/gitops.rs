//! Argo CD syncs applications that hold Decisions: its real application controller and
//! repo server (hack/argocd.sh), configured with the chart's health checks as
//! charts/decision-gate/argocd/README.md says, syncing from git repositories on loopback.
//! Every statement of that README is shown here.

use decision_gate::api::{Decision, DecisionPhase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, ServiceAccount};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::support::*;

/// An ExecutionPlan in sync wave -2, so that it is checked before the Decision that
/// refers to it: one step that takes `delay`.
fn plan(delay: &str) -> String {
    format!(
        r#"apiVersion: decisiongate.io/v1alpha1
kind: ExecutionPlan
metadata:
  name: ship
  annotations: {{argocd.argoproj.io/sync-wave: "-2"}}
spec:
  actionTypes: [deploy]
  mode: Real
  rollbackStrategy: None
  steps:
  - name: check
    template:
      metadata:
        annotations: {{decisiongate.io/test-delay: {delay}, decisiongate.io/test-result: checked}}
      spec:
        restartPolicy: Never
        containers: [{{name: check, image: busybox}}]
"#
    )
}

/// A Decision in sync wave -1 (the gate), with more of its spec in YAML flow style.
fn gate(name: &str, description: &str, more: &str) -> String {
    format!(
        r#"apiVersion: decisiongate.io/v1alpha1
kind: Decision
metadata:
  name: {name}
  annotations: {{argocd.argoproj.io/sync-wave: "-1"}}
spec: {{actionType: deploy, description: {description}, criticality: High{more}}}
"#
    )
}

/// What the gate guards, in wave 0.
fn web(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: busybox}}]}}
"#
    )
}

/// A test's namespace (where its Decisions are answered by the approvers), its operator
/// (allowed to run Real plans) and its git repository.
async fn gated(prefix: &str) -> (TestNamespace, Operator, GitRepo) {
    let ns = TestNamespace::new(prefix).await;
    grant_answering(&ns.name);
    let operator = Operator::start_allowing_real(&ns.name).await;
    let repo = GitRepo::new(prefix);
    (ns, operator, repo)
}

async fn deployment(namespace: &str) -> Option<Deployment> {
    let api: Api<Deployment> = Api::namespaced(admin().await, namespace);
    api.get_opt("web").await.unwrap()
}

fn waits_on(app: &Value, decision: &str) -> bool {
    let (phase, message) = operation(app);
    phase == "Running" && message.contains(&format!("decisiongate.io/Decision/{decision}"))
}

fn succeeded_synced_healthy(app: &Value) -> bool {
    operation(app).0 == "Succeeded" && sync_and_health(app) == ("Synced", "Healthy")
}

/// The message of the sync's result for one resource.
fn result_of<'a>(app: &'a Value, kind: &str, name: &str) -> &'a str {
    app["status"]["operationState"]["syncResult"]["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .and_then(|r| r["message"].as_str())
        .unwrap_or("")
}

/// Commits `files` (paths under app/) and creates an Application of app/ into `namespace`,
/// synced by hand, and starts its first sync.
async fn synced_by_hand(repo: &GitRepo, namespace: &str, files: &[(&str, &str)]) -> Application {
    for (path, content) in files {
        repo.write(&format!("app/{path}"), content);
    }
    repo.commit("the application");
    let app = Application::of_directory(repo, "app", namespace, Value::Null).await;
    app.sync().await;
    app
}

/// Commits what the working copy holds and syncs the application to it: the revision.
async fn commit_and_sync(app: &Application, repo: &GitRepo, message: &str) -> String {
    let revision = repo.commit(message);
    app.refresh().await;
    app.sync().await;
    revision
}

#[tokio::test]
async fn a_sync_waits_at_the_decision_and_applies_the_later_wave_once_approved_and_run() {
    let (ns, _operator, repo) = gated("gitops-wait").await;
    let n = ns.name.as_str();
    let app = synced_by_hand(
        &repo,
        n,
        &[
            ("plan.yaml", &plan("4s")),
            (
                "gate.yaml",
                &gate("ship-web-1", "Ship web 1", ", planRef: {name: ship}"),
            ),
            ("web.yaml", &web(1)),
        ],
    )
    .await;

    // Applied, the Decision waits for people; the sync waits on it, wave 0 unapplied.
    let decisions: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&decisions, "ship-web-1", DecisionPhase::Pending).await;
    // The application's health is its worst resource's: the Deployment that wave 0 has
    // not created yet.
    let waiting = app
        .wait("waiting on the Decision, Missing", |a| {
            waits_on(a, "ship-web-1") && sync_and_health(a) == ("OutOfSync", "Missing")
        })
        .await;
    assert!(deployment(n).await.is_none(), "{:#}", waiting["status"]);
    app.refresh().await;
    assert!(waits_on(&app.get().await, "ship-web-1"));
    assert!(deployment(n).await.is_none());

    // Approved, its plan runs; the sync still waits, wave 0 still unapplied.
    plugin(
        "alice",
        &["approve", "ship-web-1", "-n", n, "-r", "ship it"],
    )
    .success();
    reaches(&decisions, "ship-web-1", DecisionPhase::Executing).await;
    assert!(waits_on(&app.get().await, "ship-web-1"));
    assert!(deployment(n).await.is_none());

    // Once the plan succeeded, wave 0 applies and the application is Synced and Healthy.
    reaches(&decisions, "ship-web-1", DecisionPhase::Succeeded).await;
    let done = app
        .wait("synced and healthy", succeeded_synced_healthy)
        .await;
    assert!(deployment(n).await.is_some(), "{:#}", done["status"]);
}

#[tokio::test]
async fn a_rejection_or_an_expiry_fails_the_sync_naming_the_decision_before_the_later_wave() {
    let (ns, _operator, repo) = gated("gitops-no").await;
    let n = ns.name.as_str();
    let app = synced_by_hand(
        &repo,
        n,
        &[
            ("gate.yaml", &gate("ship-web-1", "Ship web 1", "")),
            ("web.yaml", &web(1)),
        ],
    )
    .await;
    app.wait("waiting on the Decision", |a| waits_on(a, "ship-web-1"))
        .await;

    plugin(
        "bob",
        &["reject", "ship-web-1", "-n", n, "-r", "not during the sale"],
    )
    .success();
    let failed = app
        .wait("failed, Degraded", |a| {
            operation(a).0 == "Failed" && sync_and_health(a).1 == "Degraded"
        })
        .await;
    let message = result_of(&failed, "Decision", "ship-web-1");
    assert!(
        message.contains("not during the sale"),
        "{:#}",
        failed["status"]["operationState"]
    );
    assert!(deployment(n).await.is_none());

    // Nobody answers the next one: it expires, and that sync fails the same way.
    repo.write(
        "app/gate.yaml",
        &gate("ship-web-2", "Ship web 1 again", ", expiresAfter: 5s"),
    );
    commit_and_sync(&app, &repo, "ask again, briefly").await;
    app.wait("waiting on the second Decision", |a| {
        waits_on(a, "ship-web-2")
    })
    .await;
    let decisions: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&decisions, "ship-web-2", DecisionPhase::Expired).await;
    let expired = app
        .wait("failed again", |a| {
            operation(a).0 == "Failed" && !result_of(a, "Decision", "ship-web-2").is_empty()
        })
        .await;
    assert!(
        result_of(&expired, "Decision", "ship-web-2").contains("xpired"),
        "{:#}",
        expired["status"]["operationState"]
    );
    assert!(deployment(n).await.is_none());
}

#[tokio::test]
async fn argo_cd_cannot_answer_a_waiting_decision_through_git() {
    let (ns, _operator, repo) = gated("gitops-forge").await;
    let n = ns.name.as_str();
    let app = synced_by_hand(
        &repo,
        n,
        &[("gate.yaml", &gate("ship-web-1", "Ship web 1", ""))],
    )
    .await;
    let decisions: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&decisions, "ship-web-1", DecisionPhase::Pending).await;
    // Argo CD's ServiceAccount may write anything (its ClusterRole is `*`), yet an answer
    // committed to git is applied as that ServiceAccount, which is not the approver it
    // names, and which asked for the Decision.
    let answer = |key: &str, name: &str| {
        gate("ship-web-1", "Ship web 1", "")
            .replace("annotations: {", &format!("annotations: {{{key}: {name}, "))
    };
    fails_to_sync(
        &app,
        &repo,
        &answer("approved-by", "alice"),
        "argocd-application-controller, so approved-by may only name you, not alice",
    )
    .await;
    fails_to_sync(
        &app,
        &repo,
        &answer(
            "approved-by",
            "system:serviceaccount:argocd:argocd-application-controller",
        ),
        "requested this Decision and cannot approve it",
    )
    .await;
    let waiting = decisions.get("ship-web-1").await.unwrap();
    assert_eq!(phase(Some(&waiting)), Some(DecisionPhase::Pending));
    assert!(!waiting.annotations().contains_key("approved-by"));
    assert!(Operator::audited(n, "approval_granted").is_empty());
}

#[tokio::test]
async fn a_decision_in_the_last_wave_is_not_waited_on() {
    let (ns, _operator, repo) = gated("gitops-last").await;
    let n = ns.name.as_str();
    let app = synced_by_hand(
        &repo,
        n,
        &[("gate.yaml", &gate("ship-web-1", "Ship web 1", ""))],
    )
    .await;
    // The sync ends once the Decision is applied; the application waits on it: Suspended.
    let synced = app
        .wait("synced, Suspended", |a| {
            operation(a).0 == "Succeeded" && sync_and_health(a) == ("Synced", "Suspended")
        })
        .await;
    let decisions: Api<Decision> = Api::namespaced(admin().await, n);
    let pending = decisions.get("ship-web-1").await.unwrap();
    assert_eq!(
        phase(Some(&pending)),
        Some(DecisionPhase::Pending),
        "{:#}",
        synced["status"]
    );
}

#[tokio::test]
async fn server_side_apply_keeps_approvals_and_the_recorded_requester() {
    let (ns, _operator, repo) = gated("gitops-ssa").await;
    let n = ns.name.as_str();
    repo.write("app/gate.yaml", &gate("ship-web-1", "Ship web 1", ""));
    repo.write("app/web.yaml", &web(1));
    repo.commit("web 1, behind a Decision");
    let app = Application::of_directory(
        &repo,
        "app",
        n,
        json!({"syncOptions": ["ServerSideApply=true"]}),
    )
    .await;
    app.sync().await;
    app.wait("waiting on the Decision", |a| waits_on(a, "ship-web-1"))
        .await;
    plugin("alice", &["approve", "ship-web-1", "-n", n]).success();
    app.wait("synced and healthy", succeeded_synced_healthy)
        .await;
    let decisions: Api<Decision> = Api::namespaced(admin().await, n);
    let approved = decisions.get("ship-web-1").await.unwrap();

    // Argo CD applies the Decision again as its own field manager, which owns what the
    // admission policy added when it created it; what people wrote is theirs.
    repo.write("app/web.yaml", &web(2));
    let revision = commit_and_sync(&app, &repo, "web with two replicas").await;
    let synced = app
        .wait("synced at the new revision", |a| {
            succeeded_synced_healthy(a) && a["status"]["sync"]["revision"] == revision.as_str()
        })
        .await;
    let after = decisions.get("ship-web-1").await.unwrap();
    assert_eq!(after.uid(), approved.uid());
    for key in ["decisiongate.io/requested-by", "approved-by"] {
        assert_eq!(
            after.annotations().get(key),
            approved.annotations().get(key),
            "{key}: {:#}",
            synced["status"]["operationState"]
        );
    }
    assert_eq!(after.status, approved.status);
    // It was applied server-side.
    let managers: Vec<_> = after
        .managed_fields()
        .iter()
        .map(|m| (m.manager.clone(), m.operation.clone()))
        .collect();
    assert!(
        managers.contains(&(Some("argocd-controller".into()), Some("Apply".into()))),
        "{managers:?}"
    );
}

/// The example application (examples/gitops), as a user would install it: its Application
/// pointed at this test's repository and namespace.
async fn example_application(repo: &GitRepo, namespace: &str) -> Application {
    let text =
        std::fs::read_to_string(repo_root().join("examples/gitops/application.yaml")).unwrap();
    let mut manifest: Value = yaml_serde::from_str(&text).unwrap();
    manifest["metadata"]["name"] = json!(namespace);
    manifest["spec"]["source"]["repoURL"] = json!(repo.url);
    manifest["spec"]["destination"]["namespace"] = json!(namespace);
    Application::create(manifest).await
}

async fn jobs_in(namespace: &str) -> Vec<String> {
    let api: Api<Job> = Api::namespaced(admin().await, namespace);
    let jobs = api.list(&ListParams::default()).await.unwrap().items;
    jobs.iter().map(|j| j.name_any()).collect()
}

#[tokio::test]
async fn self_heal_keeps_approvals_runs_each_plan_once_and_each_revision_asks_once() {
    let (ns, _operator, repo) = gated("gitops-heal").await;
    let n = ns.name.as_str();
    repo.copy_dir(&repo_root().join("examples/gitops/web"), "web");
    let first = repo.commit("web, behind a Decision per revision");
    let app = example_application(&repo, n).await;

    // Auto-sync starts on its own and waits on the revision's Decision.
    let gate1 = format!("ship-web-{}", &first[..7]);
    let decisions: Api<Decision> = Api::namespaced(admin().await, n);
    reaches(&decisions, &gate1, DecisionPhase::Pending).await;
    app.wait("waiting on the Decision", |a| waits_on(a, &gate1))
        .await;
    assert!(deployment(n).await.is_none());
    plugin("alice", &["approve", &gate1, "-n", n, "-r", "reviewed"]).success();
    reaches(&decisions, &gate1, DecisionPhase::Succeeded).await;
    app.wait("synced and healthy", succeeded_synced_healthy)
        .await;
    let approved = decisions.get(&gate1).await.unwrap();
    let jobs_before = jobs_in(n).await;
    assert_eq!(jobs_before.len(), 1, "{jobs_before:?}");

    // Someone scales the Deployment by hand; self-heal puts it back, syncing the whole
    // application again: the Decision is applied again and nothing else happens to it.
    let deployments: Api<Deployment> = Api::namespaced(admin().await, n);
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    wait_for(
        &deployments,
        "web",
        "healed to 2 replicas",
        |d: Option<&Deployment>| {
            d.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas) == Some(2)
        },
    )
    .await;
    app.refresh().await;
    let healed = app
        .wait(
            "synced and healthy after self-heal",
            succeeded_synced_healthy,
        )
        .await;
    let after = decisions.get(&gate1).await.unwrap();
    assert_eq!(after.uid(), approved.uid(), "{:#}", healed["status"]);
    assert_eq!(
        after.annotations().get("approved-by").map(String::as_str),
        Some("alice")
    );
    assert_eq!(after.status, approved.status);
    assert_eq!(jobs_in(n).await, jobs_before);
    let started = |decision: &str| {
        Operator::audited(n, "execution_started")
            .iter()
            .filter(|e| e["decision"]["name"] == decision)
            .count()
    };
    assert_eq!(started(&gate1), 1);

    // A new revision asks again, under its own name: the sync waits, the Deployment keeps
    // its old spec, and the earlier Decision is pruned only once the sync completes.
    repo.write(
        "web/values.yaml",
        &std::fs::read_to_string(repo_root().join("examples/gitops/web/values.yaml"))
            .unwrap()
            .replace("replicas: 2", "replicas: 3"),
    );
    let second = repo.commit("three replicas");
    let gate2 = format!("ship-web-{}", &second[..7]);
    app.refresh().await;
    reaches(&decisions, &gate2, DecisionPhase::Pending).await;
    // What runs is Healthy, the new Decision Suspended: the application shows Suspended.
    app.wait("Suspended, waiting on the new Decision", |a| {
        waits_on(a, &gate2) && sync_and_health(a) == ("OutOfSync", "Suspended")
    })
    .await;
    let unchanged = deployments.get("web").await.unwrap();
    assert_eq!(unchanged.spec.unwrap().replicas, Some(2));
    assert!(decisions.get_opt(&gate1).await.unwrap().is_some());
    plugin("alice", &["approve", &gate2, "-n", n, "-r", "reviewed"]).success();
    reaches(&decisions, &gate2, DecisionPhase::Succeeded).await;
    app.wait("synced and healthy at the new revision", |a| {
        succeeded_synced_healthy(a) && a["status"]["sync"]["revision"] == second.as_str()
    })
    .await;
    assert_eq!(
        deployments.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
    wait_gone(&decisions, &gate1).await;
    // The pruned Decision is audited as deleted, with what it asked and how it ended.
    let deleted = Operator::audited(n, "decision_deleted");
    assert!(
        deleted
            .iter()
            .any(|e| e["decision"]["name"] == gate1.as_str()
                && e["details"]["status"]["phase"] == "Succeeded"),
        "{deleted:#?}"
    );
    assert_eq!(started(&gate1), 1);
    assert_eq!(started(&gate2), 1);
    // Pruning a Decision removes its Jobs; the new one ran its step once.
    let jobs = jobs_in(n).await;
    assert!(
        jobs.len() == 1 && !jobs.contains(&jobs_before[0]),
        "{jobs:?}"
    );
}

/// Commits `gate` as the application's Decision and syncs it: the sync of that revision
/// fails, and Argo CD says `why` (in the operation's message, or its result for a resource).
async fn fails_to_sync(app: &Application, repo: &GitRepo, gate: &str, why: &str) -> Value {
    repo.write("app/gate.yaml", gate);
    let revision = commit_and_sync(app, repo, why).await;
    let failed = app
        .wait("failed at the new revision", |a| {
            operation(a).0 == "Failed"
                && a["status"]["operationState"]["syncResult"]["revision"] == revision.as_str()
        })
        .await;
    assert!(
        serde_json::to_string(&failed["status"]["operationState"])
            .unwrap()
            .contains(why),
        "{:#}",
        failed["status"]["operationState"]
    );
    failed
}

#[tokio::test]
async fn a_changed_spec_fails_the_sync_and_a_presync_hook_asks_on_every_sync() {
    let (ns, _operator, repo) = gated("gitops-change").await;
    let n = ns.name.as_str();
    let app = synced_by_hand(
        &repo,
        n,
        &[
            ("gate.yaml", &gate("ship-web", "Ship web 1", "")),
            ("web.yaml", &web(1)),
        ],
    )
    .await;
    app.wait("waiting on the Decision", |a| waits_on(a, "ship-web"))
        .await;
    plugin("alice", &["approve", "ship-web", "-n", n]).success();
    app.wait("synced and healthy", succeeded_synced_healthy)
        .await;

    // A new revision that keeps the Decision as it was asks nobody: the Decision is
    // Healthy, and the sync goes through to wave 0.
    repo.write("app/web.yaml", &web(3));
    let unasked = commit_and_sync(&app, &repo, "web with three replicas, same Decision").await;
    app.wait("synced at the new revision without asking", |a| {
        succeeded_synced_healthy(a) && a["status"]["sync"]["revision"] == unasked.as_str()
    })
    .await;
    assert_eq!(deployment(n).await.unwrap().spec.unwrap().replicas, Some(3));

    // The same name with another spec: the API server refuses the change, and the sync
    // fails saying why. The approved Decision stays as it was.
    let refused = fails_to_sync(
        &app,
        &repo,
        &gate("ship-web", "Ship web 2", ""),
        "spec is immutable: an approval binds to exactly what was asked",
    )
    .await;
    assert_eq!(sync_and_health(&refused).0, "OutOfSync");
    let decisions: Api<Decision> = Api::namespaced(admin().await, n);
    let kept = decisions.get("ship-web").await.unwrap();
    assert_eq!(kept.spec.description, "Ship web 1");
    assert_eq!(phase(Some(&kept)), Some(DecisionPhase::Approved));

    // An approval committed to git: the API server refuses a Decision created already
    // answered, so the sync fails and nothing is created.
    fails_to_sync(
        &app,
        &repo,
        &gate("ship-web-git", "Ship web 2", "")
            .replace("annotations: {", "annotations: {approved-by: alice, "),
        "a Decision cannot be created already answered",
    )
    .await;
    assert!(decisions.get_opt("ship-web-git").await.unwrap().is_none());

    // generateName, outside a hook: Argo CD applies, and apply needs a name.
    fails_to_sync(
        &app,
        &repo,
        &gate("ship-web", "Ship web 2", "")
            .replace("  name: ship-web\n", "  generateName: ship-web-\n"),
        "cannot use generate name with apply",
    )
    .await;

    // A PreSync hook with generateName: every sync creates a Decision of its own and
    // waits for it, even a sync of the same revision again.
    repo.write(
        "app/gate.yaml",
        "apiVersion: decisiongate.io/v1alpha1\nkind: Decision\nmetadata:\n  generateName: ship-web-\n  annotations: {argocd.argoproj.io/hook: PreSync}\nspec: {actionType: deploy, description: Ship web 2, criticality: High}\n",
    );
    repo.write("app/web.yaml", &web(2));
    repo.commit("web 2, asked by a PreSync hook");
    app.refresh().await;
    for round in 1..=2 {
        app.sync().await;
        // Hooks are not part of the application's health: once what wave 0 applied is
        // Healthy, the application is Healthy while the next sync waits on its hook.
        let hooked = app
            .wait("waiting on a hook", |a| {
                operation(a).0 == "Running"
                    && operation(a)
                        .1
                        .contains("hook decisiongate.io/Decision/ship-web-")
                    && (round == 1 || sync_and_health(a).1 == "Healthy")
            })
            .await;
        let message = operation(&hooked).1;
        let hook = message[message.find("decisiongate.io/Decision/").unwrap()..]
            .trim_start_matches("decisiongate.io/Decision/")
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        reaches(&decisions, &hook, DecisionPhase::Pending).await;
        if round == 1 {
            assert_eq!(deployment(n).await.unwrap().spec.unwrap().replicas, Some(3));
        }
        plugin("alice", &["approve", &hook, "-n", n]).success();
        app.wait("synced and healthy", |a| {
            succeeded_synced_healthy(a)
                && a["status"]["operationState"]["syncResult"]["resources"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["name"] == hook.as_str()))
        })
        .await;
    }
    assert_eq!(deployment(n).await.unwrap().spec.unwrap().replicas, Some(2));
    let hooks = decisions
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|d| d.name_any().contains("-presync-"))
        .count();
    assert_eq!(hooks, 2);
}

#[tokio::test]
async fn the_audit_claim_is_never_pruned_and_outlives_its_application() {
    let ns = TestNamespace::new("gitops-audit").await;
    let n = ns.name.as_str();
    let repo = GitRepo::new("gitops-audit");
    repo.copy_dir(&repo_root().join("charts/decision-gate"), "chart");
    repo.commit("the chart");
    // A second release of the chart, in the test's namespace: no operator pod, and none
    // of what one release per cluster owns (CRDs, people's roles, admission policies).
    let values = |persist: bool| {
        json!({
            "replicaCount": 0,
            "image": {"repository": "localhost/decision-gate"},
            "crds": {"install": false},
            "userRoles": {"create": false},
            "admission": {"enabled": false},
            "audit": {"persistence": {"enabled": persist}},
        })
        .to_string()
    };
    let manifest = |persist: bool| {
        json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {
                "name": n,
                "finalizers": ["resources-finalizer.argocd.argoproj.io"],
            },
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": repo.url, "targetRevision": "main", "path": "chart",
                    "helm": {"releaseName": "audited", "values": values(persist)},
                },
                "destination": {"server": "https://kubernetes.default.svc", "namespace": n},
            }
        })
    };
    let _cluster_wide = ClusterWideOfRelease("audited".into());
    let app = Application::create(manifest(true)).await;
    app.sync().await;
    app.wait("synced", |a| {
        operation(a).0 == "Succeeded" && sync_and_health(a).0 == "Synced"
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(admin().await, n);
    let claim = "audited-decision-gate-audit";
    let created = claims.get(claim).await.unwrap();

    // The chart no longer renders the claim: a pruning sync leaves it.
    let patch = json!({"spec": {"source": {"helm": {"values": values(false)}}}});
    kubectl_admin(&[
        "-n",
        &ArgoCd::get().namespace,
        "patch",
        "application",
        n,
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ])
    .success();
    app.refresh().await;
    app.sync().await;
    let pruned = app
        .wait("synced without the claim", |a| {
            operation(a).0 == "Succeeded"
                && a["status"]["operationState"]["syncResult"]["source"]["helm"]["values"]
                    == values(false).as_str()
        })
        .await;
    assert!(
        result_of(&pruned, "PersistentVolumeClaim", claim).contains("ignored (no prune)"),
        "{:#}",
        pruned["status"]["operationState"]
    );
    assert_eq!(claims.get(claim).await.unwrap().uid(), created.uid());
    // Left in place, it is out of sync with what git renders.
    app.refresh().await;
    assert_eq!(sync_and_health(&app.get().await).0, "OutOfSync");

    // Deleting the application deletes what it synced, but not the claim.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin().await, n);
    assert!(
        accounts
            .get_opt("audited-decision-gate")
            .await
            .unwrap()
            .is_some()
    );
    app.delete().await;
    assert!(
        accounts
            .get_opt("audited-decision-gate")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(claims.get(claim).await.unwrap().uid(), created.uid());
}

/// Deletes the cluster-wide objects of a release of the chart when a test ends, however
/// it ends.
struct ClusterWideOfRelease(String);

impl Drop for ClusterWideOfRelease {
    fn drop(&mut self) {
        let selector = format!("app.kubernetes.io/instance={}", self.0);
        let _ = kubectl_admin(&[
            "delete",
            "clusterrole,clusterrolebinding",
            "-l",
            &selector,
            "--ignore-not-found",
        ]);
    }
}

/// Removes what the example's walkthrough makes (its Application, namespace, repository and
/// working copy) when created and again when dropped, after the operator is gone.
struct TheExample;

impl TheExample {
    async fn forget() -> TheExample {
        Self::remove();
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin().await);
        wait_gone(&namespaces, "web").await;
        TheExample
    }

    fn remove() {
        let argocd = ArgoCd::get();
        let _ = kubectl_admin(&[
            "-n",
            &argocd.namespace,
            "delete",
            "application",
            "web",
            "--ignore-not-found",
        ]);
        let _ = kubectl_admin(&[
            "delete",
            "namespace",
            "web",
            "--ignore-not-found",
            "--wait=false",
        ]);
        release_decisions("web");
        let _ = std::fs::remove_dir_all(argocd.git_dir.join("web.git"));
        let _ = std::fs::remove_dir_all("/tmp/web");
    }
}

impl Drop for TheExample {
    fn drop(&mut self) {
        Self::remove();
    }
}

#[tokio::test]
async fn the_example_walkthrough_works_as_written() {
    let readme =
        std::fs::read_to_string(repo_root().join("charts/decision-gate/argocd/README.md")).unwrap();
    let steps = walkthrough(&readme, "## The example application");
    assert!(steps.len() >= 15, "{steps:#?}");
    let _example = TheExample::forget().await;
    // What `make run` would run: an operator that may run Real plans, here for the
    // example's namespace only.
    let operator = Operator::start_allowing_real("web").await;
    follow(
        &steps,
        "gitops-readme",
        std::time::Duration::from_secs(180),
        || tail(&operator.logs(), 40),
    )
    .await;
}
