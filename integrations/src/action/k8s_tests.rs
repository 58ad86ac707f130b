//! The http and scale actions against a local emulation of the Kubernetes scale
//! subresource, which checks requests as the API server does: bearer token,
//! merge-patch content type, an integer `spec.replicas` of 0 or more.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use warden_engine::model::{Labels, MetricName, Sample, now_ms};
use warden_engine::ports::{Action, ActionContext, ActionRequest};
use warden_engine::store::SeriesSet;

use super::ActionsConfig;

type Deployments = Arc<Mutex<BTreeMap<String, i64>>>;

fn status(code: StatusCode, reason: &str, msg: &str) -> (StatusCode, axum::Json<Value>) {
    (
        code,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": reason, "message": msg, "code": code.as_u16()}),
        ),
    )
}

fn scale_object(ns: &str, name: &str, replicas: i64) -> Value {
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "selector": format!("app={name}")},
    })
}

async fn scale(
    State(d): State<Deployments>,
    Path((ns, name)): Path<(String, String)>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, axum::Json<Value>) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer k8s-t0ken") {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let key = format!("{ns}/{name}");
    let Some(current) = d.lock().unwrap().get(&key).copied() else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("deployments.apps \"{name}\" not found"),
        );
    };
    if method == axum::http::Method::GET {
        return (
            StatusCode::OK,
            axum::Json(scale_object(&ns, &name, current)),
        );
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ![
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ]
    .contains(&ct)
    {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got '{ct}')"
            ),
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "invalid JSON");
    };
    let Some(r) = v["spec"]["replicas"].as_i64().filter(|r| *r >= 0) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "spec.replicas: Invalid value: must be a non-negative integer",
        );
    };
    d.lock().unwrap().insert(key, r);
    (StatusCode::OK, axum::Json(scale_object(&ns, &name, r)))
}

async fn k8s() -> (String, Deployments) {
    let d: Deployments = Arc::new(Mutex::new(BTreeMap::from([("prod/web".to_string(), 2)])));
    let app = Router::new()
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
            get(scale).patch(scale),
        )
        .with_state(d.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}"), d)
}

fn build(text: &str) -> BTreeMap<String, Arc<dyn Action>> {
    #[derive(serde::Deserialize)]
    struct File {
        action: ActionsConfig,
    }
    let c: File = toml::from_str(text).unwrap();
    c.action
        .build()
        .unwrap_or_else(|p| panic!("{p:?}"))
        .into_iter()
        .map(|(a, _)| (a.name().to_string(), a))
        .collect()
}

fn cx(replicas: f64) -> ActionContext {
    let mut set = SeriesSet::new();
    set.push(
        &Sample::new(
            MetricName::new("kube_deployment_spec_replicas").unwrap(),
            Labels::new([("namespace", "prod"), ("deployment", "web")]).unwrap(),
            replicas,
            now_ms(),
        ),
        60_000,
    );
    ActionContext {
        query: Arc::new(set),
        cancel: CancellationToken::new(),
    }
}

fn req(dry_run: bool) -> ActionRequest {
    ActionRequest {
        id: 1,
        rule: "WebOverloaded".into(),
        labels: Labels::new([("namespace", "prod"), ("deployment", "web")]).unwrap(),
        value: Some(90.0),
        vars: BTreeMap::new(),
        dry_run,
    }
}

#[tokio::test]
async fn scale_out_patches_the_scale_subresource_and_stops_at_max() {
    let (url, deployments) = k8s().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "k8s-t0ken\n").unwrap();
    let actions = build(&format!(
        r#"
[[action.http]]
name = "k8s-scale"
method = "PATCH"
url = "{url}/apis/apps/v1/namespaces/{{{{namespace}}}}/deployments/{{{{deployment}}}}/scale"
content_type = "application/merge-patch+json"
bearer_token_file = "{}"
body = {{ spec = {{ replicas = "{{{{replicas}}}}" }} }}
expected_status = [200]

[[action.scale]]
name = "scale-web"
via = "k8s-scale"
current = "kube_deployment_spec_replicas"
current_labels = ["namespace", "deployment"]
max = 3
target = 60
"#,
        token.display()
    ));
    let scale = &actions["scale-web"];

    // Dry run: nothing sent, the request shown with the token redacted.
    let out = scale.run(&req(true), &cx(2.0)).await.unwrap();
    assert_eq!(out.args["desired"], 3, "ceil(2 × 90 / 60) = 3");
    assert_eq!(out.args["call"]["body"], json!({"spec": {"replicas": 3}}));
    assert_eq!(
        out.args["call"]["headers"]["Authorization"],
        "Bearer <redacted>"
    );
    assert_eq!(deployments.lock().unwrap()["prod/web"], 2);

    let out = scale.run(&req(false), &cx(2.0)).await.unwrap();
    assert!(out.ok, "{}", out.output);
    assert_eq!(out.status, Some(200));
    assert!(out.output.contains("\"replicas\":3"), "{}", out.output);
    assert_eq!(deployments.lock().unwrap()["prod/web"], 3);
    assert!(
        !out.args.to_string().contains("k8s-t0ken"),
        "the token never reaches the audit log"
    );

    // At max: nothing is called.
    let out = scale.run(&req(false), &cx(3.0)).await.unwrap();
    assert!(out.ok);
    assert!(out.output.contains("at max 3"), "{}", out.output);
    assert!(out.args.get("call").is_none());

    // The API refusing is a failed attempt with its answer kept.
    std::fs::write(&token, "wrong").unwrap();
    let mut r = req(false);
    r.labels = Labels::new([("namespace", "prod"), ("deployment", "web")]).unwrap();
    let out = actions["k8s-scale"]
        .run(
            &ActionRequest {
                vars: [("replicas".to_string(), "1".to_string())].into(),
                ..r
            },
            &cx(3.0),
        )
        .await
        .unwrap();
    assert!(!out.ok);
    assert_eq!(out.status, Some(401));
    assert!(out.output.contains("Unauthorized"));
}

#[tokio::test]
async fn a_wrong_content_type_is_refused_like_the_api_server_does() {
    let (url, _) = k8s().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "k8s-t0ken").unwrap();
    let actions = build(&format!(
        r#"
[[action.http]]
name = "k8s-scale-json"
method = "PATCH"
url = "{url}/apis/apps/v1/namespaces/prod/deployments/web/scale"
bearer_token_file = "{}"
body = {{ spec = {{ replicas = 4 }} }}
"#,
        token.display()
    ));
    let out = actions["k8s-scale-json"]
        .run(&req(false), &cx(2.0))
        .await
        .unwrap();
    assert!(!out.ok);
    assert_eq!(out.status, Some(415));
}
