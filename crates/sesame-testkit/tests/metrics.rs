//! `/metrics` through the real server: Prometheus text with what happened, for allowed
//! addresses only.

use sesame_testkit::TestServer;

#[tokio::test]
async fn metrics_count_sign_ins_by_method_and_result_for_allowed_addresses_only() {
    let srv = TestServer::spawn().await;
    srv.create_user("alice", Some("correct horse")).await;
    let mut b = srv.browser();
    assert_eq!(
        b.password_step("alice", "correct horse").await.location(),
        Some("/account")
    );
    let mut w = srv.browser();
    assert_eq!(w.password_step("alice", "wrong").await.status, 401);
    let m = srv.browser().get("/metrics").await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(
        m.headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    for line in [
        "sesame_sign_ins_total{method=\"password\",result=\"success\"} 1",
        "sesame_sign_ins_total{method=\"password\",result=\"failure\"} 1",
        "sesame_sign_in_commit_seconds_count 1",
        "sesame_hashing_queue_waiting 0",
        "sesame_device_event_streams 0",
    ] {
        assert!(m.body.contains(line), "{line}\n{}", m.body);
    }
    assert!(m.body.ends_with("# EOF\n"));
    // Another address (not in server.metrics_allow) sees nothing.
    let other = srv.browser_from([127, 0, 0, 9]).get("/metrics").await;
    assert_eq!(other.status, 404);
}
