//! `/metrics` in the Prometheus text format: sign-ins by method and result, the password
//! hashing queue, open device event streams, how long the commits that finish sign-ins take,
//! and gateway failures. One registry per server (no global recorder), so servers in one
//! process (tests) count apart.
//!
//! Only the addresses in `server.metrics_allow` may read it (loopback by default): the
//! figures say how busy the server is and which methods people use.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignInLabels {
    /// The audit log's method name (`password`, `totp`, `push`, `sms`, `voice`, …).
    pub method: String,
    /// `success` or `failure`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    /// `outbox`, `kannel`, `baresip`, `twilio`.
    pub gateway: String,
    /// `sms` or `call`.
    pub kind: String,
}

pub struct Metrics {
    registry: Registry,
    pub sign_ins: Family<SignInLabels, Counter>,
    pub gateway_failures: Family<GatewayLabels, Counter>,
    /// Seconds of the store writes that finish sign-ins (session, transaction, audit line).
    pub sign_in_commit: Histogram,
    hashing_waiting: Gauge,
    event_streams: Gauge,
    connected_users: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sesame");
        let sign_ins = Family::<SignInLabels, Counter>::default();
        registry.register(
            "sign_ins",
            "Sign-in attempts that reached a verdict, by method and result",
            sign_ins.clone(),
        );
        let gateway_failures = Family::<GatewayLabels, Counter>::default();
        registry.register(
            "gateway_failures",
            "Texts and calls a gateway did not take (refused, unreachable, timed out)",
            gateway_failures.clone(),
        );
        // 0.5 ms to about 4 s.
        let sign_in_commit = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "sign_in_commit_seconds",
            "Store writes that finish a sign-in",
            sign_in_commit.clone(),
        );
        let hashing_waiting = Gauge::default();
        registry.register(
            "hashing_queue_waiting",
            "Sign-ins waiting for a password hashing slot",
            hashing_waiting.clone(),
        );
        let event_streams = Gauge::default();
        registry.register(
            "device_event_streams",
            "Open event streams of authenticator apps",
            event_streams.clone(),
        );
        let connected_users = Gauge::default();
        registry.register(
            "connected_users",
            "Users with at least one authenticator app connected",
            connected_users.clone(),
        );
        Metrics {
            registry,
            sign_ins,
            gateway_failures,
            sign_in_commit,
            hashing_waiting,
            event_streams,
            connected_users,
        }
    }
}

impl Metrics {
    /// The text a scrape gets, with the gauges read now.
    pub fn render(&self, hashing_waiting: usize, event_streams: usize, users: usize) -> String {
        self.hashing_waiting.set(hashing_waiting as i64);
        self.event_streams.set(event_streams as i64);
        self.connected_users.set(users as i64);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn sign_in(&self, method: &str, success: bool) {
        self.sign_ins
            .get_or_create(&SignInLabels {
                method: method.to_string(),
                result: if success { "success" } else { "failure" }.to_string(),
            })
            .inc();
    }

    pub fn gateway_failed(&self, gateway: &str, kind: &str) {
        self.gateway_failures
            .get_or_create(&GatewayLabels {
                gateway: gateway.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_rendered_with_their_labels() {
        let m = Metrics::default();
        m.sign_in("sms", true);
        m.sign_in("sms", true);
        m.sign_in("password", false);
        m.gateway_failed("kannel", "sms");
        m.sign_in_commit.observe(0.003);
        let text = m.render(4, 2, 1);
        assert!(
            text.contains("sesame_sign_ins_total{method=\"sms\",result=\"success\"} 2"),
            "{text}"
        );
        assert!(text.contains("sesame_sign_ins_total{method=\"password\",result=\"failure\"} 1"));
        assert!(text.contains("sesame_gateway_failures_total{gateway=\"kannel\",kind=\"sms\"} 1"));
        assert!(text.contains("sesame_hashing_queue_waiting 4"));
        assert!(text.contains("sesame_device_event_streams 2"));
        assert!(text.contains("sesame_sign_in_commit_seconds_count 1"));
        assert!(text.ends_with("# EOF\n"));
    }
}
