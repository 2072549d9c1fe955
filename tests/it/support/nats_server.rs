//! Real `nats-server`s (Debian `nats-server`) with JetStream for the tests: a
//! single node, or a cluster of three on loopback ports, each with its own
//! store directory and config file; a node can be stopped and started again;
//! all are killed on drop. The tests read the streams with the official
//! `async-nats` client.

use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::service::{service_port, spawn_quiet};

/// One node.
pub(crate) struct NatsNode {
    pub(crate) port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl NatsNode {
    pub(crate) fn start(&mut self) {
        self.stop();
        self.child = Some(spawn_quiet(
            Command::new("nats-server").arg("-c").arg(&self.config),
            "nats-server",
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A set of nodes (one, or a cluster) with their store directories.
pub(crate) struct Nats {
    pub(crate) nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// One node with JetStream and a small `max_payload` (64 KiB), so the
    /// tests reach the claim check without huge messages.
    pub(crate) fn single() -> Self {
        Self::cluster_of(1)
    }

    /// `n` nodes; with more than one, a cluster with routes between all.
    pub(crate) fn cluster_of(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // All chosen before the first node starts, which dials the others'
        // routes at once: outside the ephemeral range, so none of those
        // connections can take one.
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (service_port(), service_port())).collect();
        let mut nodes = Vec::new();
        for (i, (port, cluster_port)) in ports.iter().enumerate() {
            let store = dir.path().join(format!("store{i}"));
            let mut config = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{port}\nmax_payload: 65536\n\
                 jetstream {{\n  store_dir: \"{}\"\n}}\n",
                store.display()
            );
            if n > 1 {
                let routes: Vec<String> = ports
                    .iter()
                    .map(|(_, c)| format!("nats-route://127.0.0.1:{c}"))
                    .collect();
                config.push_str(&format!(
                    "cluster {{\n  name: test\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                ));
            }
            let path = dir.path().join(format!("n{i}.conf"));
            std::fs::write(&path, config).unwrap();
            nodes.push(NatsNode {
                port: *port,
                config: path,
                child: None,
            });
        }
        for node in &mut nodes {
            node.start();
        }
        Self { nodes, _dir: dir }
    }

    /// The URL list of every node, for a client.
    pub(crate) fn url(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect();
        urls.join(",")
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
    }
}

/// Every message of `stream` in sequence order: (`Nats-Msg-Id`, payload as
/// JSON), read from the stream's leader over any of `url`'s servers (comma
/// separated). A read that fails — a leader still being elected after a node
/// was killed — is tried again for up to 30 s in all, then fails the test: a
/// message is never skipped. A sequence JetStream says it does not hold fails
/// the test too, as nothing deletes from these streams.
pub(crate) fn stream_messages(url: &str, stream: &str) -> Vec<(String, serde_json::Value)> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        let again = |what: String| async move {
            assert!(Instant::now() < deadline, "reading stream {stream}: {what}");
            eprintln!("reading stream {stream}: {what}; again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let client = async_nats::ConnectOptions::new()
            .connect(url.split(',').collect::<Vec<_>>())
            .await
            .unwrap();
        let js = async_nats::jetstream::new(client);
        let handle = loop {
            match js.get_stream(stream).await {
                Ok(handle) => break handle,
                Err(e) => again(format!("the stream: {e}")).await,
            }
        };
        let state = loop {
            match handle.get_info().await {
                Ok(info) => break info.state,
                Err(e) => again(format!("its state: {e}")).await,
            }
        };
        let mut out = Vec::new();
        if state.messages == 0 {
            return out;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let message = loop {
                match handle.get_raw_message(sequence).await {
                    Ok(message) => break message,
                    Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {
                        panic!("message {sequence} of stream {stream} is missing: {e}")
                    }
                    Err(e) => again(format!("message {sequence}: {e}")).await,
                }
            };
            let id = message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            let payload = serde_json::from_slice(&message.payload)
                .unwrap_or_else(|e| panic!("message {sequence} is no mail structure: {e}"));
            out.push((id, payload));
        }
        out
    })
}
