//! One milter connection's conversation, sans-IO ([`MilterClient`]): the
//! option negotiation, then one command at a time, each answered (unless the
//! milter asked for no answer to that kind), the end-of-message modifications
//! gathered until the final answer.
//!
//! Order of calls: [`MilterClient::new`] queues the negotiation; write what
//! [`MilterClient::poll_transmit`] gives; feed the milter's bytes to
//! [`MilterClient::handle_input`] until it says [`Event::Negotiated`]; then for
//! each command (`connect`, `helo`, `mail`, `rcpt`, `data`, `header`, `eoh`,
//! `body`, `end_of_message`) call it, write, and when it returned `true` read
//! until [`Event::Answer`] ([`Event::Progress`] only asks for more time). After
//! the answer to `end_of_message`, [`MilterClient::take_modifications`].

use super::frame::{FrameReader, MAX_BODY_CHUNK, write_frame};
use super::reply::{MilterError, Modification, Parsed, Response, parse_reply, u32_be};
use super::{VERSION, action, command as c, protocol as p, reply_code};

/// What we offer in the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// `SMFIF_*` actions the milter may use.
    pub actions: u32,
    /// `SMFIP_*` protocol flags the milter may ask for.
    pub protocol: u32,
}

impl Default for Offer {
    fn default() -> Self {
        Self {
            actions: action::ALL,
            protocol: p::OFFERED,
        }
    }
}

/// The stages macros are sent at (`SMFIM_*`), the index of
/// [`Negotiated::macros`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacroStage {
    /// Before CONNECT.
    Connect = 0,
    /// Before HELO.
    Helo = 1,
    /// Before MAIL.
    Mail = 2,
    /// Before RCPT.
    Rcpt = 3,
    /// Before DATA.
    Data = 4,
    /// Before end of message.
    EndOfMessage = 5,
    /// Before end of header.
    EndOfHeader = 6,
}

/// What the negotiation settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The milter's protocol version (2 to 6).
    pub version: u32,
    /// The actions it may use (what it asked for, within our offer).
    pub actions: u32,
    /// The protocol flags in force (what it asked for, within our offer).
    pub protocol: u32,
    /// Macro names it asked for per stage (`SMFIR_SETSYMLIST`), by
    /// [`MacroStage`] index; `None`: the configured defaults.
    pub macros: [Option<Vec<String>>; 7],
}

/// What [`MilterClient::handle_input`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The negotiation is done; commands may be sent.
    Negotiated,
    /// The milter is still working: wait longer.
    Progress,
    /// The answer to the command in flight.
    Answer(Response),
}

/// What the client waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    Nothing,
    Negotiation,
    Command(&'static str),
    Body,
    EndOfMessage,
}

/// One milter connection's protocol state.
#[derive(Debug, Clone)]
pub struct MilterClient {
    offer: Offer,
    negotiated: Option<Negotiated>,
    awaiting: Awaiting,
    out: Vec<u8>,
    modifications: Vec<Modification>,
    error: Option<MilterError>,
}

impl MilterClient {
    /// A client with the negotiation (`SMFIC_OPTNEG`, version 6) queued.
    pub fn new(offer: Offer) -> Self {
        let mut out = Vec::with_capacity(64);
        write_frame(
            &mut out,
            c::OPTNEG,
            &[
                &VERSION.to_be_bytes(),
                &offer.actions.to_be_bytes(),
                &offer.protocol.to_be_bytes(),
            ],
        );
        Self {
            offer,
            negotiated: None,
            awaiting: Awaiting::Negotiation,
            out,
            modifications: Vec::new(),
            error: None,
        }
    }

    /// What was negotiated, once it was.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Whether a reply is awaited.
    pub fn is_waiting(&self) -> bool {
        self.awaiting != Awaiting::Nothing
    }

    /// Moves the bytes to send into `out`.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
    }

    /// The modifications gathered before the final answer to end of message
    /// (consecutive body chunks joined), in the milter's order.
    pub fn take_modifications(&mut self) -> Vec<Modification> {
        std::mem::take(&mut self.modifications)
    }

    fn has(&self, flag: u32) -> bool {
        self.negotiated
            .as_ref()
            .is_some_and(|n| n.protocol & flag != 0)
    }

    /// Checks the client may send a command now.
    fn ready(&self) -> Result<(), MilterError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        if self.negotiated.is_none() || self.awaiting != Awaiting::Nothing {
            return Err(MilterError::NotReady);
        }
        Ok(())
    }

    /// Queues the macros (when any) and the command, unless `skip` was
    /// negotiated; whether an answer is awaited (`no_reply` not negotiated).
    fn send(
        &mut self,
        skip: u32,
        no_reply: u32,
        what: &'static str,
        macros: &[(&str, &str)],
        command: u8,
        parts: &[&[u8]],
    ) -> Result<bool, MilterError> {
        self.ready()?;
        if skip != 0 && self.has(skip) {
            return Ok(false);
        }
        self.write_macros(command, macros);
        write_frame(&mut self.out, command, parts);
        let awaits = no_reply == 0 || !self.has(no_reply);
        if awaits {
            self.awaiting = match command {
                c::BODY => Awaiting::Body,
                c::BODYEOB => Awaiting::EndOfMessage,
                _ => Awaiting::Command(what),
            };
        }
        Ok(awaits)
    }

    fn write_macros(&mut self, command: u8, macros: &[(&str, &str)]) {
        if macros.is_empty() {
            return;
        }
        let mut data = Vec::with_capacity(64);
        data.push(command);
        for (name, value) in macros {
            push_string(&mut data, name.as_bytes());
            push_string(&mut data, value.as_bytes());
        }
        write_frame(&mut self.out, c::MACRO, &[&data]);
    }

    /// `SMFIC_CONNECT`: the client's host name (or `[ip]`) and address
    /// (`None`: unknown family).
    pub fn connect(
        &mut self,
        macros: &[(&str, &str)],
        hostname: &str,
        address: Option<std::net::SocketAddr>,
    ) -> Result<bool, MilterError> {
        let mut data = Vec::with_capacity(64);
        push_string(&mut data, hostname.as_bytes());
        match address {
            Some(addr) => {
                let ip = addr.ip().to_canonical();
                data.push(if ip.is_ipv4() { b'4' } else { b'6' });
                data.extend_from_slice(&addr.port().to_be_bytes());
                push_string(&mut data, ip.to_string().as_bytes());
            }
            None => data.push(b'U'),
        }
        self.send(
            p::NOCONNECT,
            p::NR_CONN,
            "CONNECT",
            macros,
            c::CONNECT,
            &[&data],
        )
    }

    /// `SMFIC_HELO` with the name the client gave.
    pub fn helo(&mut self, macros: &[(&str, &str)], name: &str) -> Result<bool, MilterError> {
        let mut data = Vec::with_capacity(name.len() + 1);
        push_string(&mut data, name.as_bytes());
        self.send(p::NOHELO, p::NR_HELO, "HELO", macros, c::HELO, &[&data])
    }

    /// `SMFIC_MAIL`: `args[0]` is `<sender>`, then the ESMTP parameters.
    pub fn mail(&mut self, macros: &[(&str, &str)], args: &[&str]) -> Result<bool, MilterError> {
        let data = strings(args);
        self.send(p::NOMAIL, p::NR_MAIL, "MAIL", macros, c::MAIL, &[&data])
    }

    /// `SMFIC_RCPT`: `args[0]` is `<recipient>`, then the ESMTP parameters.
    pub fn rcpt(&mut self, macros: &[(&str, &str)], args: &[&str]) -> Result<bool, MilterError> {
        let data = strings(args);
        self.send(p::NORCPT, p::NR_RCPT, "RCPT", macros, c::RCPT, &[&data])
    }

    /// `SMFIC_DATA`.
    pub fn data(&mut self, macros: &[(&str, &str)]) -> Result<bool, MilterError> {
        self.send(p::NODATA, p::NR_DATA, "DATA", macros, c::DATA, &[])
    }

    /// `SMFIC_HEADER`: `name` as in the message, `value` every byte after the
    /// colon up to the field's final line end (folding CRLFs inside). The
    /// value goes with its leading spaces when `SMFIP_HDR_LEADSPC` was
    /// negotiated (without them otherwise), folded lines joined by a bare LF,
    /// NUL bytes (which the protocol cannot carry) left out.
    pub fn header(&mut self, name: &[u8], value: &[u8]) -> Result<bool, MilterError> {
        let value = if self.has(p::HDR_LEADSPC) {
            value
        } else {
            let blanks = value
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t'))
                .count();
            &value[blanks..]
        };
        let mut data = Vec::with_capacity(name.len() + value.len() + 2);
        data.extend(name.iter().filter(|&&b| b != 0));
        data.push(0);
        let mut rest = value;
        while let Some(at) = memchr::memchr(b'\r', rest) {
            data.extend(rest[..at].iter().filter(|&&b| b != 0));
            if rest.get(at + 1) != Some(&b'\n') {
                data.push(b'\r');
            }
            rest = &rest[at + 1..];
        }
        data.extend(rest.iter().filter(|&&b| b != 0));
        data.push(0);
        self.send(p::NOHDRS, p::NR_HDR, "HEADER", &[], c::HEADER, &[&data])
    }

    /// `SMFIC_EOH`.
    pub fn end_of_header(&mut self, macros: &[(&str, &str)]) -> Result<bool, MilterError> {
        self.send(p::NOEOH, p::NR_EOH, "EOH", macros, c::EOH, &[])
    }

    /// `SMFIC_BODY` with at most [`MAX_BODY_CHUNK`] bytes of `body`: how many
    /// were taken, and whether an answer is awaited.
    pub fn body(&mut self, body: &[u8]) -> Result<(usize, bool), MilterError> {
        let chunk = &body[..body.len().min(MAX_BODY_CHUNK)];
        let awaits = self.send(p::NOBODY, p::NR_BODY, "BODY", &[], c::BODY, &[chunk])?;
        Ok((chunk.len(), awaits))
    }

    /// `SMFIC_BODYEOB`: always answered; modifications come before the answer.
    pub fn end_of_message(&mut self, macros: &[(&str, &str)]) -> Result<bool, MilterError> {
        self.modifications.clear();
        self.send(0, 0, "end of message", macros, c::BODYEOB, &[])
    }

    /// `SMFIC_ABORT`: the message is over (RSET, a refusal, a new MAIL). Not
    /// answered. Allowed while an answer is awaited (the answer is then
    /// dropped): the conversation goes on after it.
    pub fn abort(&mut self) -> Result<(), MilterError> {
        self.not_failed()?;
        write_frame(&mut self.out, c::ABORT, &[]);
        Ok(())
    }

    /// `SMFIC_QUIT`: the end of the conversation.
    pub fn quit(&mut self) {
        write_frame(&mut self.out, c::QUIT, &[]);
        self.awaiting = Awaiting::Nothing;
    }

    /// `SMFIC_QUIT_NC`: this session is over, the connection may serve the
    /// next one (starting with CONNECT; no new negotiation).
    pub fn quit_new_connection(&mut self) -> Result<(), MilterError> {
        self.ready()?;
        write_frame(&mut self.out, c::QUIT_NC, &[]);
        Ok(())
    }

    fn not_failed(&self) -> Result<(), MilterError> {
        match &self.error {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// Reads at most one frame from `input`: the bytes consumed and what it
    /// meant (`None`: more bytes needed, or a modification was gathered). An
    /// error is sticky.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), MilterError> {
        self.not_failed()?;
        let result = self.read_frame(input);
        if let Err(error) = &result {
            self.error = Some(error.clone());
        }
        result
    }

    /// The connection ended: an error when an answer was awaited.
    pub fn connection_closed(&mut self) -> MilterError {
        let error = self.error.clone().unwrap_or(MilterError::Closed);
        self.error = Some(error.clone());
        error
    }

    fn read_frame(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), MilterError> {
        let Some((used, command, data)) = FrameReader::next_frame(input)? else {
            return Ok((0, None));
        };
        let event = match self.awaiting {
            Awaiting::Nothing => return Err(MilterError::Unexpected(command, "nothing")),
            Awaiting::Negotiation => {
                if command != c::OPTNEG {
                    return Err(MilterError::Unexpected(command, "the negotiation"));
                }
                self.negotiated = Some(self.negotiation(data)?);
                self.awaiting = Awaiting::Nothing;
                Event::Negotiated
            }
            awaiting => match parse_reply(command, data)? {
                Parsed::Progress => Event::Progress,
                Parsed::Modification(modification) => {
                    if awaiting != Awaiting::EndOfMessage {
                        return Err(MilterError::Unexpected(command, "an answer"));
                    }
                    self.gather(command, modification)?;
                    return Ok((used, None));
                }
                Parsed::Response(Response::Skip)
                    if awaiting != Awaiting::Body || !self.has(p::SKIP) =>
                {
                    return Err(MilterError::Unexpected(command, "an answer"));
                }
                Parsed::Response(response) => {
                    self.awaiting = Awaiting::Nothing;
                    Event::Answer(response)
                }
            },
        };
        Ok((used, Some(event)))
    }

    /// Keeps a modification whose action was negotiated.
    fn gather(&mut self, command: u8, modification: Modification) -> Result<(), MilterError> {
        let needed = match command {
            reply_code::ADDHEADER => action::ADDHDRS,
            reply_code::INSHEADER | reply_code::CHGHEADER => action::CHGHDRS | action::ADDHDRS,
            reply_code::ADDRCPT => action::ADDRCPT,
            reply_code::ADDRCPT_PAR => action::ADDRCPT_PAR | action::ADDRCPT,
            reply_code::DELRCPT => action::DELRCPT,
            reply_code::REPLBODY => action::CHGBODY,
            reply_code::CHGFROM => action::CHGFROM,
            _ => action::QUARANTINE,
        };
        let actions = self.negotiated.as_ref().map_or(0, |n| n.actions);
        if actions & needed == 0 {
            return Err(MilterError::ActionNotNegotiated(needed));
        }
        match (self.modifications.last_mut(), modification) {
            (Some(Modification::ReplaceBody(body)), Modification::ReplaceBody(more)) => {
                body.extend_from_slice(&more);
            }
            (_, modification) => self.modifications.push(modification),
        }
        Ok(())
    }

    /// The milter's `SMFIC_OPTNEG`: version, actions, protocol flags, then
    /// optional macro lists (stage number, NUL-terminated names).
    fn negotiation(&self, data: &[u8]) -> Result<Negotiated, MilterError> {
        let mut data = data;
        let version = u32_be(&mut data)?;
        if version < 2 {
            return Err(MilterError::Version(version));
        }
        let actions = u32_be(&mut data)?;
        let protocol = u32_be(&mut data)?;
        let mut negotiated = Negotiated {
            version,
            // Bits we did not offer are ignored, as Postfix does (libmilter
            // also sets internal bits such as the frame-size ones).
            actions: actions & self.offer.actions,
            protocol: protocol & self.offer.protocol,
            macros: Default::default(),
        };
        while !data.is_empty() {
            let stage = u32_be(&mut data)?;
            let end = memchr::memchr(0, data)
                .ok_or(MilterError::Malformed("a macro list without NUL"))?;
            let names = String::from_utf8_lossy(&data[..end]);
            data = &data[end + 1..];
            let slot = usize::try_from(stage)
                .ok()
                .and_then(|i| negotiated.macros.get_mut(i))
                .ok_or(MilterError::Malformed("a macro list for an unknown stage"))?;
            *slot = Some(
                names
                    .split([' ', ','])
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
        Ok(negotiated)
    }
}

fn push_string(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(text.iter().filter(|&&b| b != 0));
    out.push(0);
}

fn strings(args: &[&str]) -> Vec<u8> {
    let mut data = Vec::with_capacity(args.iter().map(|a| a.len() + 1).sum());
    for arg in args {
        push_string(&mut data, arg.as_bytes());
    }
    data
}
