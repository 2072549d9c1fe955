//! Copying a connection's facts from one mail structure into another that has
//! held them before, reusing the room of its strings: what the session does for
//! each finished transaction it keeps for `closed` (`session::archive`), so that
//! keeping it costs no allocation per field once a kept structure is recycled.

use super::{Connect, Ehlo, Listener, Mail};

impl Mail {
    /// Makes `self` equal to `from.clone()` in everything but the transaction's
    /// own fields (`mailfrom`, `rcptto`, `data`), which are left as they are;
    /// strings and vectors already in `self` keep their allocations.
    pub(crate) fn clone_connection_from(&mut self, from: &Mail) {
        // Every field is named, so a field added to `Mail` cannot be missed here.
        let Mail {
            local_port,
            local_hostname,
            remote_port,
            remote_hostname,
            remote_ip,
            id,
            time,
            accepted,
            prohibited,
            encrypted,
            authenticated,
            connect,
            ehlo,
            mailfrom: _,
            rcptto: _,
            data: _,
            tls_version,
            tls_cipher,
            dnsbl,
            listener,
            delivered,
            delivery_error,
            extensions,
            discarded,
            quarantine,
            milter,
        } = from;
        self.local_port.clone_from(local_port);
        self.local_hostname.clone_from(local_hostname);
        self.remote_port.clone_from(remote_port);
        self.remote_hostname.clone_from(remote_hostname);
        self.remote_ip.clone_from(remote_ip);
        self.id.clone_from(id);
        self.time.clone_from(time);
        self.accepted = *accepted;
        self.prohibited = *prohibited;
        self.encrypted = *encrypted;
        self.authenticated.clone_from(authenticated);
        clone_connect_from(&mut self.connect, connect);
        match (&mut self.ehlo, ehlo) {
            (Some(to), Some(from)) => clone_ehlo_from(to, from),
            (to, from) => to.clone_from(from),
        }
        self.tls_version.clone_from(tls_version);
        self.tls_cipher.clone_from(tls_cipher);
        self.dnsbl.clone_from(dnsbl);
        match (&mut self.listener, listener) {
            (Some(to), Some(from)) => {
                let Listener { address, mode } = from;
                to.address.clone_from(address);
                to.mode.clone_from(mode);
            }
            (to, from) => to.clone_from(from),
        }
        self.delivered = *delivered;
        self.delivery_error.clone_from(delivery_error);
        self.extensions.clone_from(extensions);
        self.discarded = *discarded;
        self.quarantine.clone_from(quarantine);
        self.milter.clone_from(milter);
    }
}

fn clone_connect_from(to: &mut Connect, from: &Connect) {
    let Connect {
        value,
        domain,
        iprev,
        error,
    } = from;
    to.value.clone_from(value);
    to.domain.clone_from(domain);
    to.iprev.clone_from(iprev);
    to.error.clone_from(error);
}

fn clone_ehlo_from(to: &mut Ehlo, from: &Ehlo) {
    let Ehlo {
        value,
        rip,
        fip,
        domain,
        verb,
        matches_client,
        spf,
        error,
    } = from;
    to.value.clone_from(value);
    to.rip.clone_from(rip);
    to.fip.clone_from(fip);
    to.domain.clone_from(domain);
    to.verb.clone_from(verb);
    to.matches_client = *matches_client;
    to.spf.clone_from(spf);
    to.error.clone_from(error);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{Data, MailFrom, RcptTo};

    /// A structure with every connection fact set (and a transaction).
    fn full() -> Mail {
        let json = serde_json::json!({
            "local_port": "25", "local_hostname": "mx.example", "remote_port": "40000",
            "remote_hostname": "client.example", "remote_ip": "192.0.2.7",
            "id": "ABCDEF-123", "time": "2026-12-05T00:00:00+00:00",
            "accepted": true, "prohibited": true, "encrypted": true,
            "authenticated": "joe",
            "connect": {"value": "192.0.2.7", "domain": "client.example", "iprev": "pass", "error": "x"},
            "ehlo": {"value": "client.example", "rip": "192.0.2.7", "fip": "192.0.2.7",
                     "domain": "client.example", "verb": "EHLO", "matches_client": true,
                     "spf": "pass", "error": "y"},
            "tls_version": "TLSv1.3", "tls_cipher": "TLS13_AES_128_GCM_SHA256",
            "dnsbl": [{"zone": "bl.example", "listed": false, "codes": [], "reason": null, "error": null}],
            "listener": {"address": "127.0.0.1:25", "mode": "smtp"},
            "delivered": true, "delivery_error": "z",
            "extensions": {"k": 1}, "discarded": true, "quarantine": "q",
            "milter": [{"name": "m", "stage": "eom", "action": "continue"}]
        });
        let mut mail: Mail = serde_json::from_value(json).unwrap_or_default();
        mail.mailfrom = Some(MailFrom::default());
        mail.rcptto = vec![RcptTo::default()];
        mail.data = Some(Data::default());
        mail
    }

    #[test]
    fn the_copy_equals_a_clone_but_for_the_transaction() {
        let from = full();
        assert_eq!(from.remote_ip, "192.0.2.7", "the fixture parses");
        // Into an empty structure and into one with other values.
        let mut other = full();
        other.remote_ip = "198.51.100.1".into();
        if let Some(ehlo) = other.ehlo.as_mut() {
            ehlo.value = "other.example".into();
        }
        for mut to in [Mail::default(), other] {
            to.clone_connection_from(&from);
            to.mailfrom = from.mailfrom.clone();
            to.rcptto = from.rcptto.clone();
            to.data = from.data.clone();
            assert_eq!(to, from);
        }
        // And back to empty optional parts.
        let mut to = full();
        to.clone_connection_from(&Mail::default());
        assert_eq!(to.ehlo, None);
        assert_eq!(to.listener, None);
        assert!(to.mailfrom.is_some(), "the transaction is left as it was");
    }
}
