//! Listening sockets a program hands to the [`Server`] already bound — systemd
//! socket activation (`LISTEN_FDS`), or any supervisor that binds for us — and
//! the mode each one gets.
//!
//! Reading `LISTEN_FDS`/`LISTEN_FDNAMES` is a process duty and stays in the
//! binary (`src/cli/systemd.rs`); this file only turns sockets and their names
//! into listeners: [`InheritedListener::spec`] decides the mode, and
//! [`Server::from_config_with_listeners`](super::Server::from_config_with_listeners)
//! serves them instead of binding the configuration's addresses.

use std::net::SocketAddr;

use super::{Server, ServerError};
use crate::config::{ListenerMode, ListenerSpec, Settings};
use crate::receiver::Receiver;

/// A listening TCP socket bound by someone else, with the name it was given
/// (systemd's `FileDescriptorName=`, passed in `LISTEN_FDNAMES`).
#[derive(Debug)]
pub struct InheritedListener {
    /// The bound, listening socket.
    pub listener: std::net::TcpListener,
    /// Its name, if any: `smtp`, `smtps` or `submission` set the mode; any
    /// other name (systemd's default is the socket unit's name) leaves it to
    /// the configuration.
    pub name: Option<String>,
}

impl InheritedListener {
    /// The listener this socket becomes, given its bound address and the
    /// configuration's listeners (which are not bound when sockets are
    /// inherited). The mode comes from the socket's name when that is a mode's
    /// name; else from the configured listener of the same address; else from
    /// the port number (465 smtps, 587 submission, anything else smtp). A
    /// configured listener of the same address also lends its `proxy_protocol`.
    pub fn spec(&self, addr: SocketAddr, configured: &[ListenerSpec]) -> ListenerSpec {
        let same_address = configured.iter().find(|spec| spec.addr == addr);
        let named = self.name.as_deref().and_then(mode_named);
        let mode = named
            .or(same_address.map(|spec| spec.mode))
            .unwrap_or_else(|| ListenerMode::for_port(addr.port()));
        ListenerSpec {
            addr,
            mode,
            proxy_protocol: same_address.is_some_and(|spec| spec.proxy_protocol),
        }
    }
}

impl<R: Receiver> Server<R> {
    /// A server on sockets bound by someone else (see [`InheritedListener::spec`]
    /// for each one's mode), in the given order; `configured` are the
    /// configuration's listeners, which lend modes but are not bound. Call it
    /// inside a tokio runtime.
    pub fn from_inherited(
        inherited: Vec<InheritedListener>,
        configured: &[ListenerSpec],
        settings: Settings,
        receiver: R,
    ) -> Result<Self, ServerError> {
        let mut bound = Vec::with_capacity(inherited.len());
        for socket in inherited {
            let addr = socket.listener.local_addr().map_err(unusable(None))?;
            let spec = socket.spec(addr, configured);
            socket
                .listener
                .set_nonblocking(true)
                .map_err(unusable(Some(addr)))?;
            let listener =
                tokio::net::TcpListener::from_std(socket.listener).map_err(unusable(Some(addr)))?;
            bound.push((listener, spec));
        }
        Ok(Self::serving(bound, settings, receiver))
    }
}

/// The error for an inherited socket we cannot use (its address, when known).
fn unusable(addr: Option<SocketAddr>) -> impl FnOnce(std::io::Error) -> ServerError {
    move |source| ServerError::Bind {
        addr: addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0))),
        source,
    }
}

/// The mode whose configuration name is `name` (`smtp`, `smtps`, `submission`).
pub fn mode_named(name: &str) -> Option<ListenerMode> {
    [
        ListenerMode::Smtp,
        ListenerMode::Smtps,
        ListenerMode::Submission,
    ]
    .into_iter()
    .find(|mode| mode.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inherited(name: Option<&str>) -> (InheritedListener, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let name = name.map(str::to_owned);
        (InheritedListener { listener, name }, addr)
    }

    #[test]
    fn the_name_decides_then_the_configured_address_then_the_port() {
        let (socket, addr) = inherited(Some("smtps"));
        let configured = [ListenerSpec {
            addr,
            mode: ListenerMode::Submission,
            proxy_protocol: true,
        }];
        let spec = socket.spec(addr, &configured);
        assert_eq!(spec.mode, ListenerMode::Smtps);
        assert!(spec.proxy_protocol, "the configured listener lends PROXY");

        let (socket, addr) = inherited(Some("net-receiver.socket"));
        let configured = [ListenerSpec::new(addr, ListenerMode::Submission)];
        assert_eq!(
            socket.spec(addr, &configured).mode,
            ListenerMode::Submission
        );
        assert_eq!(socket.spec(addr, &[]).mode, ListenerMode::Smtp);

        for (port, mode) in [
            (465, ListenerMode::Smtps),
            (587, ListenerMode::Submission),
            (25, ListenerMode::Smtp),
        ] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let (socket, _) = inherited(None);
            let spec = socket.spec(addr, &[]);
            assert_eq!((spec.mode, spec.proxy_protocol), (mode, false), "{port}");
        }
    }

    #[test]
    fn only_the_three_mode_names_are_modes() {
        assert_eq!(mode_named("smtp"), Some(ListenerMode::Smtp));
        assert_eq!(mode_named("smtps"), Some(ListenerMode::Smtps));
        assert_eq!(mode_named("submission"), Some(ListenerMode::Submission));
        for other in ["", "SMTP", "smtps ", "stored", "net-receiver.socket"] {
            assert_eq!(mode_named(other), None, "{other:?}");
        }
    }
}
