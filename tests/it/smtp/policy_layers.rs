//! Policy layers run before the `Receiver` hook of each stage, in order, and
//! the first refusal wins: a layer that refuses some recipients and a layer
//! that refuses some messages, added after the built-in DNS checks, with a
//! `Receiver` that counts how often its own hooks ran.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use net_receiver::policy::{Policy, PolicyFuture, Verdict};
use net_receiver::{Context, RcptTo, Receiver, Reply, defaults};

use crate::support::common::{Client, TestServer, config};
use crate::support::dns_server::{DnsServer, dns_config};

/// Refuses recipients whose local part is `blocked`; notes that it saw the
/// DNS findings of the recipient first (the DNS layer runs before it).
struct BlockList;

impl Policy for BlockList {
    fn name(&self) -> &'static str {
        "block-list"
    }

    fn rcpt_to<'a>(&'a self, _cx: &'a mut Context<'_>, to: &'a mut RcptTo) -> PolicyFuture<'a> {
        Box::pin(async move {
            if to.local_part.as_deref() == Some("blocked") {
                let text = format!("blocked by policy (looked up: {})", to.null_mx.is_some());
                return Verdict::Refuse(Reply::new(550, (5, 7, 1), text));
            }
            Verdict::Continue
        })
    }

    fn message<'a>(&'a self, _cx: &'a mut Context<'_>, raw: &'a [u8]) -> PolicyFuture<'a> {
        Box::pin(async move {
            if raw.windows(4).any(|w| w == b"SPAM") {
                return Verdict::Refuse(Reply::new(554, (5, 7, 1), "message refused by policy"));
            }
            Verdict::Continue
        })
    }
}

/// Counts its `rcpt_to` and `received` calls.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl Receiver for Counting {
    async fn rcpt_to(&self, cx: &mut Context<'_>, to: &RcptTo) -> Reply {
        self.0.fetch_add(1, Ordering::SeqCst);
        defaults::rcpt_to(cx, to).await
    }

    async fn received(&self, cx: &mut Context<'_>) -> Result<(), net_receiver::DeliveryError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        defaults::received(cx).await
    }
}

#[test]
fn layers_run_in_order_before_the_receiver_and_the_first_refusal_wins() {
    let dns = DnsServer::start();
    let resolver = Arc::new(
        net_receiver::dns::Dns::new(&dns_config(dns.addr, std::time::Duration::from_secs(2)))
            .expect("resolver"),
    );
    let receiver = Counting::default();
    let (rcpts, received) = (Arc::clone(&receiver.0), Arc::clone(&receiver.1));
    let spec = "127.0.0.1:0"
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .into();
    let server = TestServer::start_custom(config(), receiver, &[spec], |server| {
        // Added before the DNS checks, yet it runs after them: built-ins first.
        server.with_policy(Arc::new(BlockList)).with_dns(resolver)
    });
    let mut client = Client::ehlo(server.port);
    client.cmd("MAIL FROM:<a@example.com>", 250);
    let refused = client.cmd("RCPT TO:<blocked@example.com>", 550);
    assert_eq!(refused.text(), "5.7.1 blocked by policy (looked up: true)");
    client.cmd("RCPT TO:<b@example.com>", 250);
    client.cmd("DATA", 354);
    client.send(b"Subject: SPAM\r\n\r\nbuy\r\n.\r\n");
    client.expect_enhanced(554, "5.7.1");
    client.cmd("MAIL FROM:<a@example.com>", 250);
    client.cmd("RCPT TO:<b@example.com>", 250);
    client.cmd("DATA", 354);
    client.send(b"Subject: fine\r\n\r\nhello\r\n.\r\n");
    client.expect_enhanced(250, "2.0.0");
    client.quit();
    // The refused recipient never reached the Receiver; the refused message
    // never reached `received`.
    assert_eq!(rcpts.load(Ordering::SeqCst), 2);
    assert_eq!(received.load(Ordering::SeqCst), 1);
    server.expect_messages(1);
}
