//! Callouts against a real, private Postfix (Debian `postfix`) as the MX of
//! `pf.test.example`: it knows alice (a virtual mailbox) and refuses other
//! users with 550 5.1.1; the cache is seen in the connections its log counts.
