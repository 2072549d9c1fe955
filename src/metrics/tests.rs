//! The text the endpoint serves, in both formats.

use std::time::Duration;

use super::*;

fn line_of<'a>(text: &'a str, sample: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(sample))
}

fn value(text: &str, sample: &str) -> Option<f64> {
    let line = line_of(text, &format!("{sample} "))?;
    line.rsplit(' ').next()?.parse().ok()
}

#[test]
fn counters_start_at_zero_and_count_events() {
    let metrics = Metrics::new();
    let text = metrics.openmetrics();
    assert_eq!(
        value(&text, "net_receiver_connections_accepted_total"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            r#"net_receiver_replies_total{class="2xx",code="250"}"#
        ),
        Some(0.0)
    );
    let open = metrics.connection_accepted();
    metrics.connection_refused(Refused::TooManyConnections);
    metrics.command(Verb::Mail);
    metrics.command(Verb::Mail);
    metrics.command(Verb::StartTls);
    metrics.replies_in(b"250-first\r\n250 last\r\n550 5.1.1 no\r\n");
    metrics.reply(299);
    metrics.recipient(false);
    metrics.message_accepted();
    metrics.message_refused(MessageRefused::TooLarge);
    metrics.bytes_received(1000);
    metrics.delivery(Duration::from_millis(3), Some(DeliveryFailure::Storage));
    metrics.auth(false);
    metrics.lockout();
    metrics.tls_handshake(Some("TLSv1.2"));
    metrics.tls_handshake_failed(true);
    let text = metrics.openmetrics();
    for (sample, expected) in [
        ("net_receiver_connections_accepted_total", 1.0),
        ("net_receiver_sessions_open", 1.0),
        (
            r#"net_receiver_connections_refused_total{reason="too_many_connections"}"#,
            1.0,
        ),
        (
            r#"net_receiver_connections_refused_total{reason="locked_out"}"#,
            0.0,
        ),
        (r#"net_receiver_commands_total{verb="MAIL"}"#, 2.0),
        (r#"net_receiver_commands_total{verb="STARTTLS"}"#, 1.0),
        (r#"net_receiver_replies_total{class="2xx",code="250"}"#, 1.0),
        (r#"net_receiver_replies_total{class="5xx",code="550"}"#, 1.0),
        (r#"net_receiver_replies_total{class="2xx",code="299"}"#, 1.0),
        (r#"net_receiver_recipients_total{result="refused"}"#, 1.0),
        ("net_receiver_messages_accepted_total", 1.0),
        (
            r#"net_receiver_messages_refused_total{reason="too_large"}"#,
            1.0,
        ),
        ("net_receiver_received_bytes_total", 1000.0),
        ("net_receiver_delivery_duration_seconds_count", 1.0),
        (
            r#"net_receiver_delivery_duration_seconds_bucket{le="0.005"}"#,
            1.0,
        ),
        (
            r#"net_receiver_delivery_duration_seconds_bucket{le="0.001"}"#,
            0.0,
        ),
        (
            r#"net_receiver_delivery_failures_total{kind="storage"}"#,
            1.0,
        ),
        (r#"net_receiver_auth_total{result="failure"}"#, 1.0),
        ("net_receiver_lockouts_total", 1.0),
        (
            r#"net_receiver_tls_handshakes_total{version="TLSv1.2"}"#,
            1.0,
        ),
        (
            r#"net_receiver_tls_handshake_failures_total{reason="timeout"}"#,
            1.0,
        ),
    ] {
        assert_eq!(value(&text, sample), Some(expected), "{sample} in\n{text}");
    }
    let version = format!(
        r#"net_receiver_build_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&version), "{text}");
    assert!(
        text.contains("# TYPE net_receiver_commands counter\n"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    drop(open);
    assert_eq!(
        value(&metrics.openmetrics(), "net_receiver_sessions_open"),
        Some(0.0)
    );
}

#[test]
fn the_text_format_names_families_by_their_samples() {
    let metrics = Metrics::new();
    metrics.command(Verb::Quit);
    let text = to_text_format(&metrics.openmetrics());
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE net_receiver_commands_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# HELP net_receiver_commands_total SMTP commands"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE net_receiver_build_info gauge\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE net_receiver_sessions_open gauge\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE net_receiver_delivery_duration_seconds histogram\n"),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"net_receiver_commands_total{verb="QUIT"}"#),
        Some(1.0)
    );
    // Every sample line belongs to a family its TYPE line names.
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for sample in text.lines().filter(|l| !l.starts_with('#')) {
        let name = sample.split(['{', ' ']).next().unwrap_or_default();
        assert!(
            families.iter().any(|f| name.starts_with(f)),
            "{name} has no TYPE line"
        );
    }
}

#[test]
fn only_whole_reply_lines_count() {
    let metrics = Metrics::new();
    // A continuation line, a partial line and a line of text are not replies.
    metrics.replies_in(b"220-hello\r\n220 ready\r\n25");
    metrics.replies_in(b"");
    let text = metrics.openmetrics();
    assert_eq!(
        value(
            &text,
            r#"net_receiver_replies_total{class="2xx",code="220"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn the_endpoint_answers_get_metrics_in_the_format_asked_for() -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let metrics = std::sync::Arc::new(Metrics::new());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve(listener, metrics, stop));
    let ask = |request: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        std::io::Result::Ok(answer)
    };
    let text = ask("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    assert!(
        text.contains("net_receiver_connections_accepted_total 0\n"),
        "{text}"
    );
    let open = ask(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n",
    )
    .await?;
    assert!(
        open.contains("application/openmetrics-text; version=1.0.0"),
        "{open}"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    let missing = ask("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await?;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let post =
        ask("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    Ok(())
}

#[test]
fn layer_calls_and_dns_results_are_counted_by_closed_labels() {
    let metrics = Metrics::new();
    metrics.layer_call(
        LayerKind::Hook,
        crate::policy::Stage::Data,
        Duration::from_millis(2),
        false,
    );
    metrics.layer_call(
        LayerKind::Hook,
        crate::policy::Stage::Data,
        Duration::from_secs(2),
        true,
    );
    metrics.layer_call(
        LayerKind::Dns,
        crate::policy::Stage::Connect,
        Duration::from_micros(50),
        false,
    );
    metrics.dns_result(DnsCheck::Spf, "pass");
    metrics.dns_result(DnsCheck::Spf, "PASS");
    metrics.dns_result(DnsCheck::Domain, "something a zone made up");
    let text = metrics.openmetrics();
    for (sample, expected) in [
        (
            r#"net_receiver_policy_duration_seconds_count{layer="hook",stage="data"}"#,
            2.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_bucket{le="0.0025",layer="hook",stage="data"}"#,
            1.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_bucket{le="0.0001",layer="dns",stage="connect"}"#,
            1.0,
        ),
        (
            r#"net_receiver_policy_duration_seconds_count{layer="milter",stage="rcpt_to"}"#,
            0.0,
        ),
        (r#"net_receiver_policy_errors_total{layer="hook"}"#, 1.0),
        (r#"net_receiver_policy_errors_total{layer="dns"}"#, 0.0),
        (
            r#"net_receiver_dns_results_total{check="spf",result="pass"}"#,
            2.0,
        ),
        (
            r#"net_receiver_dns_results_total{check="domain",result="other"}"#,
            1.0,
        ),
    ] {
        assert_eq!(value(&text, sample), Some(expected), "{sample} in\n{text}");
    }
}

#[test]
fn delivery_targets_are_counted_by_the_kind_in_their_name() {
    use crate::delivery::{DeliveryError, DeliveryReport};
    use crate::mail::RcptTo;

    let metrics = Metrics::new();
    let targets = metrics.targets();
    let rcpt = RcptTo::default();
    let mut report = DeliveryReport::default();
    report.push(0, &rcpt, Ok(()));
    report.push(
        1,
        &rcpt,
        Err(DeliveryError::Permanent("no such user".into())),
    );
    report.push(2, &rcpt, Err(DeliveryError::Temporary("over quota".into())));
    targets.observe("lmtp 127.0.0.1:24", Duration::from_millis(4), [&report]);
    targets.observe("my own target", Duration::from_millis(1), []);
    let text = metrics.openmetrics();
    for (sample, expected) in [
        (
            r#"net_receiver_delivery_target_outcomes_total{target="lmtp",result="delivered"}"#,
            1.0,
        ),
        (
            r#"net_receiver_delivery_target_outcomes_total{target="lmtp",result="permanent"}"#,
            1.0,
        ),
        (
            r#"net_receiver_delivery_target_outcomes_total{target="lmtp",result="temporary"}"#,
            1.0,
        ),
        (
            r#"net_receiver_delivery_target_duration_seconds_count{target="lmtp"}"#,
            1.0,
        ),
        (
            r#"net_receiver_delivery_target_duration_seconds_count{target="other"}"#,
            1.0,
        ),
        (
            r#"net_receiver_delivery_target_duration_seconds_count{target="maildir"}"#,
            0.0,
        ),
    ] {
        assert_eq!(value(&text, sample), Some(expected), "{sample} in\n{text}");
    }
}
