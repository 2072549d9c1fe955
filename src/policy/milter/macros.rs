//! The macros sent before each command: Postfix's default lists
//! (`milter_connect_macros` …) unless the milter asked for others in the
//! negotiation (`SMFIR_SETSYMLIST`), each with its value from the mail
//! structure; a macro we have no value for is left out.

use std::borrow::Cow;

use crate::mail::Mail;
use crate::protocol::milter::{MacroStage, Negotiated};

/// Postfix's default macro lists, by [`MacroStage`] index.
pub(crate) const DEFAULTS: [&[&str]; 7] = [
    &["j", "{daemon_name}", "{daemon_addr}", "v", "_"],
    &[
        "{tls_version}",
        "{cipher}",
        "{cipher_bits}",
        "{cert_subject}",
        "{cert_issuer}",
    ],
    &[
        "i",
        "{auth_type}",
        "{auth_authen}",
        "{auth_author}",
        "{mail_addr}",
        "{mail_host}",
        "{mail_mailer}",
    ],
    &["i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"],
    &["i"],
    &["i"],
    &["i"],
];

/// What the macro values come from.
pub(crate) struct MacroSource<'a> {
    pub(crate) mail: &'a Mail,
    pub(crate) server_name: &'a str,
    /// The MAIL FROM address being sent (`""` for the null sender).
    pub(crate) sender: Option<(&'a str, Option<&'a str>)>,
    /// The RCPT TO address being sent, and its domain.
    pub(crate) recipient: Option<(&'a str, Option<&'a str>)>,
}

impl<'a> MacroSource<'a> {
    /// The value of macro `name`, borrowed from the mail where it can be.
    fn value(&self, name: &str) -> Option<Cow<'a, str>> {
        let mail = self.mail;
        let bare = name.trim_start_matches('{').trim_end_matches('}');
        Some(match bare {
            "j" => Cow::Borrowed(self.server_name),
            "daemon_name" => Cow::Borrowed("net-receiver"),
            "daemon_addr" => {
                let listener = mail.listener.as_ref()?;
                let addr: std::net::SocketAddr = listener.address.parse().ok()?;
                Cow::Owned(addr.ip().to_string())
            }
            "v" => Cow::Borrowed(concat!("net-receiver ", env!("CARGO_PKG_VERSION"))),
            "_" => Cow::Owned(format!(
                "{} [{}]",
                mail.remote_hostname.as_deref().unwrap_or("unknown"),
                mail.remote_ip
            )),
            "client_addr" => Cow::Borrowed(&mail.remote_ip),
            "client_port" => Cow::Borrowed(&mail.remote_port),
            "client_name" => Cow::Borrowed(mail.remote_hostname.as_deref().unwrap_or("unknown")),
            "client_ptr" => Cow::Borrowed(mail.remote_hostname.as_deref()?),
            "tls_version" => Cow::Borrowed(mail.tls_version.as_deref()?),
            "cipher" => Cow::Borrowed(mail.tls_cipher.as_deref()?),
            "i" => Cow::Borrowed(&mail.id),
            "auth_authen" => Cow::Borrowed(mail.authenticated.as_deref()?),
            "mail_addr" => Cow::Borrowed(self.sender?.0),
            "mail_host" => Cow::Borrowed(self.sender?.1?),
            "mail_mailer" | "rcpt_mailer" => Cow::Borrowed("smtp"),
            "rcpt_addr" => Cow::Borrowed(self.recipient?.0),
            "rcpt_host" => Cow::Borrowed(self.recipient?.1?),
            _ => return None,
        })
    }

    /// The `(name, value)` pairs for `stage`: the names the milter asked for
    /// in `negotiated`, else Postfix's defaults; values borrowed where the mail
    /// has them, so a command's macros cost one vector.
    pub(crate) fn macros<'n>(
        &self,
        negotiated: Option<&'n Negotiated>,
        stage: MacroStage,
    ) -> Vec<(&'n str, Cow<'a, str>)> {
        let index = stage as usize;
        let pair = |name: &'n str| Some((name, self.value(name)?));
        match negotiated.and_then(|n| n.macros[index].as_ref()) {
            Some(names) => names.iter().filter_map(|n| pair(n.as_str())).collect(),
            None => DEFAULTS[index].iter().filter_map(|n| pair(n)).collect(),
        }
    }
}

/// The pairs as the codec takes them.
pub(crate) fn borrowed<'m>(macros: &'m [(&'m str, Cow<'m, str>)]) -> Vec<(&'m str, &'m str)> {
    macros.iter().map(|(n, v)| (*n, v.as_ref())).collect()
}
