//! Clients that vanish: a connection dropped in the middle of DATA or BDAT
//! delivers nothing, leaves nothing in `tmp/`, and the server goes on serving.

use crate::support::common::{Client, TestServer, config, split_stored};

fn next_connection_works(server: &TestServer) {
    let mut client = Client::ehlo(server.port);
    client.start_data("next@example.com", "rcpt@example.com");
    client.send(b"Subject: after\r\n\r\nstill serving\r\n.\r\n");
    client.expect_enhanced(250, "2.0.0");
    client.quit();
}

#[test]
fn shutdown_in_the_middle_of_data_delivers_nothing() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.start_data("gone@example.com", "rcpt@example.com");
    client.send(b"Subject: cut\r\n\r\nthe first line\r\nand half of the sec");
    client.shutdown_write();
    // The server sees EOF and closes its side without a reply.
    client.expect_eof();
    server.expect_messages(0);

    next_connection_works(&server);
    let files = server.expect_messages(1);
    let stored = split_stored(&files[0]);
    assert_eq!(stored.return_path, "Return-Path: <next@example.com>");
    assert_eq!(stored.body, b"Subject: after\r\n\r\nstill serving\r\n");
}

#[test]
fn drop_after_a_full_line_before_the_dot_delivers_nothing() {
    let server = TestServer::start(config());
    {
        let mut client = Client::ehlo(server.port);
        client.start_data("gone@example.com", "rcpt@example.com");
        // Everything but the final dot line.
        client.send(b"Subject: almost\r\n\r\nbody\r\n");
        // Dropped without shutdown: the kernel closes the socket.
    }
    next_connection_works(&server);
    let files = server.expect_messages(1);
    assert_eq!(
        split_stored(&files[0]).return_path,
        "Return-Path: <next@example.com>"
    );
}

#[test]
fn shutdown_in_the_middle_of_a_bdat_chunk_delivers_nothing() {
    let server = TestServer::start(config());
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<gone@example.com>", 250);
    client.cmd("RCPT TO:<rcpt@example.com>", 250);
    client.send(b"BDAT 100 LAST\r\nonly forty-some bytes of the hundred\r\n");
    client.shutdown_write();
    client.expect_eof();
    server.expect_messages(0);
    next_connection_works(&server);
    server.expect_messages(1);
}

#[test]
fn many_abandoned_connections_do_not_stop_the_server() {
    let server = TestServer::start(config());
    for i in 0..20 {
        let mut client = Client::ehlo(server.port);
        client.start_data(&format!("gone{i}@example.com"), "rcpt@example.com");
        client.send(b"partial");
        client.shutdown_write();
        client.expect_eof();
    }
    server.expect_messages(0);
    next_connection_works(&server);
    server.expect_messages(1);
}
