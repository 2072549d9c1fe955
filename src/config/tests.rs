//! Tests of `config`.
use super::*;

#[test]
fn defaults_are_valid() {
    let config = Config::parse("").unwrap();
    assert_eq!(config, Config::default());
    let settings = config.settings().unwrap();
    assert_eq!(settings.limits.max_command_line, 512);
    let addr: SocketAddr = "127.0.0.1:2525".parse().unwrap();
    assert_eq!(config.listeners().unwrap(), vec![ListenerSpec::from(addr)]);
}

#[test]
fn seed_names_parse() {
    let config = Config::parse(
        "server_name = \"mx.example.com\"\nlistening_ports = [\"2000\", \"127.0.0.1:2001\", \"[::1]:2002\"]\n\
         sender_character_check = false\nbare_line_ending = \"normalize\"\ncommand_timeout = 0.5\n",
    )
    .unwrap();
    let addrs: Vec<SocketAddr> = config.listeners().unwrap().iter().map(|l| l.addr).collect();
    assert_eq!(addrs[0], "[::]:2000".parse().unwrap());
    assert_eq!(addrs[2], "[::1]:2002".parse().unwrap());
    let settings = config.settings().unwrap();
    assert_eq!(settings.server_name, "mx.example.com");
    assert_eq!(settings.limits.command_timeout, Duration::from_millis(500));
    assert_eq!(settings.limits.bare_line_ending, BareLineEnding::Normalize);
}

#[test]
fn errors_name_the_culprit() {
    let e = Config::parse("max_mesage_size = 5").unwrap_err();
    assert!(e.contains("max_mesage_size"), "{e}");
    let e = Config::parse("max_errors = \"ten\"").unwrap_err();
    assert!(e.contains("invalid type"), "{e}");
    let c = Config::parse("listening_ports = [\"nowhere\"]").unwrap();
    assert!(c.listeners().unwrap_err().to_string().contains("nowhere"));
    let c = Config::parse("command_timeout = -1").unwrap();
    assert!(
        c.settings()
            .unwrap_err()
            .to_string()
            .contains("command_timeout")
    );
    let c = Config::parse("server_name = \"a b\"").unwrap();
    assert!(
        c.settings()
            .unwrap_err()
            .to_string()
            .contains("server_name")
    );
}

#[test]
fn listener_modes() {
    let config = Config::parse(
        "listening_ports = [\"25\", \"127.0.0.1:465\", \"587\", \"2525\"]\n\
         proxy_trusted_networks = [\"10.0.0.0/8\", \"::1\"]\n\
         [[listener]]\naddress = \"127.0.0.1:10465\"\nmode = \"smtps\"\n\
         [[listener]]\naddress = \"127.0.0.1:10025\"\nproxy_protocol = true\n",
    )
    .unwrap();
    let modes: Vec<(u16, ListenerMode, bool)> = config
        .listeners()
        .unwrap()
        .iter()
        .map(|l| (l.addr.port(), l.mode, l.proxy_protocol))
        .collect();
    use ListenerMode::*;
    assert_eq!(
        modes,
        [
            (25, Smtp, false),
            (465, Smtps, false),
            (587, Submission, false),
            (2525, Smtp, false),
            (10465, Smtps, false),
            (10025, Smtp, true)
        ]
    );
    let e = Config::parse("[[listener]]\naddress = \"1.2.3.4:5\"\nmode = \"smtpx\"\n").unwrap_err();
    assert!(e.contains("smtpx"), "{e}");
    let c =
        Config::parse("[[listener]]\naddress = \"127.0.0.1:5\"\nproxy_protocol = true\n").unwrap();
    assert!(
        c.listeners()
            .unwrap_err()
            .to_string()
            .contains("proxy_trusted_networks")
    );
    let c = Config::parse("proxy_trusted_networks = [\"10.0.0.0/33\"]").unwrap();
    assert!(
        c.settings()
            .unwrap_err()
            .to_string()
            .contains("10.0.0.0/33")
    );
}

#[test]
fn cidr_matching() {
    let net = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(net.contains("10.1.200.3".parse().unwrap()));
    assert!(net.contains("::ffff:10.1.0.1".parse().unwrap()));
    assert!(!net.contains("10.2.0.1".parse().unwrap()));
    assert!(!net.contains("::1".parse().unwrap()));
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap())
    );
    assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
    assert!(
        Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains("2001:db8:1::5".parse().unwrap())
    );
    assert_eq!(Cidr::parse("nonsense"), None);
    assert_eq!(Cidr::parse("1.2.3.4/"), None);
}

#[test]
fn issue12_type_errors_name_line_column_and_key() {
    for (text, want) in [
        (
            "daemon = \"yes\"",
            "line 1, column 10, key daemon: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "server_name = \"mx.example\"\n\n  max_errors = \"ten\"\n",
            "line 3, column 16, key max_errors: invalid type: string \"ten\"",
        ),
        (
            "max_message_size = 1000\nmax_mesage_size = 5\n",
            "line 2, column 1, key max_mesage_size: unknown field `max_mesage_size`",
        ),
        (
            "[[listener]]\naddress = \"127.0.0.1:25\"\nmode = 5\n",
            "line 3, column 8, key listener.mode: wanted string or table",
        ),
        (
            "[[listener]]\naddress = \"127.0.0.1:25\"\nmodes = \"smtp\"\n",
            "line 3, column 1, key listener.modes: unknown field `modes`",
        ),
        (
            "listening_ports = [\n  \"2525\",\n  25,\n]\n",
            "line 3, column 3, key listening_ports: invalid type: integer `25`",
        ),
        // A line that is no assignment: no key of the line above is blamed.
        ("quiet = true\ndaemon yes\n", "line 2, column 8: "),
        // An unknown table names itself.
        (
            "[listner]\naddress = \"127.0.0.1:25\"\n",
            "line 1, column 2, key listner: unknown field `listner`",
        ),
    ] {
        let error = Config::parse(text).unwrap_err();
        assert!(error.starts_with(want), "{text:?}:\n{error}\nwanted {want}");
    }
}

#[test]
fn issue12_file_errors_name_the_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.toml");
    std::fs::write(&path, "quiet = true\ndaemon = \"yes\"\n").unwrap();
    let error = Config::load(&path).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "config file {}: line 2, column 10, key daemon: invalid type",
            path.display()
        )),
        "{error}"
    );
}

#[test]
fn issue12_ipv6_listen_without_brackets_says_how_to_write_it() {
    for (config, key) in [
        ("listening_ports = [\"::1:2525\"]", "listening_ports"),
        (
            "[[listener]]\naddress = \"::1:2525\"\n",
            "listener.address (a [[listener]] table or a --listen",
        ),
    ] {
        let error = Config::parse(config)
            .unwrap()
            .listeners()
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(&format!("invalid {key}")), "{error}");
        assert!(error.contains("write \"[::1]:2525\""), "{error}");
    }
    // An address that is wrong in another way gets no such advice.
    let error = Config::parse("listening_ports = [\"nowhere:25\"]")
        .unwrap()
        .listeners()
        .unwrap_err()
        .to_string();
    assert!(!error.contains("brackets"), "{error}");
}

#[test]
fn issue16_metrics_listen_is_off_by_default_and_checked() {
    assert_eq!(Config::default().metrics_listen().unwrap(), None);
    let config = Config::parse("metrics_listen = \"127.0.0.1:9464\"").unwrap();
    assert_eq!(
        config.metrics_listen().unwrap(),
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let error = Config::parse("metrics_listen = \"nowhere\"")
        .unwrap()
        .metrics_listen()
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("invalid metrics_listen"), "{error}");
}

#[test]
fn hook_tables_parse_with_their_defaults() {
    use crate::policy::{HookConfig, OnError, Stage};
    let config = Config::parse(
        "[[hook]]\nurl = \"http://127.0.0.1:8025/\"\n\n[[hook]]\nurl = \"http://127.0.0.1:8026/p\"\n\
         name = \"grey\"\nstages = [\"connect\", \"rcpt_to\"]\ntimeout = 2.5\non_error = \"accept\"\n\
         headers = { Authorization = \"Bearer x\" }\nmax_body = 100\nmax_concurrency = 3\n",
    )
    .unwrap();
    assert_eq!(
        config.hooks[0],
        HookConfig::with_url("http://127.0.0.1:8025/")
    );
    assert_eq!(config.hooks[0].stages, [Stage::Data]);
    let second = &config.hooks[1];
    assert_eq!(second.name.as_deref(), Some("grey"));
    assert_eq!(second.stages, [Stage::Connect, Stage::RcptTo]);
    assert_eq!((second.timeout, second.on_error), (2.5, OnError::Accept));
    assert_eq!(second.headers["Authorization"], "Bearer x");
    assert_eq!((second.max_body, second.max_concurrency), (100, 3));

    for (text, culprit) in [
        (
            "[[hook]]\nurl = \"http://a/\"\nstage = [\"data\"]\n",
            "hook.stage",
        ),
        (
            "[[hook]]\nurl = \"http://a/\"\nstages = [\"dat\"]\n",
            "hook.stages",
        ),
        (
            "[[hook]]\nurl = \"http://a/\"\non_error = \"ignore\"\n",
            "hook.on_error",
        ),
        ("[[hook]]\nname = \"x\"\n", "missing field `url`"),
    ] {
        let e = Config::parse(text).unwrap_err();
        assert!(e.contains(culprit), "{text}: {e}");
    }
}

#[test]
fn tls_ca_parses_in_hook_and_webhook_tables() {
    let config = Config::parse(
        "[[hook]]\nurl = \"https://hooks.example.net/p\"\ntls_ca = \"/etc/ca/hooks.pem\"\n\n\
         [[deliver]]\nkind = \"webhook\"\nurl = \"https://app.example.net/mail\"\n\
         secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\ntls_ca = \"/etc/ca/app.pem\"\n",
    )
    .unwrap();
    assert_eq!(
        config.hooks[0].tls_ca.as_deref(),
        Some(std::path::Path::new("/etc/ca/hooks.pem"))
    );
    match &config.deliver[0] {
        DeliverConfig::Webhook { tls_ca, .. } => {
            assert_eq!(
                tls_ca.as_deref(),
                Some(std::path::Path::new("/etc/ca/app.pem"))
            )
        }
        other => panic!("{other:?}"),
    }
}
