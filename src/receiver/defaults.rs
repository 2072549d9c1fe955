//! The default of every hook, as a public function an override can call (the Ruby
//! gem's `super`). Each one is what `impl Receiver for Mine {}` does.

use crate::auth::password::scheme_of;
use crate::auth::{AuthUnavailable, Password, verify_password_bounded};
use crate::delivery::{DeliveryError, DeliveryReport};
use crate::mail::{Ehlo, MailFrom, RcptTo};
use crate::protocol::{Credentials, Reply};

use super::Context;

/// `220 <server_name> ESMTP net-receiver`.
pub async fn connect(cx: &mut Context<'_>) -> Reply {
    Reply::plain(
        220,
        format!("{} ESMTP net-receiver", cx.settings.server_name),
    )
}

/// `250 <server_name> Hello <name>`; for EHLO the extension keywords follow.
/// With `ehlo_validation_check`, a name (or address literal) that the DNS says does
/// not resolve to the client's IP gets `550 5.7.1`; a lookup that failed
/// (timeout, server error) does not refuse.
pub async fn ehlo(cx: &mut Context<'_>, ehlo: &Ehlo) -> Reply {
    if cx.settings.ehlo_validation_check && ehlo.matches_client == Some(false) {
        return Reply::new(
            550,
            (5, 7, 1),
            format!(
                "EHLO name {} does not resolve to your IP address",
                ehlo.value
            ),
        );
    }
    Reply::plain(
        250,
        format!("{} Hello {}", cx.settings.server_name, ehlo.value),
    )
}

/// `250 2.1.0 Sender OK`.
pub async fn mail_from(_cx: &mut Context<'_>, _from: &MailFrom) -> Reply {
    Reply::new(250, (2, 1, 0), "Sender OK")
}

/// `250 2.1.5 Recipient OK`.
pub async fn rcpt_to(_cx: &mut Context<'_>, _to: &RcptTo) -> Reply {
    Reply::new(250, (2, 1, 5), "Recipient OK")
}

/// `354 End data with <CR><LF>.<CR><LF>`.
pub async fn data(_cx: &mut Context<'_>) -> Reply {
    Reply::plain(354, "End data with <CR><LF>.<CR><LF>")
}

/// Hands the mail to the server's configured delivery (e.g. the Maildir) with
/// [`Deliver::deliver_each`](crate::delivery::Deliver::deliver_each), records each
/// accepted recipient's outcome (`rcptto[].delivered` / `delivery_error`) and the
/// whole mail's (`delivered` = every accepted recipient stored), and returns the
/// one result for the reply to the final dot ([`DeliveryReport::result`]: a
/// transient failure wins, then a permanent one; see [`crate::delivery`]).
/// Without a delivery the mail is refused with a temporary error, so nothing is
/// ever lost.
pub async fn received(cx: &mut Context<'_>) -> Result<(), DeliveryError> {
    let report = match cx.delivery() {
        Some(delivery) => delivery.deliver_each(cx.mail).await,
        None => DeliveryReport::same_for_all(
            cx.mail,
            &Err(DeliveryError::Temporary(
                "no delivery configured".to_owned(),
            )),
        ),
    };
    report.record(cx.mail)
}

/// `250 2.0.0 Reset OK`.
pub async fn rset(_cx: &mut Context<'_>) -> Reply {
    Reply::new(250, (2, 0, 0), "Reset OK")
}

/// `250 2.0.0 OK`.
pub async fn noop(_cx: &mut Context<'_>) -> Reply {
    Reply::new(250, (2, 0, 0), "OK")
}

/// `214 2.0.0` and the list of commands.
pub async fn help(_cx: &mut Context<'_>, _topic: &str) -> Reply {
    Reply::new(
        214,
        (2, 0, 0),
        "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP HELP VRFY EXPN QUIT",
    )
}

/// `252 2.5.0`: never reveals whether a user exists.
pub async fn vrfy(_cx: &mut Context<'_>, _who: &str) -> Reply {
    Reply::new(
        252,
        (2, 5, 0),
        "Cannot VRFY user, but will accept message and attempt delivery",
    )
}

/// `502 5.5.1`: mailing lists are not expanded.
pub async fn expn(_cx: &mut Context<'_>, _list: &str) -> Reply {
    Reply::new(502, (5, 5, 1), "EXPN not available")
}

/// `221 2.0.0 <server_name> closing connection`.
pub async fn quit(cx: &mut Context<'_>) -> Reply {
    Reply::new(
        221,
        (2, 0, 0),
        format!("{} closing connection", cx.settings.server_name),
    )
}

/// The stored secret from the server's password store (passwd file, SQLite,
/// PostgreSQL, MySQL/MariaDB); no store means no user; a store that cannot answer
/// (down, too slow, broken) is [`AuthUnavailable`] (454 4.7.0), logged as an error.
pub async fn password(
    cx: &mut Context<'_>,
    username: &str,
) -> Result<Option<Password>, AuthUnavailable> {
    let Some(store) = cx.passwords() else {
        return Ok(None);
    };
    match store.lookup(username).await {
        Ok(secret) => Ok(secret.map(Password::Hashed)),
        Err(error) => {
            tracing::error!(
                "password lookup failed, AUTH answered 454: {}",
                crate::auth::error_chain(&error)
            );
            Err(AuthUnavailable)
        }
    }
}

/// Checks `credentials` against the stored secret (constant-time, off the async
/// threads, at most one check per CPU at a time server-wide: see
/// [`verify_password_bounded`]). Refuses a PLAIN authorization identity other than
/// the user itself.
pub async fn authenticate(
    _cx: &mut Context<'_>,
    credentials: &Credentials,
    stored: Option<&Password>,
) -> bool {
    if credentials.authorization.is_some() {
        tracing::debug!("AUTH refused: an authorization identity other than the user");
        return false;
    }
    let known = stored.is_some();
    let stored = match stored {
        Some(secret) => secret.stored_form(),
        None => {
            tracing::debug!("AUTH fails: no such user");
            // An unknown user costs about as much as a known one, so timing does
            // not tell which users exist.
            crate::auth::UNKNOWN_USER_SECRET.to_owned()
        }
    };
    let understood = scheme_of(&stored).is_some();
    if !understood {
        tracing::debug!(
            "AUTH fails: the stored secret has no known scheme \
             (return Password::Plain for a plain password)"
        );
    }
    let matched = verify_password_bounded(stored, credentials.password.clone()).await;
    if !matched && known && understood {
        tracing::debug!("AUTH fails: the password does not match the stored secret");
    }
    matched
}

/// Does nothing.
pub async fn closed(_cx: &mut Context<'_>) {}
