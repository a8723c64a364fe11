//! The `authorized_keys` file: which public keys may log in, from which
//! addresses, until when. Mirrors sshd(8)'s AUTHORIZED_KEYS FILE FORMAT.
//! It only answers `check`; it must never grant what a line restricts, so a
//! line with an option rscpd cannot honour is skipped whole (with a warning),
//! never half-honoured. Fingerprints for logs come from
//! `PublicKey::fingerprint(HashAlg::Sha256)`, which prints OpenSSH's `SHA256:...`.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use base64ct::{Base64, Base64Unpadded, Encoding};
use chrono::{NaiveDate, NaiveDateTime, TimeZone, Timelike};
use russh::keys::PublicKey;
use russh::keys::ssh_key::public::KeyData;

/// Key types rscpd serves (the RSA signature hash is the transport's business).
const SERVED_TYPES: &[&str] =
    &["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"];

/// OpenSSH's default `RequiredRSASize`: smaller RSA keys are refused.
const MIN_RSA_BITS: u32 = 1024;

/// Why `check` refused a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// No usable line lists the key.
    Unknown,
    /// The key's `expiry-time` has passed.
    Expired,
    /// The key's `from=` does not allow the peer's address.
    FromNotAllowed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Unknown => "key not in authorized_keys",
            Refusal::Expired => "key expired (expiry-time)",
            Refusal::FromNotAllowed => "address not allowed by from=",
        })
    }
}

/// The usable lines of an `authorized_keys` file.
#[derive(Debug)]
pub struct AuthorizedKeys {
    entries: Vec<Entry>,
}

/// One usable line.
#[derive(Debug)]
struct Entry {
    key: KeyData,
    /// "FILE:LINE", for the log.
    origin: String,
    options: Options,
}

impl AuthorizedKeys {
    /// Reads the file at `path`. Fails only if it cannot be read; bad lines
    /// are skipped and described in the returned warnings ("FILE:LINE: reason").
    pub fn load(path: &Path) -> io::Result<(AuthorizedKeys, Vec<String>)> {
        let bytes = std::fs::read(path)?;
        // Comments may be in any encoding; key lines are ASCII.
        let text = String::from_utf8_lossy(&bytes);
        Ok(Self::parse(&text, &path.display().to_string()))
    }

    /// Parses file text; `origin` names it in warnings ("ORIGIN:LINE: reason").
    pub fn parse(text: &str, origin: &str) -> (AuthorizedKeys, Vec<String>) {
        let mut entries = Vec::new();
        let mut warnings = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_origin = format!("{origin}:{}", index + 1);
            match parse_line(line) {
                Ok(None) => {}
                Ok(Some((key, options))) => entries.push(Entry { key, origin: line_origin, options }),
                Err(reason) => warnings.push(format!("{line_origin}: {reason}")),
            }
        }
        (AuthorizedKeys { entries }, warnings)
    }

    /// How many usable lines the file has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `key` may log in from `peer` at `now`; the reason when not (for
    /// the log). Keys compare by key data, never by comment. As in OpenSSH, any
    /// line listing the key whose options allow the login is enough. Without a
    /// `peer` address, lines with `from=` never allow it.
    pub fn check(&self, key: &PublicKey, peer: Option<IpAddr>, now: SystemTime) -> Result<(), Refusal> {
        let mut refusal = Refusal::Unknown;
        for entry in self.entries.iter().filter(|e| e.key == *key.key_data()) {
            match entry.options.authorise(peer, now) {
                Ok(()) => {
                    tracing::debug!(
                        line = %entry.origin,
                        restrictions = %entry.options.restrictions,
                        "authorized_keys: key accepted"
                    );
                    return Ok(());
                }
                // The first matching line's reason is the one to log.
                Err(why) if refusal == Refusal::Unknown => refusal = why,
                Err(_) => {}
            }
        }
        Err(refusal)
    }
}

// ---------------------------------------------------------------------------
// Lines

/// One line: `Ok(None)` for blank lines and comments; `Err` says why the line
/// is skipped.
fn parse_line(line: &str) -> Result<Option<(KeyData, Options)>, String> {
    let line = trim_blanks(line);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (options_field, key_part) = split_options(line)?;
    let options = Options::parse(options_field)?;
    let key = parse_key(key_part)?;
    Ok(Some((key, options)))
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn trim_blanks(s: &str) -> &str {
    s.trim_start_matches(is_blank)
}

/// Splits a line into its options field (maybe empty) and the key part.
/// As OpenSSH, a line that starts with a key has no options.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let first = line.split(is_blank).next().unwrap_or_default();
    if starts_with_key(line, first) {
        return Ok(("", line));
    }
    let end = options_end(line)?;
    let key_part = trim_blanks(&line[end..]);
    if key_part.is_empty() {
        return Err("no key after the options; line skipped".to_owned());
    }
    Ok((&line[..end], key_part))
}

/// Whether the line starts with a key type (one rscpd knows of, or one its
/// base64 blob names itself, as OpenSSH decides) rather than options.
fn starts_with_key(line: &str, first: &str) -> bool {
    if is_known_key_type(first) {
        return true;
    }
    let blob = line.split(is_blank).filter(|s| !s.is_empty()).nth(1);
    blob.and_then(decode_base64).is_some_and(|blob| blob_type(&blob) == Some(first.as_bytes()))
}

/// Key types rscpd serves or knowingly skips (`sk-*`, DSA, certificates).
fn is_known_key_type(name: &str) -> bool {
    SERVED_TYPES.contains(&name)
        || name == "ssh-dss"
        || name.starts_with("sk-")
        || name.ends_with("-cert-v01@openssh.com")
}

/// Where the options field ends: at the first blank outside double quotes,
/// `\"` not ending a quote (OpenSSH's sshkey_advance_past_options).
fn options_end(line: &str) -> Result<usize, String> {
    let bytes = line.as_bytes();
    let mut quoted = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if !quoted && (b == b' ' || b == b'\t') {
            return Ok(i);
        }
        if b == b'\\' && bytes.get(i + 1) == Some(&b'"') {
            i += 1;
        } else if b == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    Err(if quoted {
        "unterminated quote in the options; line skipped".to_owned()
    } else {
        "no key after the options; line skipped".to_owned()
    })
}

/// `TYPE BASE64 [COMMENT]` to key data, for the served key types only.
fn parse_key(key_part: &str) -> Result<KeyData, String> {
    let mut fields = key_part.split(is_blank).filter(|s| !s.is_empty());
    let key_type = fields.next().unwrap_or_default();
    if !SERVED_TYPES.contains(&key_type) {
        return Err(format!("key type `{key_type}` is not supported; key skipped"));
    }
    let blob = fields
        .next()
        .and_then(decode_base64)
        .ok_or_else(|| format!("bad base64 in the `{key_type}` key; key skipped"))?;
    let key =
        PublicKey::from_bytes(&blob).map_err(|e| format!("bad `{key_type}` key data ({e}); key skipped"))?;
    if key.algorithm().as_str() != key_type {
        return Err(format!("key data is `{}`, not `{key_type}`; key skipped", key.algorithm()));
    }
    check_rsa_size(key.key_data())?;
    Ok(key.key_data().clone())
}

fn check_rsa_size(key: &KeyData) -> Result<(), String> {
    match key.rsa() {
        Some(rsa) if rsa.key_size() < MIN_RSA_BITS => Err(format!(
            "RSA key of {} bits is below the {MIN_RSA_BITS}-bit minimum; key skipped",
            rsa.key_size()
        )),
        _ => Ok(()),
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    Base64::decode_vec(text).or_else(|_| Base64Unpadded::decode_vec(text)).ok()
}

/// The key type an SSH wire blob names in its first string.
fn blob_type(blob: &[u8]) -> Option<&[u8]> {
    let len = blob.get(..4)?;
    let len = u32::from_be_bytes(len.try_into().ok()?);
    blob.get(4..4usize.checked_add(usize::try_from(len).ok()?)?)
}

// ---------------------------------------------------------------------------
// Options

/// What a line's options field says.
#[derive(Debug, Default)]
struct Options {
    restrictions: Restrictions,
    from: Option<FromList>,
    expires: Option<SystemTime>,
}

/// The `no-*` options in effect. rscpd never grants any of these, so they are
/// honoured trivially; recorded for the log.
#[derive(Debug, Default, Clone, Copy)]
struct Restrictions {
    no_pty: bool,
    no_port_forwarding: bool,
    no_agent_forwarding: bool,
    no_x11_forwarding: bool,
    no_user_rc: bool,
}

impl fmt::Display for Restrictions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.no_pty, "no-pty"),
            (self.no_port_forwarding, "no-port-forwarding"),
            (self.no_agent_forwarding, "no-agent-forwarding"),
            (self.no_x11_forwarding, "no-X11-forwarding"),
            (self.no_user_rc, "no-user-rc"),
        ];
        let set: Vec<&str> = names.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        if set.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&set.join(","))
    }
}

impl Options {
    /// Parses an options field (`name` or `name="value"`, comma-separated;
    /// names case-insensitive, as OpenSSH's sshauthopt_parse).
    fn parse(mut field: &str) -> Result<Options, String> {
        let mut options = Options::default();
        while !field.is_empty() {
            let name_end = field.find(['=', ',']).unwrap_or(field.len());
            let name = field[..name_end].to_ascii_lowercase();
            let mut rest = &field[name_end..];
            let value = match rest.strip_prefix('=') {
                Some(quoted) => {
                    let (value, after) = dequote(quoted, &name)?;
                    rest = after;
                    Some(value)
                }
                None => None,
            };
            options.apply(&name, value)?;
            field = match rest.strip_prefix(',') {
                Some(next) => next,
                None if rest.is_empty() => rest,
                None => return Err(format!("malformed option `{name}`; key skipped")),
            };
        }
        Ok(options)
    }

    fn apply(&mut self, name: &str, value: Option<String>) -> Result<(), String> {
        match (name, value) {
            ("from", Some(list)) => self.set_from(&list),
            ("expiry-time", Some(time)) => self.set_expiry(&time),
            (_, None) if self.restrictions.apply_flag(name) => Ok(()),
            _ => Err(unusable_option(name)),
        }
    }

    fn set_from(&mut self, list: &str) -> Result<(), String> {
        if self.from.is_some() {
            return Err("more than one from= option; key skipped".to_owned());
        }
        self.from = Some(FromList::parse(list).map_err(|e| format!("from=\"{list}\": {e}; key skipped"))?);
        Ok(())
    }

    /// The earliest of several expiry times wins, as in OpenSSH.
    fn set_expiry(&mut self, text: &str) -> Result<(), String> {
        let time = parse_expiry(text)
            .ok_or_else(|| format!("bad expiry-time=\"{text}\" (want YYYYMMDD[HHMM[SS]][Z]); key skipped"))?;
        self.expires = Some(self.expires.map_or(time, |t| t.min(time)));
        Ok(())
    }

    /// OpenSSH's order: expiry first, then the source address.
    fn authorise(&self, peer: Option<IpAddr>, now: SystemTime) -> Result<(), Refusal> {
        if self.expires.is_some_and(|expires| now > expires) {
            return Err(Refusal::Expired);
        }
        match &self.from {
            Some(from) if !peer.is_some_and(|peer| from.allows(peer)) => Err(Refusal::FromNotAllowed),
            _ => Ok(()),
        }
    }
}

impl Restrictions {
    /// Applies a flag option; false if `name` is not one rscpd honours.
    fn apply_flag(&mut self, name: &str) -> bool {
        if name == "restrict" {
            *self = Restrictions::all();
            return true;
        }
        let (restrict, flag) = match name.strip_prefix("no-") {
            Some(flag) => (true, flag),
            None => (false, name),
        };
        let field = match flag {
            "pty" => &mut self.no_pty,
            "port-forwarding" => &mut self.no_port_forwarding,
            "agent-forwarding" => &mut self.no_agent_forwarding,
            "x11-forwarding" => &mut self.no_x11_forwarding,
            "user-rc" => &mut self.no_user_rc,
            _ => return false,
        };
        *field = restrict;
        true
    }

    fn all() -> Restrictions {
        Restrictions {
            no_pty: true,
            no_port_forwarding: true,
            no_agent_forwarding: true,
            no_x11_forwarding: true,
            no_user_rc: true,
        }
    }
}

/// Why an option makes the line unusable: either rscpd cannot honour it or
/// nobody knows it (OpenSSH refuses unknown options too).
fn unusable_option(name: &str) -> String {
    match name {
        "command" | "environment" | "permitopen" | "permitlisten" | "tunnel" | "principals" => {
            format!("option `{name}=` cannot be honoured by rscpd; key skipped")
        }
        "cert-authority" | "no-touch-required" | "verify-required" => {
            format!("option `{name}` cannot be honoured by rscpd; key skipped")
        }
        "from" | "expiry-time" => format!("option `{name}=` needs a quoted value; key skipped"),
        _ if Restrictions::default().apply_flag(name) => {
            format!("option `{name}` takes no value; key skipped")
        }
        _ => format!("unknown option `{name}`; key skipped"),
    }
}

/// `"value"` at the start of `s` to (value, rest after the closing quote);
/// `\"` stands for `"` (OpenSSH's opt_dequote).
fn dequote<'a>(s: &'a str, name: &str) -> Result<(String, &'a str), String> {
    let Some(body) = s.strip_prefix('"') else {
        return Err(format!("option `{name}=` value must be in double quotes; key skipped"));
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[i + 1..])),
            '\\' if body[i + 1..].starts_with('"') => {
                chars.next();
                value.push('"');
            }
            c => value.push(c),
        }
    }
    Err(format!("unterminated quote in option `{name}=`; key skipped"))
}

// ---------------------------------------------------------------------------
// from="pattern-list"

/// A `from=` pattern list (OpenSSH's match_host_and_ip with the peer's address
/// as its host name: rscpd does no reverse DNS).
#[derive(Debug)]
struct FromList(Vec<FromPattern>);

#[derive(Debug)]
struct FromPattern {
    negated: bool,
    /// The pattern as written, for wildcard matching.
    text: String,
    /// The network, when the pattern is an address or CIDR block.
    network: Option<(IpAddr, u8)>,
}

impl FromList {
    /// Refuses what OpenSSH's addr_match_list fails on (empty entries, CIDR
    /// blocks with host bits set or bad prefix lengths): such a list never
    /// lets anyone in, so the line is useless.
    fn parse(list: &str) -> Result<FromList, String> {
        let mut patterns = Vec::new();
        for entry in list.split(',') {
            let (negated, text) = match entry.strip_prefix('!') {
                Some(text) => (true, text),
                None => (false, entry),
            };
            if text.is_empty() {
                return Err("empty pattern".to_owned());
            }
            let network = parse_cidr(text)?;
            patterns.push(FromPattern { negated, text: text.to_owned(), network });
        }
        Ok(FromList(patterns))
    }

    /// Whether `peer` may use the key: some pattern matches it and no negated
    /// one does. IPv4-mapped IPv6 peers count as IPv4, as sshd normalises them.
    fn allows(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        let text = peer.to_string();
        // Both passes can veto with a negated match; either can admit.
        let by_address = self.match_address(peer, &text);
        let by_name = self.match_name(&text);
        match (by_address, by_name) {
            (Some(false), _) | (_, Some(false)) => false,
            (address, name) => address.is_some() || name.is_some(),
        }
    }

    /// addr_match_list: CIDR match where the pattern is an address, else a
    /// case-sensitive wildcard match on the address text. `Some(false)` = a
    /// negated pattern matched; `Some(true)` = a positive one did.
    fn match_address(&self, peer: IpAddr, text: &str) -> Option<bool> {
        let mut found = None;
        for pattern in &self.0 {
            let hit = match pattern.network {
                Some((network, prefix)) => in_network(peer, network, prefix),
                None => wildcard_match(text.as_bytes(), pattern.text.as_bytes()),
            };
            if hit {
                if pattern.negated {
                    return Some(false);
                }
                found = Some(true);
            }
        }
        found
    }

    /// match_hostname with the address text as the host name: every pattern
    /// a case-insensitive wildcard.
    fn match_name(&self, text: &str) -> Option<bool> {
        let mut found = None;
        for pattern in &self.0 {
            let lower = pattern.text.to_ascii_lowercase();
            if wildcard_match(text.as_bytes(), lower.as_bytes()) {
                if pattern.negated {
                    return Some(false);
                }
                found = Some(true);
            }
        }
        found
    }
}

/// `addr[/prefix]` to a network: `Ok(None)` if it is no address (a wildcard
/// pattern then), `Err` if it is one but inconsistent (OpenSSH's addr_pton_cidr).
fn parse_cidr(text: &str) -> Result<Option<(IpAddr, u8)>, String> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let Ok(address) = address.parse::<IpAddr>() else {
        return Ok(None);
    };
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            match digits.parse::<u32>() {
                Ok(n) if n <= 128 => n,
                _ => return Ok(None),
            }
        }
        Some(_) => return Ok(None),
    };
    if prefix > max {
        return Err(format!("prefix length /{prefix} is too long for {address}"));
    }
    let prefix = u8::try_from(prefix).map_err(|_| format!("prefix length /{prefix}"))?;
    if host_bits(address, prefix) != 0 {
        return Err(format!("{text} has host bits set beyond /{prefix}"));
    }
    Ok(Some((address, prefix)))
}

/// Whether `ip` is in `network/prefix` (never across address families).
fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = mask_u32(prefix);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = mask_u128(prefix);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn host_bits(address: IpAddr, prefix: u8) -> u128 {
    match address {
        IpAddr::V4(a) => u128::from(u32::from(a) & !mask_u32(prefix)),
        IpAddr::V6(a) => u128::from(a) & !mask_u128(prefix),
    }
}

fn mask_u32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
}

fn mask_u128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0)
}

/// `*` (any run) and `?` (any one byte) wildcards (OpenSSH's match_pattern).
fn wildcard_match(text: &[u8], pattern: &[u8]) -> bool {
    let (mut t, mut p) = (0, 0);
    // Where the last `*` was, and the text position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more byte and retry.
                Some((star_p, star_t)) => {
                    star = Some((star_p, star_t + 1));
                    p = star_p + 1;
                    t = star_t + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

// ---------------------------------------------------------------------------
// expiry-time="YYYYMMDD[HHMM[SS]]"

/// OpenSSH's parse_absolute_time: a trailing `Z` or `UTC` means UTC, else
/// local time (the zone rscpd runs in, at load time). Unlike OpenSSH (mktime
/// with `tm_isdst = 0`, an hour late in summer) local times follow DST: a time
/// a clock change skips is the moment of the change; one that occurs twice is
/// the earlier instant.
fn parse_expiry(text: &str) -> Option<SystemTime> {
    let (digits, utc) = strip_utc_suffix(text);
    let naive = parse_digits(digits)?;
    let time: SystemTime = if utc { naive.and_utc().into() } else { local_to_system_time(naive)? };
    // OpenSSH refuses times before the epoch.
    time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(time)
}

fn strip_utc_suffix(text: &str) -> (&str, bool) {
    let lower = text.to_ascii_lowercase();
    if text.len() > 1 && lower.ends_with('z') {
        (&text[..text.len() - 1], true)
    } else if text.len() > 3 && lower.ends_with("utc") {
        (&text[..text.len() - 3], true)
    } else {
        (text, false)
    }
}

/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`.
fn parse_digits(digits: &str) -> Option<NaiveDateTime> {
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |range: std::ops::Range<usize>| digits.get(range)?.parse::<u32>().ok();
    // Hours, minutes and seconds default to zero when absent.
    let optional =
        |range: std::ops::Range<usize>| digits.get(range).map_or(Some(0), |text| text.parse::<u32>().ok());
    let year = i32::try_from(field(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, field(4..6)?, field(6..8)?)?;
    date.and_hms_opt(optional(8..10)?, optional(10..12)?, optional(12..14)?)
}

/// Local wall-clock time to an instant; both clock-change cases resolve to
/// the earlier expiry, and later wall-clock times never expire earlier.
fn local_to_system_time(naive: NaiveDateTime) -> Option<SystemTime> {
    if let Some(time) = chrono::Local.from_local_datetime(&naive).earliest() {
        return Some(time.into());
    }
    // In a gap (clocks jumped forward): the moment of the jump, i.e. the first
    // wall-clock minute that exists after it. Gaps are whole minutes, at most a day.
    let mut later = naive.with_second(0)?;
    for _ in 0..2 * 24 * 60 {
        later += chrono::TimeDelta::minutes(1);
        if let Some(time) = chrono::Local.from_local_datetime(&later).earliest() {
            return Some(time.into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::HashAlg;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    // Made with `ssh-keygen -t ...`; fingerprints from `ssh-keygen -lf`.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClS7i8v6T+XWFyArraKrx40GR4RnALN0uLgI2njwR7J";
    const ED25519_FINGERPRINT: &str = "SHA256:bfbiG+qpqkBC+LN/hCtfYW0krsYCbbIiIwUaNIt7PT4";
    const OTHER_ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF5V9EfsvZJMltXFoRjGsh8qXQb2RPnktr1g8Fzl/CkW";
    const ECDSA256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA5IGH/uC3o0QtBuNPwkTTtzYkqBPnW8NQXUxBFRr3pw334SSJErmuCngF5/tq3OepYFlPi8S1m/F1OnihgNNho=";
    const ECDSA384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBLe9S5Ht6oa5misiFCR9+636/QB3ybOHEB570reFNU/9yXJI4md4dFa5/MwlrjiFN6otGecqdm61Vu9U5agza+XGUEl+Bo9eexsSIn9N8BIxPjQlR2hHygPHHZX+q08tyA==";
    const ECDSA521: &str = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBABFLJvOTwEs6UTq6z8aKWReaBVsdtgfA0jT5Hrw2bAJDiKhZ24uvDrXEXKwkPa9z5i7QGfHEd/GYM9OoxjmTxcZzQA1KtsJlqzxmOk8xTg/uP09BsFhEjqmFYRplr17BJXMTC5YonIsedg8VQ0cswarD3hIHJW0xpBtwFCAfN26ii9q3g==";
    const RSA3072: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQCTaCxu5B5/jfMgZm37c4M/kFTfJXlgp+7jGkhkBbYdszjrSQa7sfosMnHFr0vUX33ffP2duAp6VOo5anOXiHkOTrIEUc4G3sy0FQMKJ1LSTgN3ukbkwT6T7qjMeMnmkLIxf5jpa0VWOxcWdBJoQ86jFyg1FwzxH7sDDKTDIgBR9wdSWG9pDyv/aQ7TePVE9pbnK9+hwUODczO3F66A8VFI2IwpoXCXmCCwXwEC3npbTk8m9XWWjfsjQZtJs8JO72UbA4hGQvIXFMbAmznjgHYr3VUKhfMQafbAo0ZhJ0/QOqQ5wNqjqY5gQlE3FdRHT16naq80udC4UVYch11GSlZyYqo/G7iB63kL+HUIU+m3m7dtLo8+yNxNsUxWIQ+MsxU1umZkb42hctCwXRltUZ86Wpt3VSTzNaQhLXvMRmMkeI7PFOyFPLQvoyMOHblWmlcmVYiR90GHTYDh6OAUUPhDOFt4RTidP3W6PRpVEW8R7w4/YW4BFzg1VmayZi7ONhU=";
    /// 1024 bits: the smallest RSA key OpenSSH (and rscpd) accepts.
    const RSA1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDmE0YVgb0SW9M7hqxq+sm13pPE3Rnwn0MUpXDqolODIh1ICRPYTmp4vFgSNQHhxbsYYc9yW5T0ZZIqBaOHR3VC2F8EGbaYU1V+JF6QbinpuX++AZFI0KxQLmW2WV1G4v+Y3K2Kd3hskY7cZd28Xk0HpNlHJ75EK6RxsIJtfQD5tQ==";
    // Hand-built blobs (ssh-keygen refuses to make them); refused before their
    // key data matters.
    const RSA512: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAQQDFFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcB";
    const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fAAAABHNzaDo=";
    const DSS: &str = "ssh-dss AAAAB3NzaC1kc3MAAAAUAQEBAQEBAQEBAQEBAQEBAQEBAQEAAAAUAgICAgICAgICAgICAgICAgICAgIAAAAUAwMDAwMDAwMDAwMDAwMDAwMDAwMAAAAUBAQEBAQEBAQEBAQEBAQEBAQEBAQ=";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).expect("test key")
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000) // June 2025
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    fn v6(text: &str) -> Option<IpAddr> {
        Some(IpAddr::V6(text.parse::<Ipv6Addr>().expect("test address")))
    }

    /// Parses one ED25519 line with `options`; panics on any warning.
    fn with_options(options: &str) -> AuthorizedKeys {
        let (keys, warnings) = AuthorizedKeys::parse(&format!("{options} {ED25519} c"), "ak");
        assert!(warnings.is_empty(), "{options}: {warnings:?}");
        assert_eq!(keys.len(), 1, "{options}");
        keys
    }

    /// The one warning a refused one-line file gives.
    fn refused_line(line: &str) -> String {
        let (keys, warnings) = AuthorizedKeys::parse(&format!("# first\n{line}\n"), "ak");
        assert_eq!(keys.len(), 0, "{line}");
        assert_eq!(warnings.len(), 1, "{line}: {warnings:?}");
        assert!(warnings[0].starts_with("ak:2: "), "{}", warnings[0]);
        warnings[0].clone()
    }

    fn check_from(options: &str, peer: Option<IpAddr>) -> Result<(), Refusal> {
        with_options(options).check(&key(ED25519), peer, now())
    }

    #[test]
    fn serves_every_supported_key_type() {
        for line in [ED25519, ECDSA256, ECDSA384, ECDSA521, RSA3072] {
            let (keys, warnings) = AuthorizedKeys::parse(line, "ak");
            assert!(warnings.is_empty(), "{line}: {warnings:?}");
            assert_eq!(keys.check(&key(line), None, now()), Ok(()), "{line}");
            assert_eq!(keys.check(&key(OTHER_ED25519), None, now()), Err(Refusal::Unknown));
        }
    }

    #[test]
    fn comments_blank_lines_whitespace_and_crlf() {
        let text =
            format!("# comment\n\n   \n\t# indented comment\r\n  {ED25519} with a comment\r\n\t{ECDSA256}\n");
        let (keys, warnings) = AuthorizedKeys::parse(&text, "ak");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.check(&key(ED25519), None, now()), Ok(()));
        assert_eq!(keys.check(&key(ECDSA256), None, now()), Ok(()));
    }

    #[test]
    fn keys_match_by_key_data_not_comment() {
        let (keys, _) = AuthorizedKeys::parse(&format!("{ED25519} alice@laptop"), "ak");
        assert_eq!(keys.check(&key(ED25519), None, now()), Ok(()));
        assert_eq!(keys.check(&key(&format!("{ED25519} mallory")), None, now()), Ok(()));
        assert_eq!(
            keys.check(&key(&format!("{OTHER_ED25519} alice@laptop")), None, now()),
            Err(Refusal::Unknown)
        );
    }

    #[test]
    fn fingerprint_is_openssh_sha256_form() {
        // So rscpd needs no fingerprint function of its own.
        assert_eq!(key(ED25519).fingerprint(HashAlg::Sha256).to_string(), ED25519_FINGERPRINT);
    }

    #[test]
    fn unsupported_key_types_are_skipped() {
        let cert = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t";
        for (line, expected) in [
            (SK_ED25519, "key type `sk-ssh-ed25519@openssh.com` is not supported"),
            (DSS, "key type `ssh-dss` is not supported"),
            (cert, "key type `ssh-ed25519-cert-v01@openssh.com` is not supported"),
        ] {
            let warning = refused_line(line);
            assert!(warning.contains(expected), "{warning}");
        }
        // Still skipped behind options.
        assert!(refused_line(&format!("restrict {DSS}")).contains("`ssh-dss` is not supported"));
    }

    #[test]
    fn rsa_keys_below_1024_bits_are_refused() {
        // OpenSSH's default RequiredRSASize.
        let warning = refused_line(RSA512);
        assert!(warning.contains("RSA key of 512 bits is below the 1024-bit minimum"), "{warning}");
        let (keys, warnings) = AuthorizedKeys::parse(RSA1024, "ak");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(keys.check(&key(RSA1024), None, now()), Ok(()));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let ed_blob = ED25519.split(' ').nth(1).expect("blob");
        for (line, expected) in [
            ("ssh-ed25519 AAAA!!!notbase64".to_owned(), "bad base64"),
            ("ssh-ed25519".to_owned(), "bad base64"),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClS".to_owned(), "bad `ssh-ed25519` key data"),
            (format!("ssh-rsa {ed_blob}"), "key data is `ssh-ed25519`, not `ssh-rsa`"),
            (format!("command=\"oops {ED25519}"), "unterminated quote"),
            ("restrict".to_owned(), "no key after the options"),
            ("restrict   ".to_owned(), "no key after the options"),
            (format!("from=\"1.2.3.4\"x {ED25519}"), "malformed option `from`"),
        ] {
            let warning = refused_line(&line);
            assert!(warning.contains(expected), "{line}: {warning}");
        }
    }

    #[test]
    fn bad_lines_do_not_stop_the_good_ones() {
        let text = format!("garbage here\n{ED25519}\ncommand=\"x\" {ECDSA256}\n{DSS}\n{ECDSA384}\n");
        let (keys, warnings) = AuthorizedKeys::parse(&text, "/home/u/.ssh/authorized_keys");
        assert_eq!(keys.len(), 2);
        let lines: Vec<&str> = warnings.iter().map(|w| w.split(": ").next().expect("origin")).collect();
        assert_eq!(
            lines,
            [
                "/home/u/.ssh/authorized_keys:1",
                "/home/u/.ssh/authorized_keys:3",
                "/home/u/.ssh/authorized_keys:4"
            ]
        );
        assert!(warnings[0].contains("unknown option `garbage`"), "{}", warnings[0]);
    }

    #[test]
    fn honoured_options_are_accepted_and_recorded() {
        for option in [
            "restrict",
            "no-pty",
            "no-port-forwarding",
            "no-agent-forwarding",
            "no-X11-forwarding",
            "no-user-rc",
            "pty",
            "port-forwarding",
            "agent-forwarding",
            "X11-forwarding",
            "user-rc",
            "NO-PTY",
            "Restrict",
            "restrict,",
        ] {
            let keys = with_options(option);
            assert_eq!(keys.check(&key(ED25519), None, now()), Ok(()), "{option}");
        }
        let restrictions = |options| with_options(options).entries[0].options.restrictions;
        assert_eq!(
            restrictions("restrict").to_string(),
            "no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc"
        );
        assert_eq!(
            restrictions("restrict,pty,user-rc").to_string(),
            "no-port-forwarding,no-agent-forwarding,no-X11-forwarding"
        );
        // Later options win, as OpenSSH applies them in order.
        assert_eq!(restrictions("pty,restrict").to_string(), restrictions("restrict").to_string());
        assert_eq!(restrictions("no-pty,no-x11-forwarding").to_string(), "no-pty,no-X11-forwarding");
        assert_eq!(restrictions("no-pty,pty").to_string(), "none");
    }

    #[test]
    fn options_rscpd_cannot_honour_refuse_the_line() {
        for (options, expected) in [
            ("command=\"/bin/date\"", "option `command=` cannot be honoured"),
            ("environment=\"A=b\"", "option `environment=` cannot be honoured"),
            ("permitopen=\"host:22\"", "option `permitopen=` cannot be honoured"),
            ("permitlisten=\"8080\"", "option `permitlisten=` cannot be honoured"),
            ("tunnel=\"1\"", "option `tunnel=` cannot be honoured"),
            ("principals=\"alice\"", "option `principals=` cannot be honoured"),
            ("cert-authority", "option `cert-authority` cannot be honoured"),
            ("no-touch-required", "option `no-touch-required` cannot be honoured"),
            ("verify-required", "option `verify-required` cannot be honoured"),
            ("restrict,COMMAND=\"x\"", "option `command=` cannot be honoured"),
            ("no-such-option", "unknown option `no-such-option`"),
            ("no-restrict", "unknown option `no-restrict`"),
            ("restrict,,pty", "unknown option ``"),
            ("pty=\"yes\"", "option `pty` takes no value"),
            ("from", "option `from=` needs a quoted value"),
            ("from=1.2.3.4", "must be in double quotes"),
            ("expiry-time", "option `expiry-time=` needs a quoted value"),
        ] {
            let warning = refused_line(&format!("{options} {ED25519}"));
            assert!(warning.contains(expected), "{options}: {warning}");
        }
    }

    #[test]
    fn quoted_values_may_hold_commas_blanks_and_escaped_quotes() {
        // The refusal names `command=`, so the quoted value was skipped whole.
        let warning =
            refused_line(&format!("no-pty,command=\"echo a, b \\\"c d\\\", e\",restrict {ED25519} comment"));
        assert!(warning.contains("option `command=`"), "{warning}");
        assert_eq!(dequote(r#""a, \"b\" \c",x"#, "n").expect("quoted"), (r#"a, "b" \c"#.to_owned(), ",x"));
        let keys = with_options("from=\"10.0.0.0/8,192.168.1.*\",no-pty");
        assert_eq!(keys.check(&key(ED25519), v4(192, 168, 1, 7), now()), Ok(()));
        assert_eq!(keys.check(&key(ED25519), v4(10, 9, 8, 7), now()), Ok(()));
    }

    #[test]
    fn from_ipv4_cidr_wildcards_and_negation() {
        let cases = [
            ("10.0.0.0/8", v4(10, 1, 2, 3), true),
            ("10.0.0.0/8", v4(11, 1, 2, 3), false),
            ("10.1.2.3", v4(10, 1, 2, 3), true),
            ("10.1.2.3/32", v4(10, 1, 2, 4), false),
            ("0.0.0.0/0", v4(203, 0, 113, 9), true),
            ("192.168.1.*", v4(192, 168, 1, 200), true),
            ("192.168.1.*", v4(192, 168, 2, 1), false),
            ("192.168.1.?", v4(192, 168, 1, 7), true),
            ("192.168.1.?", v4(192, 168, 1, 70), false),
            ("*", v4(1, 2, 3, 4), true),
            ("!10.0.0.5,10.0.0.0/8", v4(10, 0, 0, 5), false),
            ("!10.0.0.5,10.0.0.0/8", v4(10, 0, 0, 6), true),
            ("10.0.0.0/8,!10.0.0.5", v4(10, 0, 0, 5), false),
            ("!10.0.0.0/8,*", v4(10, 0, 0, 5), false),
            ("!10.0.0.0/8", v4(192, 0, 2, 1), false),
            ("!192.0.2.*,*", v4(192, 0, 2, 1), false),
            // Host names can only match the textual address (no reverse DNS).
            ("host.example.com", v4(192, 0, 2, 1), false),
            ("*.example.com,192.0.2.1", v4(192, 0, 2, 1), true),
            ("10.0.0.0/8", None, false),
            ("*", None, false),
        ];
        for (list, peer, allowed) in cases {
            let expected = if allowed { Ok(()) } else { Err(Refusal::FromNotAllowed) };
            assert_eq!(check_from(&format!("from=\"{list}\""), peer), expected, "{list} {peer:?}");
        }
    }

    #[test]
    fn from_ipv6_and_mapped_ipv4() {
        let cases = [
            ("2001:db8::/32", v6("2001:db8:1::5"), true),
            ("2001:db8::/32", v6("2001:db9::5"), false),
            ("2001:DB8::/32", v6("2001:db8::5"), true),
            ("2001:db8::5", v6("2001:db8::5"), true),
            ("2001:db8::*", v6("2001:db8::abcd"), true),
            ("2001:DB8::*", v6("2001:db8::abcd"), true),
            ("!2001:db8::5,2001:db8::/32", v6("2001:db8::5"), false),
            ("::/0", v6("fe80::1"), true),
            // Families never cross.
            ("0.0.0.0/0", v6("2001:db8::1"), false),
            ("::/0", v4(10, 0, 0, 1), false),
            // An IPv4-mapped peer counts as its IPv4 address.
            ("10.0.0.0/8", v6("::ffff:10.1.2.3"), true),
            ("10.1.2.*", v6("::ffff:10.1.2.3"), true),
            ("!10.1.2.3,*", v6("::ffff:10.1.2.3"), false),
            ("::ffff:10.1.2.3", v6("::ffff:10.1.2.3"), false),
            ("::ffff:0:0/96", v6("::ffff:10.1.2.3"), false),
        ];
        for (list, peer, allowed) in cases {
            let expected = if allowed { Ok(()) } else { Err(Refusal::FromNotAllowed) };
            assert_eq!(check_from(&format!("from=\"{list}\""), peer), expected, "{list} {peer:?}");
        }
    }

    #[test]
    fn from_lists_openssh_rejects_refuse_the_line() {
        for (list, expected) in [
            ("10.0.0.1/8", "host bits set"),
            ("10.0.0.0/33", "too long"),
            ("2001:db8::1/32", "host bits set"),
            ("10.0.0.0/8,", "empty pattern"),
            ("!", "empty pattern"),
            ("", "empty pattern"),
        ] {
            let warning = refused_line(&format!("from=\"{list}\" {ED25519}"));
            assert!(warning.contains(expected), "{list}: {warning}");
        }
        let warning = refused_line(&format!("from=\"*\",from=\"*\" {ED25519}"));
        assert!(warning.contains("more than one from="), "{warning}");
        // Not addresses at all: wildcard patterns, as in OpenSSH.
        for list in ["10.0.0.0/", "10.0.0.0/x", "10.0.0.0/129", "10.0.*/8"] {
            with_options(&format!("from=\"{list}\""));
        }
    }

    #[test]
    fn expiry_time_in_utc() {
        let at = |options: &str, now: SystemTime| with_options(options).check(&key(ED25519), None, now);
        assert_eq!(at("expiry-time=\"20250101Z\"", now()), Err(Refusal::Expired));
        assert_eq!(at("expiry-time=\"20990101Z\"", now()), Ok(()));
        // 2025-06-15 15:06:40 UTC is `now()`: valid up to and including that second.
        let exact = "expiry-time=\"20250615150640Z\"";
        assert_eq!(at(exact, now()), Ok(()));
        assert_eq!(at(exact, now() + Duration::from_secs(1)), Err(Refusal::Expired));
        assert_eq!(at("expiry-time=\"202506151506Z\"", now()), Err(Refusal::Expired));
        assert_eq!(at("expiry-time=\"202506151507utc\"", now()), Ok(()));
        // The earliest of two wins.
        assert_eq!(at("expiry-time=\"20990101Z\",expiry-time=\"20250101Z\"", now()), Err(Refusal::Expired));
        // Expiry is checked before the address.
        assert_eq!(
            with_options("from=\"10.0.0.0/8\",expiry-time=\"20250101Z\"").check(
                &key(ED25519),
                v4(192, 0, 2, 1),
                now()
            ),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn expiry_time_in_local_time() {
        let at = |options: &str| with_options(options).check(&key(ED25519), None, now());
        assert_eq!(at("expiry-time=\"20000101\""), Err(Refusal::Expired));
        assert_eq!(at("expiry-time=\"209901011200\""), Ok(()));
        assert_eq!(at("expiry-time=\"20990101120000\""), Ok(()));
        // Local and UTC readings differ by the local offset at that moment.
        let naive = parse_digits("20250615150640").expect("date");
        let offset = chrono::Local.offset_from_utc_datetime(&naive);
        let local = parse_expiry("20250615150640").expect("local");
        let utc = parse_expiry("20250615150640Z").expect("utc");
        let seconds = i64::from(chrono::Offset::fix(&offset).local_minus_utc());
        let shift = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
        assert_eq!(
            i64::try_from(shift(utc)).expect("i64") - i64::try_from(shift(local)).expect("i64"),
            seconds
        );
    }

    #[test]
    fn local_times_around_clock_changes_still_parse_in_order() {
        // EU and US change days: times skipped or repeated in the local zone
        // (if it has DST) still give an instant, and later times never earlier ones.
        for day in ["20250330", "20251026", "20250309", "20251102"] {
            let mut previous = SystemTime::UNIX_EPOCH;
            for minute in (0..24 * 60).step_by(15) {
                let text = format!("{day}{:02}{:02}", minute / 60, minute % 60);
                let time = parse_expiry(&text).expect("every local time parses");
                assert!(time >= previous, "{text}");
                previous = time;
            }
        }
    }

    #[test]
    fn bad_expiry_times_refuse_the_line() {
        for time in [
            "2025",
            "2025010112",
            "20251301",
            "20250230",
            "20250101246000",
            "2025010a",
            "19600101Z",
            "Z",
            "UTC",
        ] {
            let warning = refused_line(&format!("expiry-time=\"{time}\" {ED25519}"));
            assert!(warning.contains("bad expiry-time"), "{time}: {warning}");
        }
    }

    #[test]
    fn any_line_that_allows_the_key_is_enough() {
        let text = format!("from=\"10.0.0.0/8\" {ED25519} office\nexpiry-time=\"20200101Z\" {ED25519} old\n");
        let (keys, _) = AuthorizedKeys::parse(&text, "ak");
        assert_eq!(keys.check(&key(ED25519), v4(10, 0, 0, 1), now()), Ok(()));
        // Refused by both lines: the first line's reason is reported.
        assert_eq!(keys.check(&key(ED25519), v4(192, 0, 2, 1), now()), Err(Refusal::FromNotAllowed));
        let (keys, _) = AuthorizedKeys::parse(&format!("{text}{ED25519} anywhere\n"), "ak");
        assert_eq!(keys.check(&key(ED25519), v4(192, 0, 2, 1), now()), Ok(()));
    }

    #[test]
    fn refusals_read_well_in_a_log() {
        assert_eq!(Refusal::Unknown.to_string(), "key not in authorized_keys");
        assert_eq!(Refusal::Expired.to_string(), "key expired (expiry-time)");
        assert_eq!(Refusal::FromNotAllowed.to_string(), "address not allowed by from=");
    }

    #[test]
    fn wildcards() {
        for (text, pattern, matches) in [
            ("abc", "abc", true),
            ("abc", "a*", true),
            ("abc", "*c", true),
            ("abc", "*b*", true),
            ("abc", "a?c", true),
            ("abc", "a?", false),
            ("abc", "", false),
            ("", "*", true),
            ("", "", true),
            ("aXbXc", "a*b*c", true),
            ("aXbX", "a*b*c", false),
            ("10.1.1.1", "10.*.1", true),
        ] {
            assert_eq!(wildcard_match(text.as_bytes(), pattern.as_bytes()), matches, "{text} {pattern}");
        }
    }

    #[test]
    fn load_reads_files_and_names_them_in_warnings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("authorized_keys");
        std::fs::write(&path, format!("{ED25519}\nbad\n")).expect("write");
        let (keys, warnings) = AuthorizedKeys::load(&path).expect("load");
        assert_eq!(keys.len(), 1);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with(&format!("{}:2: ", path.display())), "{warnings:?}");
        assert!(AuthorizedKeys::load(&dir.path().join("missing")).is_err());
    }
}
