//! Slack's interaction endpoint (`POST /slack/interactions`), on a listener of its own.
//!
//! A request whose signature, age or novelty fails is refused with 401 and touches
//! nothing. A verified click is acknowledged at once (Slack waits three seconds at most)
//! with an ephemeral message saying what is being done; what came of it follows as an
//! ephemeral message to the click's `response_url`. Every request, whatever came of it,
//! is an audit line (`slack_interaction`). Only the leader holds the audit log, so a
//! standby replica answers 503 and does nothing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use serde_json::json;
use tracing::{info, warn};

use super::interaction::{self, Action, Interaction};
use super::reply::{self, Reply};
use super::signature::{self, ReplayWindow};
use super::users::{self, Mapping, Person};
use crate::answer::{self, Answer};
use crate::api::Decision;
use crate::audit::{AuditLog, DecisionRef, Record};
use crate::http::Health;

/// The path Slack's app posts interactions to.
pub const PATH: &str = "/slack/interactions";

/// How many accepted signatures the replay window remembers at most (five minutes of
/// clicks).
const REPLAY_CAPACITY: usize = 10_000;

/// The app's signing secret; never printed.
#[derive(Clone)]
pub struct SigningSecret(pub Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

/// How the endpoint was configured.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where the endpoint listens.
    pub addr: SocketAddr,
    pub signing_secret: SigningSecret,
    /// The ConfigMap that maps Slack users to Kubernetes users and groups.
    pub users_configmap: String,
    /// Its namespace (the operator's own).
    pub users_namespace: String,
    /// The only namespace whose Decisions the operator watches, if it watches one.
    pub watched_namespace: Option<String>,
}

/// The endpoint's state.
pub struct Slack {
    settings: Settings,
    /// The operator's own client: reads the mapping and checks the Decision's identity.
    client: Client,
    /// The operator's own configuration, from which each answer's impersonating client
    /// is made.
    config: kube::Config,
    health: Arc<Health>,
    replays: Mutex<ReplayWindow>,
    http: reqwest::Client,
    /// Who the operator is to the API server, asked once: the name it gives as the
    /// impersonator of every answer it relays.
    me: tokio::sync::OnceCell<String>,
}

/// Binds the endpoint's address (so that a clash is reported at start-up) and returns
/// the server.
pub async fn bind(
    settings: Settings,
    config: kube::Config,
    health: Arc<Health>,
) -> std::io::Result<(
    SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>>,
)> {
    let client = Client::try_from(config.clone()).map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(settings.addr).await?;
    let local = listener.local_addr()?;
    let slack = Arc::new(Slack {
        settings,
        client,
        config,
        health,
        replays: Mutex::new(ReplayWindow::new(REPLAY_CAPACITY)),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?,
        me: tokio::sync::OnceCell::new(),
    });
    let router = Router::new().route(PATH, post(interact)).with_state(slack);
    Ok((local, async move { axum::serve(listener, router).await }))
}

async fn interact(State(slack): State<Arc<Slack>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(audit) = slack.health.audit() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica is not the leader\n",
        )
            .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = chrono::Utc::now().timestamp();
    let checked = signature::verify(
        &slack.settings.signing_secret.0,
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &body,
        now,
    )
    .and_then(|at| {
        slack
            .replays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(header("x-slack-signature").unwrap_or_default(), at, now)
    });
    if let Err(rejection) = checked {
        warn!(outcome = rejection.outcome(), %rejection, "refused a Slack request");
        write_audit(
            &audit,
            Record {
                outcome: Some(rejection.outcome().to_owned()),
                reason: Some(rejection.to_string()),
                message: format!("Slack request refused: {rejection}"),
                details: Some(json!({
                    "verified": false,
                    "claimed": interaction::claimed(&body),
                })),
                ..slack_record("slack:unverified".to_owned())
            },
        )
        .await;
        return (StatusCode::UNAUTHORIZED, format!("{rejection}\n")).into_response();
    }
    let click = match interaction::parse(&body) {
        Ok(click) => click,
        Err(why) => {
            write_audit(
                &audit,
                Record {
                    outcome: Some("malformed".to_owned()),
                    reason: Some(why.clone()),
                    message: format!("Slack request not understood: {why}"),
                    details: Some(json!({"verified": true})),
                    ..slack_record("slack:unknown".to_owned())
                },
            )
            .await;
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
    };
    let person = match slack.person(&click).await {
        Ok(Some(person)) => person,
        Ok(None) => {
            let reply = Reply::Unmapped {
                who: click.who(),
                team: click.team.clone(),
            };
            let message = reply.message();
            tokio::spawn(async move { slack.finish(&audit, &click, None, &reply).await });
            return axum::Json(message).into_response();
        }
        Err(why) => {
            let reply = Reply::Failed {
                decision: click.target.decision(),
                verb: click.action.as_str(),
                why,
            };
            let message = reply.message();
            tokio::spawn(async move { slack.finish(&audit, &click, None, &reply).await });
            return axum::Json(message).into_response();
        }
    };
    let working = reply::ephemeral(&format!(
        "{} {} as {}…",
        match click.action {
            Action::Approve => "Approving",
            Action::Reject => "Rejecting",
        },
        click.target.decision(),
        person.user
    ));
    tokio::spawn(async move {
        let reply = slack.answer(&click, &person).await;
        slack.finish(&audit, &click, Some(&person), &reply).await;
    });
    axum::Json(working).into_response()
}

impl Slack {
    /// Who the clicking Slack user is in Kubernetes, by the mapping as it is now.
    async fn person(&self, click: &Interaction) -> Result<Option<Person>, String> {
        let maps: Api<ConfigMap> =
            Api::namespaced(self.client.clone(), &self.settings.users_namespace);
        let map = maps
            .get(&self.settings.users_configmap)
            .await
            .map_err(|e| {
                format!(
                    "the operator cannot read its Slack user mapping (ConfigMap {}/{}): {}",
                    self.settings.users_namespace,
                    self.settings.users_configmap,
                    crate::agent::refusal(&e)
                )
            })?;
        let text = map
            .data
            .as_ref()
            .and_then(|d| d.get(users::KEY))
            .map(String::as_str)
            .unwrap_or_default();
        let mapping = Mapping::parse(text)?;
        Ok(mapping.lookup(&click.team, &click.user).cloned())
    }

    /// Gives the click's answer as `person`, if the Decision is the one the message
    /// showed.
    async fn answer(&self, click: &Interaction, person: &Person) -> Reply {
        let target = &click.target;
        let decision = target.decision();
        if let Some(watched) = &self.settings.watched_namespace
            && watched != &target.namespace
        {
            return Reply::Failed {
                decision,
                verb: click.action.as_str(),
                why: format!("this operator answers only Decisions in namespace {watched}"),
            };
        }
        let decisions: Api<Decision> = Api::namespaced(self.client.clone(), &target.namespace);
        match decisions.get_opt(&target.name).await {
            Ok(Some(d)) if d.metadata.uid.as_deref() == Some(target.uid.as_str()) => {}
            Ok(_) => return Reply::Gone { decision },
            Err(e) => {
                return Reply::Failed {
                    decision,
                    verb: click.action.as_str(),
                    why: crate::agent::refusal(&e),
                };
            }
        }
        let answer = match click.action {
            Action::Approve => Answer::Approve {
                reason: Some(format!("approved from Slack by {}", click.who())),
                digest: target.digest.clone(),
            },
            Action::Reject => Answer::Reject {
                reason: reply::rejection_reason(&click.who(), &click.team),
            },
        };
        let me = self
            .me
            .get_or_try_init(|| crate::agent::whoami(&self.client))
            .await;
        let client = match me.and_then(|me| self.client_as(person, me)) {
            Ok(client) => client,
            Err(why) => {
                return Reply::Failed {
                    decision,
                    verb: click.action.as_str(),
                    why,
                };
            }
        };
        let given = answer::give(
            &client,
            &target.namespace,
            &target.name,
            &answer,
            answer::RECORD_WAIT,
        )
        .await;
        Reply::of(&decision, &person.user, &answer, given)
    }

    /// A client that acts as `person`: the API server authenticates the operator (`me`),
    /// then authorizes and admits every request as the impersonated user and groups. It
    /// names the operator in the user extra the admission policy records with an approval,
    /// so that the audit says who gave it on the person's behalf (RBAC lets the operator
    /// impersonate that extra with its own name only).
    fn client_as(&self, person: &Person, me: &str) -> Result<Client, String> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(person.user.clone());
        config.auth_info.impersonate_groups =
            (!person.groups.is_empty()).then(|| person.groups.clone());
        config.auth_info.impersonate_user_extra = Some(
            [(
                crate::api::annotations::IMPERSONATOR_EXTRA.to_owned(),
                vec![me.to_owned()],
            )]
            .into(),
        );
        Client::try_from(config).map_err(|e| {
            format!(
                "cannot act as {}: {}",
                person.user,
                crate::error::describe_kube(&e)
            )
        })
    }

    /// Records what came of a click, then tells the person who clicked.
    async fn finish(
        &self,
        audit: &Arc<AuditLog>,
        click: &Interaction,
        person: Option<&Person>,
        reply: &Reply,
    ) {
        info!(slack_user = %click.user, slack_team = %click.team, user = person.map(|p| p.user.as_str()).unwrap_or(""), decision = %click.target.decision(), action = click.action.as_str(), outcome = reply.outcome(), "answered a Slack click");
        write_audit(
            audit,
            Record {
                decision: Some(DecisionRef {
                    namespace: click.target.namespace.clone(),
                    name: click.target.name.clone(),
                    uid: click.target.uid.clone(),
                }),
                approver: person.map(|p| p.user.clone()),
                outcome: Some(reply.outcome().to_owned()),
                reason: Some(reply.text()),
                message: format!(
                    "Slack user {} of {} clicked {}: {}",
                    click.who(),
                    click.team,
                    click.action.as_str(),
                    reply.outcome()
                ),
                details: Some(json!({
                    "verified": true,
                    "slack_user": click.user,
                    "slack_user_name": click.user_name,
                    "slack_team": click.team,
                    "kubernetes_user": person.map(|p| &p.user),
                    "kubernetes_groups": person.map(|p| &p.groups),
                    "action": click.action.as_str(),
                    "digest": click.target.digest,
                })),
                ..slack_record(format!("slack:{}/{}", click.team, click.user))
            },
        )
        .await;
        let Some(url) = &click.response_url else {
            return;
        };
        match self.http.post(url).json(&reply.message()).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => warn!(status = %r.status(), "Slack refused the reply to a click"),
            Err(e) => warn!(error = %e, "could not reply to a Slack click"),
        }
    }
}

/// The fields every Slack audit line shares.
fn slack_record(actor: String) -> Record {
    Record {
        event_type: "slack_interaction".to_owned(),
        actor,
        // Every request is its own line, a replay included.
        discriminator: uuid::Uuid::new_v4().to_string(),
        ..Record::default()
    }
}

async fn write_audit(audit: &Arc<AuditLog>, record: Record) {
    let log = audit.clone();
    let appended =
        tokio::task::spawn_blocking(move || log.append(&[record], chrono::Utc::now())).await;
    if !matches!(appended, Ok(Ok(_))) {
        warn!("could not audit a Slack request");
    }
}
