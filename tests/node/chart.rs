//! The chart's own checks on the live install: `helm test` probes the operator pod from a
//! pod that really runs on the real node, and the image is laid out as the Dockerfile says.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

use crate::install::*;
use crate::support::*;

#[tokio::test]
async fn helm_test_probes_the_operator_from_a_pod_on_the_real_node() {
    installed().await;
    // The probe's Job is deleted once it passes: watch its pods while it runs.
    let pods: Api<Pod> = Api::namespaced(admin().await, RELEASE_NAMESPACE);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let watcher = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let selector = "app.kubernetes.io/name=decision-gate-test";
            loop {
                if let Ok(list) = pods.list(&ListParams::default().labels(selector)).await {
                    for pod in list.items {
                        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
                        let exit = pod
                            .status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .and_then(|c| {
                                c.first()?
                                    .state
                                    .as_ref()?
                                    .terminated
                                    .as_ref()
                                    .map(|t| t.exit_code)
                            });
                        seen.lock()
                            .unwrap()
                            .insert(pod.metadata.name.clone().unwrap(), (node, exit));
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await; // poll interval, until the test stops it
            }
        })
    };
    let printed = tokio::task::spawn_blocking(|| {
        helm(&[
            "test",
            RELEASE,
            "--namespace",
            RELEASE_NAMESPACE,
            "--timeout",
            "120s",
        ])
    })
    .await
    .unwrap();
    watcher.abort();
    assert!(printed.contains("Phase:          Succeeded"), "{printed}");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.values()
            .any(|(node, exit)| node.as_deref() == Some(NODE) && *exit == Some(0)),
        "no probe pod was seen exiting 0 on {NODE}: {seen:?}"
    );
}

/// The runtime stage of the Dockerfile: the path its COPY puts the binary at, its USER,
/// ENTRYPOINT and CMD (JSON arrays, as written).
fn dockerfile_runtime() -> (String, String, Vec<String>, Vec<String>) {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let stage = dockerfile
        .rsplit_once("\nFROM ")
        .expect("a multi-stage Dockerfile")
        .1;
    let instruction = |name: &str| {
        stage
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("the runtime stage has no {name}"))
            .trim()
            .to_owned()
    };
    let copy = instruction("COPY");
    let binary = copy.split_whitespace().last().unwrap().to_owned();
    let array = |text: String| -> Vec<String> { serde_json::from_str(&text).unwrap() };
    (
        binary,
        instruction("USER"),
        array(instruction("ENTRYPOINT")),
        array(instruction("CMD")),
    )
}

#[test]
fn the_operator_image_is_laid_out_as_the_dockerfile_says() {
    let (binary, user, entrypoint, cmd) = dockerfile_runtime();
    assert_eq!(binary, "/usr/local/bin/decision-gate");
    let crane = tool("CRANE", "crane", "CRANE_VERSION", "crane");
    let reference = image("decision-gate");
    let out = std::process::Command::new(&crane)
        .args(["--insecure", "config", &reference])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {crane}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = &config["config"];
    assert_eq!(config["User"], user.as_str(), "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(entrypoint),
        "{config}"
    );
    assert_eq!(config["Cmd"], serde_json::json!(cmd), "{config}");
    // The binary is where the entrypoint says, executable, and links only what the image holds.
    let listing = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{crane}' --insecure export '{reference}' - | tar -tvf -"
        ))
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "{}",
        String::from_utf8_lossy(&listing.stderr)
    );
    // "-rwxr-xr-x 0/0 41396536 1970-01-01 00:00 ./usr/local/bin/decision-gate"
    let files: BTreeMap<String, String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let path = fields.get(5)?.trim_start_matches("./").to_owned();
            Some((path, fields[0].to_owned()))
        })
        .collect();
    let path = binary.trim_start_matches('/');
    let mode = files
        .get(path)
        .unwrap_or_else(|| panic!("no {path} in the image: {files:?}"));
    assert!(
        mode.starts_with("-rwx"),
        "{path} is not an executable file: {mode}"
    );
    for needed in [
        "etc/passwd",
        "lib64/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/libc.so.6",
    ] {
        assert!(
            files.contains_key(needed),
            "no {needed} in the image: {files:?}"
        );
    }
}

#[tokio::test]
async fn the_review_page_reads_the_audit_trail_through_the_operators_service() {
    let ns = NodeNamespace::new("node-ui").await;
    let n = ns.name.as_str();
    let log = node_volume(n);
    let step = serde_json::json!({"name": "only", "template": crate::plans::on_node("only", "echo done > /dev/termination-log", &log)});
    apply(n, AUTO_APPROVE_SHIPPING).success();
    apply(n, &crate::plans::plan("one", "None", vec![step])).success();
    apply(n, &crate::plans::ship("v6", "one", serde_json::json!({}))).success();
    let api: Api<decision_gate::api::Decision> = Api::namespaced(admin().await, n);
    crate::plans::reaches_on_node(&api, "v6", decision_gate::api::DecisionPhase::Succeeded).await;

    // carol reads this namespace's entries, through the operator's namespace.
    bind_role(n, "decision-gate-auditor", "User", &["carol"]);
    bind_role(
        RELEASE_NAMESPACE,
        "decision-gate-auditor",
        "User",
        &["carol"],
    );
    wait_can_read_audit("carol", n).await;
    wait_can_read_audit("carol", RELEASE_NAMESPACE).await;
    // The page's default way to the log: the Service of the release in decision-gate-system.
    let page = ReviewPage::start("carol", n, RELEASE_NAMESPACE);
    let response = reqwest::Client::new()
        .get(format!("{}/api/decisions/{n}/v6/audit", page.origin()))
        .header("Cookie", page.cookie())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(view["unavailable"].is_null(), "{view}");
    let events: Vec<&str> = view["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for event in [
        "decision_requested",
        "auto_approved",
        "step_executed",
        "execution_completed",
    ] {
        assert!(
            events.contains(&event),
            "no {event} in the page's audit trail: {events:?}"
        );
    }
}

/// The host's processes whose command line is exactly `argv`.
fn processes(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

#[tokio::test]
async fn the_operator_runs_as_65532_on_a_read_only_root_and_owns_its_log_on_the_claim() {
    installed().await;
    let pod = operator_pod().await;
    let args: Vec<String> = pod.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    let mut argv = vec!["/usr/local/bin/decision-gate"];
    argv.extend(args.iter().map(String::as_str));
    // The operator's own process, as the node's kernel sees it.
    let found = processes(&argv);
    let [pid] = found.as_slice() else {
        panic!("not exactly one operator process runs {argv:?}: {found:?}");
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ids = |key: &str| -> Vec<String> {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().skip(1).map(str::to_owned).collect()
    };
    assert!(ids("Uid:").iter().all(|id| id == "65532"), "{status}");
    assert!(ids("Gid:").iter().all(|id| id == "65532"), "{status}");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap();
    assert!(
        root.split_whitespace()
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "the root filesystem is writable: {root}"
    );
    // The log on the node's volume: the operator's file, in a directory fsGroup made its
    // group's.
    use std::os::unix::fs::MetadataExt;
    let dir = node_volume("decision-gate-audit");
    let log = std::fs::metadata(dir.join("audit.jsonl")).unwrap();
    assert_eq!((log.uid(), log.gid()), (65532, 65532));
    assert_eq!(std::fs::metadata(&dir).unwrap().gid(), 65532);
}
