//! Real `nats-server`s (Debian `nats-server`) with JetStream for the tests: a
//! single node, or a cluster of three on loopback ports, each with its own
//! store directory and config file; a node can be stopped and started again,
//! or frozen (SIGSTOP: it holds its connections and answers nothing) and
//! thawed; all are killed on drop. The tests read the streams with the official
//! `async-nats` client.

use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::service::{service_port, spawn_quiet};

/// One node.
pub(crate) struct NatsNode {
    pub(crate) port: u16,
    /// Its `server_name` (as stream infos name leaders and replicas).
    pub(crate) name: String,
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

    /// SIGSTOP: the node keeps its sockets open and answers nothing, as a hung
    /// or cut-off server does.
    pub(crate) fn freeze(&self) {
        self.send(Signal::SIGSTOP);
    }

    /// SIGCONT after [`NatsNode::freeze`].
    pub(crate) fn thaw(&self) {
        self.send(Signal::SIGCONT);
    }

    fn send(&self, signal: Signal) {
        let child = self.child.as_ref().expect("a running node");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        kill(pid, signal).expect("a signal to nats-server");
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
                name: format!("n{i}"),
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

/// Runs `work` with a client connected to any of `url`'s servers (comma
/// separated), on a runtime of its own.
fn with_client<T>(url: &str, work: impl AsyncFnOnce(async_nats::Client) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .connect(url.split(',').collect::<Vec<_>>())
            .await
            .unwrap();
        work(client).await
    })
}

/// The cluster part of `stream`'s info (its leader and the other replicas),
/// or why there is none yet.
async fn cluster_of_stream(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Result<async_nats::jetstream::stream::ClusterInfo, String> {
    let mut handle = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let info = handle.info().await.map_err(|e| e.to_string())?;
    info.cluster
        .clone()
        .ok_or_else(|| "no cluster info".to_owned())
}

/// Runs `check` on `stream`'s cluster info every 100 ms until it holds, for at
/// most 60 s (then fails the test, naming `what`). `act` runs after each
/// failed check (e.g. asks a leader to step down).
fn until_cluster<C, A>(url: &str, stream: &str, what: &str, check: C, act: A)
where
    C: Fn(&async_nats::jetstream::stream::ClusterInfo) -> bool,
    A: AsyncFn(&async_nats::Client, &async_nats::jetstream::stream::ClusterInfo),
{
    with_client(url, async |client| {
        let js = async_nats::jetstream::new(client.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let cluster = cluster_of_stream(&js, stream).await;
            match &cluster {
                Ok(cluster) if check(cluster) => return,
                Ok(cluster) => act(&client, cluster).await,
                Err(_) => {}
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream}: not {what} within 60 s: {cluster:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

/// Waits until `stream` has a leader and every other of its `replicas` is
/// current, as the leader sees it: a cluster healed after a fault.
pub(crate) fn wait_until_whole(url: &str, stream: &str, replicas: usize) {
    until_cluster(
        url,
        stream,
        "whole",
        |cluster| {
            cluster.leader.is_some()
                && cluster.replicas.len() + 1 == replicas
                && cluster
                    .replicas
                    .iter()
                    .all(|peer| peer.current && !peer.offline)
        },
        async |_, _| {},
    );
}

/// Asks `stream`'s leader to step down until a node other than `server`
/// (its `server_name`) leads it.
pub(crate) fn lead_elsewhere(url: &str, stream: &str, server: &str) {
    until_cluster(
        url,
        stream,
        &format!("led by another than {server}"),
        |cluster| {
            cluster
                .leader
                .as_deref()
                .is_some_and(|leader| leader != server)
        },
        async |client, cluster| {
            if cluster.leader.as_deref() == Some(server) {
                // The answer says nothing we need; the next check sees.
                let _ = client
                    .request(
                        format!("$JS.API.STREAM.LEADER.STEPDOWN.{stream}"),
                        bytes::Bytes::new(),
                    )
                    .await;
            }
        },
    );
}

/// Every message of `stream` in sequence order: (`Nats-Msg-Id`, payload as
/// JSON), read from the stream's leader over any of `url`'s servers (comma
/// separated). A read that fails — a leader still being elected after a node
/// was killed — is tried again for up to 30 s in all, then fails the test: a
/// message is never skipped. A sequence JetStream says it does not hold fails
/// the test too, as nothing deletes from these streams.
pub(crate) fn stream_messages(url: &str, stream: &str) -> Vec<(String, serde_json::Value)> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    with_client(url, async |client| {
        let deadline = Instant::now() + Duration::from_secs(30);
        let again = |what: String| async move {
            assert!(Instant::now() < deadline, "reading stream {stream}: {what}");
            eprintln!("reading stream {stream}: {what}; again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
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
