//! Timeouts: `command_timeout` for a silent client between commands and
//! `data_timeout` inside DATA both end in `421 4.4.2` and a closed socket, with
//! nothing delivered.

use std::time::Duration;

use net_receiver::Config;

use crate::support::common::{Client, SERVER_NAME, TestServer, config};

#[test]
fn silent_client_gets_421_after_command_timeout() {
    let server = TestServer::start(Config {
        command_timeout: 0.5,
        ..config()
    });
    let mut client = Client::connect(server.port);
    let reply = client.expect_enhanced(421, "4.4.2");
    assert_eq!(
        reply.text(),
        format!("4.4.2 {SERVER_NAME} Timeout waiting for client input")
    );
    client.expect_eof();
}

#[test]
fn half_a_command_line_gets_421_after_command_timeout() {
    let server = TestServer::start(Config {
        command_timeout: 0.5,
        ..config()
    });
    let mut client = Client::ehlo(server.port);
    client.send(b"MAIL FROM:<a@");
    client.expect_enhanced(421, "4.4.2");
    client.expect_eof();
    server.expect_messages(0);
}

#[test]
fn stalled_data_gets_421_after_data_timeout() {
    let server = TestServer::start(Config {
        data_timeout: 0.5,
        ..config()
    });
    let mut client = Client::ehlo(server.port);
    client.start_data("a@b.c", "d@e.f");
    client.send(b"Subject: stalled\r\n\r\nhalf a li");
    client.expect_enhanced(421, "4.4.2");
    client.expect_eof();
    server.expect_messages(0);
}

#[test]
fn command_timeout_does_not_cut_a_slow_but_flowing_data() {
    // Inside DATA only data_timeout counts: pauses longer than the command
    // timeout but shorter than the data timeout are fine.
    let server = TestServer::start(Config {
        command_timeout: 0.3,
        data_timeout: 10.0,
        ..config()
    });
    let mut client = Client::ehlo(server.port);
    client.start_data("a@b.c", "d@e.f");
    client.send(b"Subject: slow\r\n\r\n");
    std::thread::sleep(Duration::from_millis(700));
    client.send(b"still here\r\n.\r\n");
    client.expect_enhanced(250, "2.0.0");
    client.quit();
    server.expect_messages(1);
}

#[test]
fn stalled_bdat_chunk_gets_421_after_data_timeout() {
    let server = TestServer::start(Config {
        data_timeout: 0.5,
        ..config()
    });
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@b.c>", 250);
    client.cmd("RCPT TO:<d@e.f>", 250);
    client.send(b"BDAT 100 LAST\r\nten bytes.");
    client.expect_enhanced(421, "4.4.2");
    client.expect_eof();
    server.expect_messages(0);
}
