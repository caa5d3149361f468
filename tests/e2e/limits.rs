//! Objects generated at the limits the API admits (names of every allowed length and
//! character, the longest descriptions, the largest contexts, the most steps and retries,
//! text in any script): each is refused at admission with a message that names the field,
//! or runs to the end; none fails after approval for a reason admission could have caught.
//!
//! The run is chosen by `DECISION_GATE_LIMITS_SEED` and `DECISION_GATE_LIMITS_COUNT`;
//! `make test-limits` runs a long one. A failure prints the seed and the case's objects.

use std::collections::BTreeSet;
use std::time::Duration;

use decision_gate::api::{Decision, DecisionPhase, ExecutionPlan};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};

use crate::support::*;

const SEED: u64 = 32;
const COUNT: usize = 10;

/// The action every generated Decision asks for; one policy approves it automatically, so
/// that whatever is admitted runs.
const ACTION: &str = "ship.limits";

/// A small deterministic generator (SplitMix64): a seed names a run exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() - 1)]
    }

    /// A length in `1..=max`, as often at the edges as inside.
    fn length(&mut self, max: usize) -> usize {
        match self.range(0, 3) {
            0 => max,
            1 => 1,
            _ => self.range(1, max),
        }
    }

    fn alnum(&mut self) -> char {
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        ALNUM[self.range(0, ALNUM.len() - 1)] as char
    }

    /// A DNS-1123 subdomain of exactly `len` characters: lower-case letters, digits, '-'
    /// and '.', each dot-separated part starting and ending with a letter or digit.
    fn subdomain(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len);
        for i in 0..len {
            let prev = out.chars().last();
            let c = if i == 0 || i == len - 1 || prev == Some('.') {
                self.alnum()
            } else {
                match self.range(0, 9) {
                    0 => '-',
                    1 if prev != Some('-') && i < len - 2 => '.',
                    _ => self.alnum(),
                }
            };
            out.push(c);
        }
        // A '-' cannot end a part: the character before a dot is a letter or digit.
        out.replace("-.", "a.")
    }

    /// A DNS-1123 label of exactly `len` characters (lower-case letters, digits and '-').
    fn label(&mut self, len: usize) -> String {
        (0..len)
            .map(|i| {
                if i == 0 || i == len - 1 || !self.chance(15) {
                    self.alnum()
                } else {
                    '-'
                }
            })
            .collect()
    }

    /// `chars` characters of text in many scripts: accents, CJK, right-to-left, emoji,
    /// combining marks, line breaks and direction overrides among plain words.
    fn text(&mut self, chars: usize) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            " ",
            "é",
            "ß",
            "日",
            "本",
            "ع",
            "ש",
            "🚀",
            "👩‍💻",
            "\u{301}",
            "\n",
            "\t",
            "\u{202e}",
            "\"",
            "'",
            "\\",
            "{",
            "}",
            "<",
            ">",
            "&",
            "%",
            "$",
            ":",
            "#",
            "ő",
        ];
        let mut out = String::new();
        while out.chars().count() < chars {
            out.push_str(self.pick(PIECES));
        }
        out.chars().take(chars).collect()
    }
}

/// One generated Decision and its plan, and what admission must say of them.
struct Case {
    decision: Value,
    plan: Value,
    /// The field a refusal must name, when the case breaks a limit on purpose.
    refused_at: Option<&'static str>,
    /// Steps that run as Jobs (a Real plan).
    real_steps: usize,
    /// Whether the context is too large for the environment on purpose.
    context_too_large: bool,
}

fn template(rng: &mut Rng) -> Value {
    let mut t = json!({
        "metadata": {"annotations": {
            "decisiongate.io/test-result": "done",
            "decisiongate.io/test-delay": "0s",
        }},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    });
    if rng.chance(20) {
        t["spec"]["restartPolicy"] = json!("OnFailure");
    }
    if rng.chance(20) {
        t["spec"]["serviceAccountName"] = json!("default");
    }
    t
}

fn context(rng: &mut Rng, properties: usize, value_chars: usize) -> Value {
    let mut map = serde_json::Map::new();
    while map.len() < properties {
        let key = format!("k{}-{}", map.len(), {
            let k = rng.range(0, 12);
            rng.text(k)
        });
        let value = match rng.range(0, 4) {
            0 => json!(rng.next() as i64),
            1 => json!(rng.chance(50)),
            2 => json!([rng.text(8), {"nested": rng.text(8)}, null]),
            _ => {
                let k = rng.range(0, value_chars);
                json!(rng.text(k))
            }
        };
        map.insert(key, value);
    }
    Value::Object(map)
}

/// The limits each case is generated at; `index` picks a few fixed corners first.
fn generate(rng: &mut Rng, index: usize, long_run: bool) -> Case {
    let corner = index;
    let decision_name = match corner {
        0 => rng.subdomain(253),
        1 => rng.subdomain(64),
        _ => {
            let len = rng.pick(&[1, 2, 62, 63, 64, 100, 252, 253, 0]);
            let len = if len == 0 { rng.length(253) } else { len };
            rng.subdomain(len)
        }
    };
    let plan_name = match corner {
        0 => rng.subdomain(253),
        _ => {
            let k = rng.length(253);
            rng.subdomain(k)
        }
    };
    let mode = match corner {
        0 | 2 => "Real",
        1 => "DryRun",
        _ => rng.pick(&["Real", "Real", "Real", "DryRun", "Simulated"]),
    };
    let most = if mode == "Real" && !long_run { 4 } else { 32 };
    let step_count = match corner {
        1 | 2 => 32,
        _ => rng.length(most),
    };
    let mut names = BTreeSet::new();
    while names.len() < step_count {
        let len = match corner {
            1 | 2 => 40,
            _ => rng.length(40),
        };
        names.insert(rng.label(len));
    }
    let steps: Vec<Value> = names
        .iter()
        .map(|name| {
            let mut step = json!({
                "name": name,
                "template": template(rng),
                "retries": if corner == 2 { 10 } else { rng.range(0, 10) },
            });
            if rng.chance(50) {
                step["timeoutSeconds"] = json!(rng.pick(&[60, 3600, 604800]));
            }
            if rng.chance(50) {
                step["rollback"] = json!({"template": template(rng)});
            }
            if mode == "Simulated" {
                step["simulatedDurationSeconds"] = json!(rng.range(0, 1));
            }
            step
        })
        .collect();
    let mut plan = json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "ExecutionPlan",
        "metadata": {"name": plan_name},
        "spec": {
            "actionTypes": [ACTION],
            "mode": mode,
            "rollbackStrategy": rng.pick(&["Automatic", "Manual", "None"]),
            "steps": steps,
        },
    });
    let description = match corner {
        0 => rng.text(4096),
        _ => {
            let k = rng.length(4096);
            rng.text(k)
        }
    };
    let (ctx, context_too_large) = match corner {
        0 => (context(rng, 128, 60), false),
        3 => (json!({"blob": "x".repeat(200_000)}), true),
        _ => {
            let properties = rng.pick(&[0, 1, 5, 128]);
            (context(rng, properties, 200), false)
        }
    };
    let source = {
        let k = rng.length(253);
        rng.text(k)
    };
    let mut spec = json!({
        "actionType": ACTION,
        "description": description,
        "criticality": rng.pick(&["High", "Normal", "Info"]),
        "priority": rng.pick(&["Low", "Medium", "High", "Urgent"]),
        "estimatedDurationMinutes": rng.pick(&[0, 1, 525600]),
        "source": source,
        "context": ctx,
        "planRef": {"name": plan_name},
    });
    if rng.chance(30) {
        spec["onBehalfOf"] = json!(format!("{}@example.com", {
            let k = rng.length(40);
            rng.label(k)
        }));
    }
    let mut decision = json!({
        "apiVersion": "decisiongate.io/v1alpha1",
        "kind": "Decision",
        "metadata": {"name": decision_name},
        "spec": spec,
    });

    // Past a limit on purpose, one field at a time, in a quarter of the random cases.
    let mut refused_at = None;
    if corner > 3 && rng.chance(25) {
        let field = rng.range(0, 10);
        let steps = plan["spec"]["steps"].as_array_mut().unwrap();
        refused_at = Some(match field {
            0 => {
                decision["metadata"]["name"] = json!(rng.subdomain(254));
                "metadata.name"
            }
            1 => {
                decision["metadata"]["name"] = json!(format!("Upper-{}", rng.label(5)));
                "metadata.name"
            }
            2 => {
                decision["spec"]["description"] = json!(rng.text(4097));
                "spec.description"
            }
            3 => {
                decision["spec"]["context"] = context(rng, 129, 4);
                "spec.context"
            }
            4 => {
                decision["spec"]["planRef"]["name"] = json!(format!("{plan_name}_"));
                "spec.planRef.name"
            }
            5 => {
                steps[0]["name"] = json!(rng.label(41));
                "spec.steps[0].name"
            }
            6 => {
                steps[0]["retries"] = json!(11);
                "spec.steps[0].retries"
            }
            7 => {
                let first = steps[0].clone();
                while steps.len() < 33 {
                    let mut more = first.clone();
                    more["name"] = json!(format!("extra-{}", steps.len()));
                    steps.push(more);
                }
                "spec.steps"
            }
            8 => {
                steps[0]["timeoutSeconds"] = json!(604801);
                "spec.steps[0].timeoutSeconds"
            }
            9 => {
                steps[0]["template"]["spec"]["serviceAccountName"] = json!("Not_A_Name");
                "spec.steps[0].template.spec.serviceAccountName"
            }
            _ => {
                decision["spec"]["actionType"] = json!("Ship");
                "spec.actionType"
            }
        });
    }
    let real_steps = if mode == "Real" { step_count } else { 0 };
    Case {
        decision,
        plan,
        refused_at,
        real_steps,
        context_too_large,
    }
}

async fn create(api: &Api<DynamicObject>, object: &Value) -> Result<(), String> {
    let object: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) => Err(status.message),
        Err(e) => panic!("the API server could not be asked: {e}"),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A namespace name of the most characters a namespace may have.
fn longest_namespace() -> String {
    let name = unique_name("limits");
    format!("{name}-{}", "n".repeat(63 - name.len() - 1))
}

#[tokio::test]
async fn objects_at_the_limits_are_refused_by_field_or_run_to_the_end() {
    let seed = env_number("DECISION_GATE_LIMITS_SEED", SEED);
    let count = env_number("DECISION_GATE_LIMITS_COUNT", COUNT as u64) as usize;
    let long_run = count > COUNT;
    let ns = TestNamespace::create(longest_namespace()).await;
    let n = ns.name.as_str();
    assert_eq!(n.len(), 63);
    let _operator = Operator::start_allowing_real(n).await;
    apply(
        n,
        &format!(
            "apiVersion: decisiongate.io/v1alpha1\nkind: ApprovalPolicy\nmetadata: {{name: ship}}\nspec: {{rules: [{{name: ship, match: {{actionTypes: ['{ACTION}']}}, outcome: AutoApprove}}]}}\n"
        ),
    )
    .success();
    let client = admin().await;
    let decisions = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        n,
        &ApiResource::erase::<Decision>(&()),
    );
    let plans = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        n,
        &ApiResource::erase::<ExecutionPlan>(&()),
    );

    let mut rng = Rng(seed);
    let mut admitted = Vec::new();
    let mut taken = BTreeSet::new();
    for index in 0..count {
        // Names are drawn again until neither is taken (short names meet often).
        let case = loop {
            let case = generate(&mut rng, index, long_run);
            let names = (
                case.decision["metadata"]["name"].to_string(),
                case.plan["metadata"]["name"].to_string(),
            );
            if !taken.contains(&names.0) && !taken.contains(&names.1) {
                taken.extend([names.0, names.1]);
                break case;
            }
        };
        let show = |case: &Case| {
            format!(
                "seed {seed}, case {index}:\n{}\n{}",
                serde_json::to_string(&case.plan).unwrap(),
                serde_json::to_string(&case.decision).unwrap()
            )
        };
        let created = match create(&plans, &case.plan).await {
            Ok(()) => create(&decisions, &case.decision).await,
            Err(refusal) => Err(refusal),
        };
        match (created, case.refused_at) {
            (Ok(()), None) => admitted.push(case),
            (Err(refusal), Some(field)) => {
                assert!(
                    refusal.contains(field),
                    "the refusal does not name {field}: {refusal}\n{}",
                    show(&case)
                );
            }
            (Ok(()), Some(field)) => panic!("{field} past its limit was admitted\n{}", show(&case)),
            (Err(refusal), None) => {
                panic!(
                    "a case within the limits was refused: {refusal}\n{}",
                    show(&case)
                )
            }
        }
    }

    // Every admitted Decision ends: it runs to the end, or it is rejected before anyone
    // approved it because its Jobs could never run. None fails after approval.
    let typed: Api<Decision> = Api::namespaced(client.clone(), n);
    let real_steps: usize = admitted.iter().map(|c| c.real_steps).sum();
    let deadline =
        tokio::time::Instant::now() + DEADLINE + Duration::from_secs(3 * real_steps as u64);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let name_of = |c: &Case| c.decision["metadata"]["name"].as_str().unwrap().to_owned();
    loop {
        tick.tick().await;
        let all = typed.list(&ListParams::default()).await.unwrap().items;
        let phase_of = |name: &str| {
            all.iter()
                .find(|d| d.metadata.name.as_deref() == Some(name))
                .and_then(|d| d.status.as_ref())
                .and_then(|s| s.phase)
        };
        let waiting: Vec<String> = admitted
            .iter()
            .map(name_of)
            .filter(|name| {
                !matches!(
                    phase_of(name),
                    Some(
                        DecisionPhase::Succeeded
                            | DecisionPhase::Failed
                            | DecisionPhase::Rejected
                            | DecisionPhase::Expired
                            | DecisionPhase::RolledBack
                    )
                )
            })
            .collect();
        if waiting.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "seed {seed}: still not ended: {waiting:?}; phases: {:?}",
            waiting.iter().map(|w| phase_of(w)).collect::<Vec<_>>()
        );
    }
    let jobs: Api<Job> = Api::namespaced(client, n);
    for case in &admitted {
        let name = name_of(case);
        let d = typed.get(&name).await.unwrap();
        let status = d.status.clone().unwrap();
        let show = format!(
            "seed {seed}, {name}: {:#?}\n{}",
            status,
            serde_json::to_string(&case.plan).unwrap()
        );
        match status.phase.unwrap() {
            DecisionPhase::Succeeded => {
                assert!(!case.context_too_large, "{show}");
                if case.real_steps > 0 {
                    // Its Jobs are found by the Decision's uid, whatever its name.
                    let uid = d.metadata.uid.unwrap();
                    let selector = format!("decisiongate.io/decision-uid={uid}");
                    let found = jobs
                        .list(&ListParams::default().labels(&selector))
                        .await
                        .unwrap()
                        .items;
                    assert_eq!(found.len(), case.real_steps, "{show}");
                    for job in found {
                        let annotations = job.metadata.annotations.unwrap_or_default();
                        assert_eq!(annotations["decisiongate.io/decision"], name);
                    }
                }
            }
            // Only what was made too large to run on purpose is turned away, and only
            // before anyone is asked.
            DecisionPhase::Rejected if case.context_too_large => {
                let rejection = status.rejection.clone().unwrap();
                assert_eq!(rejection.rejected_by, "decision-gate", "{show}");
                assert!(rejection.reason.contains("could never run"), "{show}");
                assert!(
                    status.approvals.is_empty() && status.execution.is_none(),
                    "{show}"
                );
                if case.context_too_large {
                    assert!(rejection.reason.contains("DECISION_GATE_CONTEXT"), "{show}");
                }
            }
            other => panic!("ended {other}: {show}"),
        }
    }
}
