//! Argo CD beside the local control plane (`hack/cluster.sh argocd up`; `make test` starts
//! it): git repositories it reads, served by the git daemon on loopback, and Applications
//! created, synced and watched through the Kubernetes API.

use std::path::{Path, PathBuf};
use std::process::Command;

use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::wait::await_condition;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::{DEADLINE, admin, cluster_env, kubectl_admin, unique_name};

/// Where Argo CD runs: its namespace, where its repositories live on disk and the URL it
/// reads them from (what `hack/cluster.sh argocd up` wrote down).
pub struct ArgoCd {
    pub namespace: String,
    pub git_dir: PathBuf,
    pub git_url: String,
}

impl ArgoCd {
    pub fn get() -> ArgoCd {
        let value = cluster_env(
            "argocd/argocd.env",
            "Argo CD does not run beside the local control plane: start it with `hack/cluster.sh argocd up` (make test does)",
        );
        ArgoCd {
            namespace: value("ARGOCD_NAMESPACE"),
            git_dir: PathBuf::from(value("ARGOCD_GIT_DIR")),
            git_url: value("ARGOCD_GIT_URL"),
        }
    }
}

/// A git repository Argo CD reads, with a working copy that a test commits to and pushes
/// from. Removed when dropped.
pub struct GitRepo {
    pub url: String,
    bare: PathBuf,
    work: tempfile::TempDir,
}

impl GitRepo {
    pub fn new(prefix: &str) -> GitRepo {
        let argocd = ArgoCd::get();
        let name = format!("{}.git", unique_name(prefix));
        let bare = argocd.git_dir.join(&name);
        let work = tempfile::tempdir().unwrap();
        git(
            argocd.git_dir.as_path(),
            &["init", "--quiet", "--bare", "-b", "main", &name],
        );
        git(work.path(), &["init", "--quiet", "-b", "main"]);
        git(
            work.path(),
            &["remote", "add", "origin", bare.to_str().unwrap()],
        );
        GitRepo {
            url: format!("{}/{name}", argocd.git_url),
            bare,
            work,
        }
    }

    /// Writes a file of the working copy (creating its directories).
    pub fn write(&self, path: &str, content: &str) {
        let file = self.work.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }

    /// Copies a directory of this repository (an example) into the working copy at `to`.
    pub fn copy_dir(&self, from: &Path, to: &str) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = format!("{to}/{}", entry.file_name().to_str().unwrap());
            if entry.file_type().unwrap().is_dir() {
                self.copy_dir(&entry.path(), &target);
            } else {
                self.write(&target, &std::fs::read_to_string(entry.path()).unwrap());
            }
        }
    }

    /// Commits everything in the working copy and pushes it: the new revision.
    pub fn commit(&self, message: &str) -> String {
        git(self.work.path(), &["add", "-A"]);
        git(self.work.path(), &["commit", "--quiet", "-m", message]);
        git(self.work.path(), &["push", "--quiet", "origin", "main"]);
        git(self.work.path(), &["rev-parse", "HEAD"])
            .trim()
            .to_owned()
    }
}

impl Drop for GitRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bare);
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "decision-gate tests")
        .env("GIT_AUTHOR_EMAIL", "tests@decisiongate.io")
        .env("GIT_COMMITTER_NAME", "decision-gate tests")
        .env("GIT_COMMITTER_EMAIL", "tests@decisiongate.io")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn application_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

/// An Argo CD Application, deleted when dropped without deleting what it synced (the
/// test's namespace goes with its own guard).
pub struct Application {
    pub name: String,
    api: Api<DynamicObject>,
}

impl Application {
    /// Creates the Application of `manifest` (a JSON object), in Argo CD's namespace.
    pub async fn create(manifest: Value) -> Application {
        let argocd = ArgoCd::get();
        let api = Api::namespaced_with(admin().await, &argocd.namespace, &application_resource());
        let object: DynamicObject = serde_json::from_value(manifest).unwrap();
        let name = object.name_any();
        api.create(&Default::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("creating the Application {name}: {e}"));
        Application { name, api }
    }

    /// An Application of the chart-less directory `path` of `repo`, into `namespace`, with
    /// `sync_policy` (JSON; null for manual syncs).
    pub async fn of_directory(
        repo: &GitRepo,
        path: &str,
        namespace: &str,
        sync_policy: Value,
    ) -> Application {
        Self::create(json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": namespace},
            "spec": {
                "project": "default",
                "source": {"repoURL": repo.url, "targetRevision": "main", "path": path},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
                "syncPolicy": sync_policy,
            }
        }))
        .await
    }

    pub async fn get(&self) -> Value {
        serde_json::to_value(self.api.get(&self.name).await.unwrap()).unwrap()
    }

    /// Starts a sync of the branch's newest revision, pruning, as `argocd app sync --prune`
    /// does (with the sync options of the application's sync policy, which Argo CD's API
    /// server copies into the operation), and waits until Argo CD's controller has started it. An operation requested
    /// while the controller still finishes the one before can be lost (it clears the field
    /// with the old one's result); so each request carries a name of its own, and is asked
    /// again while no operation is pending and the last one started is not it.
    pub async fn sync(&self) {
        let by = unique_name("decision-gate-tests");
        let options = self.get().await["spec"]["syncPolicy"]["syncOptions"].clone();
        let patch = json!({"operation": {
            "initiatedBy": {"username": by},
            "sync": {"revision": "main", "prune": true, "syncOptions": options},
        }});
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tick.tick().await;
            let app = self.get().await;
            if app["status"]["operationState"]["operation"]["initiatedBy"]["username"]
                == by.as_str()
            {
                return;
            }
            if app["operation"].is_null() {
                self.api
                    .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Argo CD did not start the sync of {}; its status: {:#}",
                self.name,
                app["status"]
            );
        }
    }

    /// Asks Argo CD to compare the application with git and the cluster again, and waits
    /// until it has (it removes the annotation once it has refreshed).
    pub async fn refresh(&self) {
        let patch = json!({"metadata": {"annotations": {"argocd.argoproj.io/refresh": "hard"}}});
        self.api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        self.wait("refreshed", |app| {
            app["metadata"]["annotations"]["argocd.argoproj.io/refresh"].is_null()
        })
        .await;
    }

    /// Watches the Application until `check` holds of it, failing the test with its status
    /// after [`DEADLINE`].
    pub async fn wait(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let condition = |obj: Option<&DynamicObject>| {
            obj.is_some_and(|o| check(&serde_json::to_value(o).unwrap()))
        };
        match tokio::time::timeout(
            DEADLINE,
            await_condition(self.api.clone(), &self.name, condition),
        )
        .await
        {
            Ok(Ok(Some(obj))) => serde_json::to_value(obj).unwrap(),
            Ok(Ok(None)) => panic!("the Application {} is gone", self.name),
            Ok(Err(e)) => panic!("watching the Application {}: {e}", self.name),
            Err(_) => panic!(
                "timed out after {DEADLINE:?} waiting for the Application {} to be {what}; its status: {:#}",
                self.name,
                self.get().await["status"]
            ),
        }
    }

    /// Deletes the Application as `kubectl delete` does: with the cascading finalizer it
    /// carries, Argo CD deletes what it synced first.
    pub async fn delete(&self) {
        self.api
            .delete(&self.name, &DeleteParams::default())
            .await
            .unwrap();
        let gone = |obj: Option<&DynamicObject>| obj.is_none();
        tokio::time::timeout(
            DEADLINE,
            await_condition(self.api.clone(), &self.name, gone),
        )
        .await
        .unwrap_or_else(|_| panic!("the Application {} was not deleted", self.name))
        .unwrap();
    }
}

impl Drop for Application {
    /// Lets the Application go without cascading: its finalizer off, then deleted.
    fn drop(&mut self) {
        let namespace = ArgoCd::get().namespace;
        let application = format!("application/{}", self.name);
        let finalizers = r#"{"metadata":{"finalizers":null}}"#;
        for args in [
            &["patch", &application, "--type", "merge", "-p", finalizers][..],
            &["delete", &application, "--wait=false", "--ignore-not-found"][..],
        ] {
            let _ = kubectl_admin(&[&["-n", namespace.as_str()][..], args].concat());
        }
    }
}

/// The sync operation's phase (Running, Succeeded, Failed, Error) and message.
pub fn operation(app: &Value) -> (&str, &str) {
    let state = &app["status"]["operationState"];
    (
        state["phase"].as_str().unwrap_or(""),
        state["message"].as_str().unwrap_or(""),
    )
}

/// The application's sync status (Synced, OutOfSync) and health (Healthy, Suspended, ...).
pub fn sync_and_health(app: &Value) -> (&str, &str) {
    (
        app["status"]["sync"]["status"].as_str().unwrap_or(""),
        app["status"]["health"]["status"].as_str().unwrap_or(""),
    )
}
