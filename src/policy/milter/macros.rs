//! The macros sent before each command: Postfix's default lists
//! (`milter_connect_macros` …) unless the milter asked for others in the
//! negotiation (`SMFIR_SETSYMLIST`), each with its value from the mail
//! structure; a macro we have no value for is left out.

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

impl MacroSource<'_> {
    fn value(&self, name: &str) -> Option<String> {
        let mail = self.mail;
        let bare = name.trim_start_matches('{').trim_end_matches('}');
        Some(match bare {
            "j" => self.server_name.to_owned(),
            "daemon_name" => "net-receiver".to_owned(),
            "daemon_addr" => {
                let listener = mail.listener.as_ref()?;
                let addr: std::net::SocketAddr = listener.address.parse().ok()?;
                addr.ip().to_string()
            }
            "v" => concat!("net-receiver ", env!("CARGO_PKG_VERSION")).to_owned(),
            "_" => format!(
                "{} [{}]",
                mail.remote_hostname.as_deref().unwrap_or("unknown"),
                mail.remote_ip
            ),
            "client_addr" => mail.remote_ip.clone(),
            "client_port" => mail.remote_port.clone(),
            "client_name" => mail
                .remote_hostname
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
            "client_ptr" => mail.remote_hostname.clone()?,
            "tls_version" => mail.tls_version.clone()?,
            "cipher" => mail.tls_cipher.clone()?,
            "i" => mail.id.clone(),
            "auth_authen" => mail.authenticated.clone()?,
            "mail_addr" => self.sender?.0.to_owned(),
            "mail_host" => self.sender?.1?.to_owned(),
            "mail_mailer" | "rcpt_mailer" => "smtp".to_owned(),
            "rcpt_addr" => self.recipient?.0.to_owned(),
            "rcpt_host" => self.recipient?.1?.to_owned(),
            _ => return None,
        })
    }

    /// The `(name, value)` pairs for `stage`.
    pub(crate) fn macros(
        &self,
        negotiated: Option<&Negotiated>,
        stage: MacroStage,
    ) -> Vec<(String, String)> {
        let index = stage as usize;
        let asked = negotiated.and_then(|n| n.macros[index].as_ref());
        let names: Vec<&str> = match asked {
            Some(names) => names.iter().map(String::as_str).collect(),
            None => DEFAULTS[index].to_vec(),
        };
        names
            .into_iter()
            .filter_map(|name| Some((name.to_owned(), self.value(name)?)))
            .collect()
    }
}

/// `(String, String)` pairs as the codec takes them.
pub(crate) fn borrowed(macros: &[(String, String)]) -> Vec<(&str, &str)> {
    macros
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}
