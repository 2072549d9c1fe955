//! The NATS JetStream delivery target: each accepted mail is published to a
//! subject of a stream, and counts as delivered only once JetStream
//! acknowledged it (the PubAck: the stream has it, replicated as the stream
//! says). With the spool, a message leaves the spool only after that.
//!
//! What is published:
//! - the mail structure as JSON, the same keys as the JSON lines (the seed's,
//!   with `data.text` the message's lines);
//! - header `Nats-Msg-Id` = the mail id, so JetStream drops a repeat within the
//!   stream's duplicate window (a retry after a lost PubAck, a restart of the
//!   spool) — at least once from us, exactly once in the stream;
//! - a message too big for the server's `max_payload` goes as a **claim
//!   check**: the message itself (trace header and body as received) is put
//!   first into the JetStream object store bucket [`Nats::bucket`] under the
//!   mail id, then the mail structure is published without `data.text` and with
//!   the new key `claim_check = {"bucket", "name", "size"}`; a consumer fetches
//!   the body with any NATS client's object store `get(bucket, name)`.
//!
//! The connection made at start-up is kept (the official `async-nats` client
//! reconnects by itself); a server that is down at start-up is retried in the
//! background while deliveries fail with a temporary error. Publishing from
//! another thread (each SMTP worker thread runs a runtime of its own, and so
//! does the spool's delivery thread) goes through a connection of that
//! thread, made at its first message: the client's connection task then runs
//! where the sessions that publish run, so a publish and its PubAck cross no
//! thread (one connection per such thread, at most workers + 1). Any failure —
//! not connected, no stream for the subject, no PubAck in time — is
//! [`DeliveryError::Temporary`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use tokio::sync::OnceCell;

use super::{CheckFuture, Deliver, DeliverFuture, DeliveryError};
use crate::mail::Mail;

/// Room kept under `max_payload` for the headers.
const HEADER_ROOM: usize = 1024;

/// The JetStream target (see the module doc).
pub struct Nats {
    url: String,
    subject: async_nats::Subject,
    stream: Option<String>,
    bucket: String,
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stream_ready: OnceCell<()>,
    bodies: OnceCell<jetstream::object_store::ObjectStore>,
    /// Replicas of the stream and the body bucket when this target creates them.
    replicas: usize,
    /// What a thread's own connection is made with.
    servers: Vec<async_nats::ServerAddr>,
    timeout: Duration,
    /// The thread that made `client`: it publishes through it.
    home: ThreadId,
    /// Every other thread's publishing context, made at its first message.
    local: Mutex<HashMap<ThreadId, Arc<OnceCell<jetstream::Context>>>>,
}

/// How every connection of this target is made: `timeout` for connecting and
/// for each PubAck, and a PING after `timeout / 3` without a word from the
/// server. The client drops a connection whose server left two PINGs
/// unanswered and a third falls due, so a server that hangs (frozen, cut off)
/// is left for another of the URL list after about `timeout`, not after
/// async-nats' default of three minutes (a PING a minute); meanwhile its
/// deliveries fail with a temporary error. A server that is talking never
/// gets a PING: any message from it puts the next one off.
fn connect_options(timeout: Duration) -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .connection_timeout(timeout)
        .request_timeout(Some(timeout))
        .ping_interval(ping_interval(timeout))
}

/// A third of `timeout`, from 100 ms to the client's default of a minute (see
/// [`connect_options`]).
fn ping_interval(timeout: Duration) -> Duration {
    (timeout / 3).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("url", &self.url)
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Nats {
    /// Connects to `url` (`nats://host:port`, several separated by commas) and
    /// publishes to `subject`. With `stream`, that stream is created for the
    /// subject if it does not exist (file storage, a 2-minute duplicate
    /// window); without, a stream must already take the subject. Returns at
    /// once when the server is down (it is retried in the background).
    pub async fn connect(
        url: &str,
        subject: impl Into<String>,
        stream: Option<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let subject = subject.into();
        if subject.is_empty() || subject.contains(char::is_whitespace) {
            return Err(format!("{subject:?} is not a NATS subject"));
        }
        let servers = url
            .split(',')
            .map(|one| {
                one.trim()
                    .parse::<async_nats::ServerAddr>()
                    .map_err(|e| format!("NATS url {one:?}: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let client = connect_options(timeout)
            .retry_on_initial_connect()
            .connect(servers.clone())
            .await
            .map_err(|e| format!("NATS {url}: {e}"))?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(timeout);
        let bucket = format!(
            "{}-bodies",
            stream
                .as_deref()
                .unwrap_or(&subject)
                .replace(['.', '*', '>'], "-")
        );
        Ok(Self {
            url: url.to_owned(),
            subject: subject.into(),
            stream,
            bucket,
            client,
            jetstream,
            stream_ready: OnceCell::new(),
            bodies: OnceCell::new(),
            replicas: 1,
            servers,
            timeout,
            home: std::thread::current().id(),
            local: Mutex::default(),
        })
    }

    /// The JetStream context to publish with on this thread (see the module
    /// doc), borrowed: a context's clone copies its prefix.
    async fn publisher(&self) -> Result<Publisher<'_>, DeliveryError> {
        let thread = std::thread::current().id();
        if thread == self.home {
            return Ok(Publisher::Home(&self.jetstream));
        }
        let cell = {
            let mut local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(local.entry(thread).or_default())
        };
        cell.get_or_try_init(|| async {
            let client = connect_options(self.timeout)
                .connect(self.servers.clone())
                .await
                .map_err(|e| temporary(&self.url, "connecting", e))?;
            let mut jetstream = jetstream::new(client);
            jetstream.set_timeout(self.timeout);
            Ok::<_, DeliveryError>(jetstream)
        })
        .await?;
        Ok(Publisher::Local(cell))
    }

    /// The stream and the body bucket this target creates get `replicas`
    /// copies (3 on a 3-node cluster keeps them through one node's loss); an
    /// existing stream is used as it is.
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// The object store bucket that holds claim-checked bodies.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The subject mail is published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    async fn ensure_stream(&self) -> Result<(), DeliveryError> {
        let Some(name) = &self.stream else {
            return Ok(());
        };
        self.stream_ready
            .get_or_try_init(|| async {
                self.jetstream
                    .get_or_create_stream(jetstream::stream::Config {
                        name: name.clone(),
                        subjects: vec![self.subject.to_string()],
                        duplicate_window: Duration::from_secs(120),
                        num_replicas: self.replicas,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(|e| temporary(&self.url, "creating the stream", e))
            })
            .await
            .map(|_| ())
    }

    async fn bodies(&self) -> Result<&jetstream::object_store::ObjectStore, DeliveryError> {
        self.bodies
            .get_or_try_init(|| async {
                match self.jetstream.get_object_store(&self.bucket).await {
                    Ok(store) => Ok(store),
                    Err(_) => self
                        .jetstream
                        .create_object_store(jetstream::object_store::Config {
                            bucket: self.bucket.clone(),
                            num_replicas: self.replicas,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| temporary(&self.url, "creating the body bucket", e)),
                }
            })
            .await
    }

    /// The payload: the mail structure, inline or with a claim check.
    async fn payload(&self, mail: &Mail) -> Result<Bytes, DeliveryError> {
        let json = mail.to_json_bytes();
        // The negotiated limit, read without copying the server's whole INFO.
        let limit = self.client.max_payload().saturating_sub(HEADER_ROOM);
        if json.len() <= limit {
            return Ok(Bytes::from(json));
        }
        let Some(data) = &mail.data else {
            return Err(DeliveryError::Temporary(format!(
                "the mail structure is over NATS {}'s max_payload ({limit} octets)",
                self.url
            )));
        };
        // The trace header, then the message as received: read in place, never
        // copied whole.
        let size = data.received.len() + data.raw.len();
        let mut body = tokio::io::AsyncReadExt::chain(data.received.as_bytes(), &data.raw[..]);
        self.bodies()
            .await?
            .put(
                jetstream::object_store::ObjectMetadata {
                    name: mail.id.clone(),
                    chunk_size: Some(limit.clamp(1024, 128 * 1024)),
                    ..Default::default()
                },
                &mut body,
            )
            .await
            .map_err(|e| temporary(&self.url, "storing the body", e))?;
        let mut value = serde_json::to_value(mail)
            .map_err(|e| DeliveryError::Temporary(format!("mail structure: {e}")))?;
        if let Some(text) = value.pointer_mut("/data/text") {
            *text = serde_json::Value::Array(Vec::new());
        }
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "claim_check".to_owned(),
                serde_json::json!({"bucket": self.bucket, "name": mail.id, "size": size}),
            );
        }
        let json = serde_json::to_vec(&value)
            .map_err(|e| DeliveryError::Temporary(format!("mail structure: {e}")))?;
        if json.len() > limit {
            return Err(DeliveryError::Temporary(format!(
                "even without its body, the mail structure is over NATS {}'s max_payload",
                self.url
            )));
        }
        Ok(Bytes::from(json))
    }
}

/// A thread's JetStream context ([`Nats::publisher`]).
enum Publisher<'a> {
    /// The context of the thread that connected.
    Home(&'a jetstream::Context),
    /// Another thread's, made (the cell is set) before this is returned.
    Local(Arc<OnceCell<jetstream::Context>>),
}

impl Publisher<'_> {
    fn context(&self) -> Option<&jetstream::Context> {
        match self {
            Self::Home(context) => Some(context),
            Self::Local(cell) => cell.get(),
        }
    }
}

fn temporary(url: &str, what: &str, error: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Temporary(format!("NATS {url}: {what}: {error}"))
}

impl Deliver for Nats {
    /// Publishes and waits for the PubAck.
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async move {
            crate::timers::anchor();
            self.ensure_stream().await?;
            let payload = self.payload(mail).await?;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", mail.id.as_str());
            let publisher = self.publisher().await?;
            let ack = publisher
                .context()
                .ok_or_else(|| temporary(&self.url, "publishing", "no connection"))?
                .publish_with_headers(self.subject.clone(), headers, payload)
                .await
                .map_err(|e| temporary(&self.url, "publishing", e))?;
            let ack = ack
                .await
                .map_err(|e| temporary(&self.url, "waiting for the PubAck", e))?;
            tracing::debug!(
                "PubAck id={} stream={} seq={} duplicate={}",
                mail.id,
                ack.stream,
                ack.sequence,
                ack.duplicate
            );
            Ok(())
        })
    }

    /// JetStream answers, and the stream is there (or, with `stream`, will
    /// be created); nothing is published.
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let probe = async {
                match &self.stream {
                    Some(name) => match self.jetstream.get_stream(name).await {
                        Ok(_) => Ok(format!("JetStream answers; stream {name} exists")),
                        Err(e) => match e.kind() {
                            jetstream::context::GetStreamErrorKind::JetStream(error)
                                if error.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                            {
                                Ok(format!(
                                    "JetStream answers; stream {name} will be created for {}",
                                    self.subject
                                ))
                            }
                            _ => Err(format!("JetStream at {} does not answer: {e}", self.url)),
                        },
                    },
                    None => match self
                        .jetstream
                        .stream_by_subject(self.subject.to_string())
                        .await
                    {
                        Ok(name) => Ok(format!(
                            "JetStream answers; stream {name} takes {}",
                            self.subject
                        )),
                        Err(e) => Err(format!(
                            "no stream takes the subject {} ({e}); create one or set stream",
                            self.subject
                        )),
                    },
                }
            };
            tokio::time::timeout(super::checks::CHECK_LIMIT, probe)
                .await
                .map_err(|_| {
                    format!(
                        "no answer from {} within {:?}",
                        self.url,
                        super::checks::CHECK_LIMIT
                    )
                })?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ping_interval_is_a_third_of_the_timeout_within_bounds() {
        assert_eq!(
            ping_interval(Duration::from_secs(6)),
            Duration::from_secs(2)
        );
        // Never zero (an interval of zero panics in tokio), never rarer than
        // the client's own default.
        assert_eq!(ping_interval(Duration::ZERO), Duration::from_millis(100));
        assert_eq!(
            ping_interval(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }
}
