//! The patroni and etcd collectors against a real two-node Patroni cluster on
//! a real etcd (Debian's `patroni` and `etcd-server`).

use std::sync::OnceLock;

use warden_engine::model::Sample;
use warden_testkit::patroni::PatroniCluster;

use crate::testing::{self, named, problems, run, spec, value};

fn cluster() -> &'static PatroniCluster {
    static CLUSTER: OnceLock<PatroniCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| PatroniCluster::start("patroni-collector"))
}

fn entry(kind: &str, url: &str) -> String {
    format!(
        "[[collector.{kind}]]\nname = \"n\"\nurl = \"{url}\"\ninterval = \"2s\"\ntimeout = \"1s\"\n\
         labels = {{ cluster = \"main\" }}\n"
    )
}

fn member<'a>(samples: &'a [Sample], metric: &str, name: &str) -> &'a Sample {
    named(samples, metric)
        .into_iter()
        .find(|s| s.labels.get("member") == Some(name))
        .unwrap_or_else(|| panic!("{metric}{{member={name}}} in {samples:#?}"))
}

#[tokio::test]
async fn the_leader_and_the_replica_see_one_leader_and_each_other() {
    let c = cluster();
    let mut leader = spec(&entry("patroni", &c.nodes[0].url()));
    let samples = run(&mut leader).await;
    assert_eq!(value(&samples, "patroni_up"), 1.0, "{samples:#?}");
    assert_eq!(value(&samples, "patroni_is_primary"), 1.0);
    assert_eq!(value(&samples, "patroni_is_replica"), 0.0);
    assert_eq!(value(&samples, "patroni_postgres_running"), 1.0);
    assert_eq!(value(&samples, "patroni_timeline"), 1.0);
    assert_eq!(value(&samples, "patroni_cluster_members"), 2.0);
    assert_eq!(value(&samples, "patroni_cluster_leaders"), 1.0);
    assert_eq!(value(&samples, "patroni_cluster_unlocked"), 0.0);
    let info = testing::labels(&samples, "patroni_info");
    assert_eq!(info.get("scope"), Some("warden-test"));
    assert!(
        info.get("version")
            .is_some_and(|v| v.starts_with('3') || v.starts_with('4'))
    );
    assert_eq!(
        testing::labels(&samples, "patroni_cluster_leader_info").get("member"),
        Some("pg1")
    );
    assert_eq!(
        member(&samples, "patroni_member_is_leader", "pg1").value,
        1.0
    );
    assert_eq!(
        member(&samples, "patroni_member_is_leader", "pg2").value,
        0.0
    );
    assert_eq!(member(&samples, "patroni_member_running", "pg2").value, 1.0);
    assert_eq!(
        member(&samples, "patroni_member_timeline", "pg2").value,
        1.0
    );
    assert!(member(&samples, "patroni_member_lag_bytes", "pg2").value >= 0.0);
    let role = member(&samples, "patroni_member_info", "pg2");
    assert_eq!(role.labels.get("role"), Some("replica"));

    let mut replica = spec(&entry("patroni", &c.nodes[1].url()));
    let samples = run(&mut replica).await;
    assert_eq!(value(&samples, "patroni_is_primary"), 0.0, "{samples:#?}");
    assert_eq!(value(&samples, "patroni_is_replica"), 1.0);
    assert_eq!(value(&samples, "patroni_cluster_leaders"), 1.0);
}

#[tokio::test]
async fn etcd_reports_health_leader_members_and_quorum() {
    let c = cluster();
    let mut s = spec(&entry("etcd", &c.etcd.url()));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "etcd_up"), 1.0, "{samples:#?}");
    assert_eq!(value(&samples, "etcd_healthy"), 1.0);
    assert_eq!(value(&samples, "etcd_has_leader"), 1.0);
    assert_eq!(value(&samples, "etcd_is_leader"), 1.0);
    assert_eq!(value(&samples, "etcd_members"), 1.0);
    assert_eq!(value(&samples, "etcd_learners"), 0.0);
    assert_eq!(value(&samples, "etcd_quorum"), 1.0);
    assert!(value(&samples, "etcd_raft_term") >= 1.0);
    assert!(value(&samples, "etcd_db_size_bytes") > 0.0);
    assert_eq!(
        testing::labels(&samples, "etcd_info").get("member"),
        Some("etcd")
    );
    assert_eq!(
        testing::labels(&samples, "etcd_leader_info").get("leader"),
        Some("etcd")
    );
}

#[tokio::test]
async fn down_silent_or_foreign_endpoints_are_up_0_with_a_reason() {
    let port = warden_testkit::free_port();
    for kind in ["patroni", "etcd"] {
        let mut s = spec(&entry(kind, &format!("http://127.0.0.1:{port}")));
        let samples = run(&mut s).await;
        assert_eq!(value(&samples, &format!("{kind}_up")), 0.0);
        assert_eq!(
            testing::labels(&samples, &format!("{kind}_error_info")).get("reason"),
            Some("refused"),
            "{samples:#?}"
        );
    }
    // An HTTP server that is neither: a JSON answer of the wrong shape.
    let app =
        axum::Router::new().fallback(|| async { axum::Json(serde_json::json!({"ok": true})) });
    let server = testing::http_server(app).await;
    let mut s = spec(&entry("patroni", &format!("http://{}", server.addr)));
    let samples = run(&mut s).await;
    assert_eq!(value(&samples, "patroni_up"), 0.0);
    assert_eq!(
        testing::labels(&samples, "patroni_error_info").get("reason"),
        Some("protocol"),
        "{samples:#?}"
    );
    let app = axum::Router::new().fallback(|| async {
        std::future::pending::<()>().await;
        "never"
    });
    let server = testing::http_server(app).await;
    let mut s = spec(&entry("etcd", &format!("http://{}", server.addr)));
    let samples = run(&mut s).await;
    assert_eq!(
        testing::labels(&samples, "etcd_error_info").get("reason"),
        Some("timeout"),
        "{samples:#?}"
    );
}

#[test]
fn config_mistakes_are_reported() {
    let p = problems(&entry("patroni", "127.0.0.1:8008"));
    assert!(p[0].contains("is not an http:// or https:// URL"), "{p:?}");
    let p = problems(
        "[[collector.etcd]]\nname = \"e\"\nurl = \"http://h:2379\"\nclient_cert = \"/x.pem\"\n",
    );
    assert!(p[0].contains("'client_cert' needs 'client_key'"), "{p:?}");
}
