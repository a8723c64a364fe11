//! known_hosts: OpenSSH's host-key database, read and appended the way `ssh` does
//! (`hostfile.c`, `match.c`, and the messages of `sshconnect.c`, OpenSSH 9.2).
//!
//! Owns: parsing known_hosts files (plain and `|1|` hashed names, `*`/`?`/`!`
//! patterns, `[host]:port`, `@cert-authority`, `@revoked`), deciding whether a
//! presented key is known / changed / revoked / new, appending new keys, SHA256
//! fingerprints, and the exact warning texts `ssh` prints.
//!
//! Must never: depend on russh key types (keys are `(algorithm, blob)` pairs),
//! prompt or print anything itself, decide policy (StrictHostKeyChecking is the
//! client's job), or panic on file content: every malformed line is skipped.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Base64Unpadded, Encoding};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// `|1|`: the only hashed-name format OpenSSH writes or reads (`HASH_MAGIC`).
const HASH_MAGIC: &str = "|1|";
/// OpenSSH refuses salts that are not exactly one SHA1 block of output long.
const SALT_LEN: usize = 20;
/// `match_pattern_list` ignores sub-patterns this long or longer.
const MAX_PATTERN: usize = 1024;

/// Key types OpenSSH 9.2 accepts in known_hosts (the certificate forms are
/// derived by appending `-cert-v01@openssh.com`).
const PLAIN_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "sk-ssh-ed25519@openssh.com",
];
const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

/// A public key as (algorithm name, raw SSH wire blob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// The name it was presented or written under: `ssh-ed25519`, `rsa-sha2-512`, ...
    pub algorithm: String,
    /// The decoded base64 of the key field (starts with the key's own type name).
    pub blob: Vec<u8>,
}

impl HostKey {
    /// Parses `"ssh-ed25519 AAAA... [comment]"`. `None` if the type is not one
    /// OpenSSH knows, the base64 is bad, or the blob names another key type.
    pub fn from_openssh(line: &str) -> Option<HostKey> {
        let mut fields = line.split_whitespace();
        let algorithm = fields.next()?;
        let blob = decode_base64(fields.next()?)?;
        let key = HostKey { algorithm: algorithm.to_string(), blob };
        let family = canonical_type(algorithm)?;
        // sshkey_read rejects a line whose type field disagrees with the blob.
        (key.blob_type() == Some(family)).then_some(key)
    }

    /// `"type base64"`, with the key's own type name as `ssh` writes it
    /// (`ssh-rsa`, never `rsa-sha2-512`).
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.key_type(), Base64::encode_string(&self.blob))
    }

    /// The key's type, for "same key type" comparisons and for writing: the name
    /// inside the blob when readable, else the algorithm with RSA signature names
    /// (`rsa-sha2-256/512`) folded into `ssh-rsa`.
    pub fn key_type(&self) -> &str {
        if let Some(t) = self.blob_type() {
            return t;
        }
        canonical_type(&self.algorithm).unwrap_or(&self.algorithm)
    }

    /// OpenSSH's `sshkey_type()` label used in messages: `ED25519`, `ECDSA`,
    /// `RSA`, `DSA`, `ECDSA-SK`, `ED25519-SK`, with `-CERT` for certificates.
    pub fn type_label(&self) -> String {
        let t = self.key_type();
        let (plain, cert) = match t.strip_suffix(CERT_SUFFIX) {
            Some(p) => (p, true),
            None => (t, false),
        };
        let base = match plain {
            "ssh-ed25519" => "ED25519",
            "ssh-rsa" => "RSA",
            "ssh-dss" => "DSA",
            "sk-ecdsa-sha2-nistp256@openssh.com" => "ECDSA-SK",
            "sk-ssh-ed25519@openssh.com" => "ED25519-SK",
            p if p.starts_with("ecdsa-sha2-") => "ECDSA",
            _ => "unknown",
        };
        if cert { format!("{base}-CERT") } else { base.to_string() }
    }

    /// The type name at the start of the blob (an SSH `string`), if well formed.
    fn blob_type(&self) -> Option<&str> {
        let len_bytes: [u8; 4] = self.blob.get(..4)?.try_into().ok()?;
        let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
        let name = self.blob.get(4..4usize.checked_add(len)?)?;
        std::str::from_utf8(name).ok()
    }
}

/// Maps a type or signature-algorithm name to the key type OpenSSH stores;
/// `None` for types OpenSSH 9.2 cannot read from known_hosts.
fn canonical_type(name: &str) -> Option<&'static str> {
    let (plain, cert) = match name.strip_suffix(CERT_SUFFIX) {
        Some(p) => (p, true),
        None => (name, false),
    };
    let plain = match plain {
        // Signature algorithms of RSA keys: the key itself is `ssh-rsa`.
        "rsa-sha2-256" | "rsa-sha2-512" => "ssh-rsa",
        p => p,
    };
    let index = PLAIN_TYPES.iter().position(|t| *t == plain)?;
    if !cert {
        return PLAIN_TYPES.get(index).copied();
    }
    const CERT_TYPES: &[&str] = &[
        "ssh-ed25519-cert-v01@openssh.com",
        "ssh-rsa-cert-v01@openssh.com",
        "ssh-dss-cert-v01@openssh.com",
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "sk-ssh-ed25519-cert-v01@openssh.com",
    ];
    CERT_TYPES.get(index).copied()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    Base64::decode_vec(text).or_else(|_| Base64Unpadded::decode_vec(text)).ok().filter(|b| !b.is_empty())
}

/// What `check` / `check_ca` concluded about a presented key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The exact key is listed for this host (for `check_ca`: the CA is a
    /// `@cert-authority` for this host).
    Known,
    /// A `@revoked` line for this host lists the key (or CA). OpenSSH applies
    /// `@revoked` lines through the same host matching as every other line, so
    /// use `@revoked * ...` to revoke a key for all hosts.
    Revoked { path: PathBuf, line: usize },
    /// The host is listed, but only with other keys: OpenSSH's "REMOTE HOST
    /// IDENTIFICATION HAS CHANGED". Like OpenSSH 9.2, this is reported for a
    /// listed key of ANY type (verified against the real `ssh`); `expected` is
    /// the last non-matching entry, as in `hostfile.c`.
    Changed { path: PathBuf, line: usize, expected: HostKey },
    /// Never returned by `check`: OpenSSH 9.2 reports a host known only with
    /// other key types as [`Verdict::Changed`]. `ssh` avoids that case by
    /// preferring the algorithms it already knows for the host during key
    /// exchange (see [`KnownHosts::known_types`]). Kept for callers that want
    /// to map "changed, but a different type" to it themselves.
    OtherTypesKnown,
    /// Nothing about this host (or, for `check_ca`, no matching CA).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    CertAuthority,
    Revoked,
}

#[derive(Debug, Clone)]
enum HostField {
    /// `|1|salt|hash`: the whole field is one hashed name.
    Hashed { salt: Vec<u8>, text: String },
    /// Comma-separated patterns.
    Patterns(String),
}

impl HostField {
    fn parse(field: &str) -> Option<HostField> {
        let Some(rest) = field.strip_prefix(HASH_MAGIC) else {
            return Some(HostField::Patterns(field.to_string()));
        };
        let (salt, hash) = rest.split_once('|')?;
        let salt = Base64::decode_vec(salt).ok().filter(|s| s.len() == SALT_LEN)?;
        Base64::decode_vec(hash).ok()?;
        Some(HostField::Hashed { salt, text: field.to_string() })
    }

    /// `name` is already lowercased and in `host` / `[host]:port` form.
    fn matches(&self, name: &str) -> bool {
        match self {
            // OpenSSH compares the re-hashed name with the field as text.
            HostField::Hashed { salt, text } => hash_host(name, salt) == *text,
            HostField::Patterns(patterns) => match_pattern_list(name, patterns),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    marker: Marker,
    hosts: HostField,
    key: HostKey,
    path: PathBuf,
    line: usize,
}

/// Every usable line of the user and global known_hosts files, in order.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    user_file: Option<PathBuf>,
}

impl KnownHosts {
    /// Reads the user files, then the global ones, as `ssh` does. Missing or
    /// unreadable files and malformed lines are skipped silently.
    pub fn load(user_files: &[PathBuf], global_files: &[PathBuf]) -> KnownHosts {
        let mut known = KnownHosts { entries: Vec::new(), user_file: user_files.first().cloned() };
        for path in user_files.iter().chain(global_files) {
            let Ok(bytes) = fs::read(path) else { continue };
            known.add_text(path, &bytes);
        }
        known
    }

    /// One file's contents; `path` is used for messages and is the file new keys go to.
    pub fn from_text(path: &Path, text: &str) -> KnownHosts {
        let mut known = KnownHosts { entries: Vec::new(), user_file: Some(path.to_path_buf()) };
        known.add_text(path, text.as_bytes());
        known
    }

    /// The first user file: where `ssh` adds new keys and what its "Add correct
    /// host key in ..." line names.
    pub fn user_file(&self) -> Option<&Path> {
        self.user_file.as_deref()
    }

    /// No usable line in any file.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn add_text(&mut self, path: &Path, bytes: &[u8]) {
        for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            // Non-UTF-8 lines cannot name a host we look up, nor hold base64.
            let Ok(text) = std::str::from_utf8(raw) else { continue };
            if let Some((marker, hosts, key)) = parse_line(text) {
                self.entries.push(Entry { marker, hosts, key, path: path.to_path_buf(), line: index + 1 });
            }
        }
    }

    /// Entries whose host field matches `host` on `port` (mirrors `load_hostkeys`).
    fn for_host<'a>(&'a self, host: &str, port: u16) -> impl Iterator<Item = &'a Entry> + Clone + 'a {
        let name = host_pattern(host, port).to_ascii_lowercase();
        self.entries.iter().filter(move |e| e.hosts.matches(&name))
    }

    /// Is `key` the (or a) key of `host` on `port`? Mirrors `check_key_in_hostkeys`.
    pub fn check(&self, host: &str, port: u16, key: &HostKey) -> Verdict {
        let entries = self.for_host(host, port);
        if let Some(e) = entries.clone().find(|e| e.marker == Marker::Revoked && e.key.blob == key.blob) {
            return Verdict::Revoked { path: e.path.clone(), line: e.line };
        }
        let mut changed = None;
        for e in entries.filter(|e| e.marker == Marker::None) {
            // The blob carries the key type, so `rsa-sha2-512` matches an `ssh-rsa` line.
            if e.key.blob == key.blob {
                return Verdict::Known;
            }
            changed = Some(e);
        }
        match changed {
            Some(e) => Verdict::Changed { path: e.path.clone(), line: e.line, expected: e.key.clone() },
            None => Verdict::Unknown,
        }
    }

    /// For a host certificate: is `ca` (the signing key) a `@cert-authority` for
    /// `host` and not `@revoked`? Gives `Known`, `Revoked` or `Unknown` only:
    /// other CAs for the host are not "changed" keys (as in OpenSSH).
    pub fn check_ca(&self, host: &str, port: u16, ca: &HostKey) -> Verdict {
        let entries = self.for_host(host, port);
        if let Some(e) = entries.clone().find(|e| e.marker == Marker::Revoked && e.key.blob == ca.blob) {
            return Verdict::Revoked { path: e.path.clone(), line: e.line };
        }
        if entries.into_iter().any(|e| e.marker == Marker::CertAuthority && e.key.blob == ca.blob) {
            Verdict::Known
        } else {
            Verdict::Unknown
        }
    }

    /// True if a `@cert-authority` line applies to the host: ssh then asks for a
    /// host certificate first.
    pub fn has_cert_authority(&self, host: &str, port: u16) -> bool {
        self.for_host(host, port).any(|e| e.marker == Marker::CertAuthority)
    }

    /// Key types listed (plain lines) for the host, in file order, without
    /// duplicates: `ssh` puts these first in its host-key algorithm proposal
    /// (`order_hostkeyalgs`) so that a known key is negotiated when possible.
    pub fn known_types(&self, host: &str, port: u16) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for e in self.for_host(host, port).filter(|e| e.marker == Marker::None) {
            let t = e.key.key_type();
            if !types.iter().any(|have| have == t) {
                types.push(t.to_string());
            }
        }
        types
    }
}

/// `[marker] hosts type base64 [comment]`; `None` for comments, blank and bad lines.
fn parse_line(text: &str) -> Option<(Marker, HostField, HostKey)> {
    let mut fields = text.split_whitespace().peekable();
    let first = *fields.peek()?;
    if first.starts_with('#') {
        return None;
    }
    let marker = if first.starts_with('@') {
        fields.next();
        match first {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            // An unknown marker makes the whole line invalid (check_markers).
            _ => return None,
        }
    } else {
        Marker::None
    };
    let hosts = HostField::parse(fields.next()?)?;
    let algorithm = fields.next()?;
    let key = HostKey::from_openssh(&format!("{algorithm} {}", fields.next()?))?;
    Some((marker, hosts, key))
}

/// `match_pattern_list` with lowercasing: 1 if some pattern matches and no
/// negated one does; a matching `!pattern` vetoes the whole list.
fn match_pattern_list(name: &str, list: &str) -> bool {
    let mut positive = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if pattern.len() >= MAX_PATTERN {
            continue;
        }
        if match_pattern(name.as_bytes(), pattern.to_ascii_lowercase().as_bytes()) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` matches any run of bytes, `?` any one byte; everything else literally.
fn match_pattern(name: &[u8], pattern: &[u8]) -> bool {
    let (mut n, mut p) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

/// The hashed form of `name`: `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
pub fn hash_host(name: &str, salt: &[u8]) -> String {
    let mac = match Hmac::<Sha1>::new_from_slice(salt) {
        Ok(mut mac) => {
            mac.update(name.as_bytes());
            mac.finalize().into_bytes()
        }
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    format!("{HASH_MAGIC}{}|{}", Base64::encode_string(salt), Base64::encode_string(&mac))
}

/// The name known_hosts stores: `host` for port 22, else `[host]:port` (`put_host_port`).
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 || port == 0 { host.to_string() } else { format!("[{host}]:{port}") }
}

/// `SHA256:` and the unpadded base64 of the blob's SHA-256, as `ssh` shows it.
pub fn fingerprint_sha256(key: &HostKey) -> String {
    format!("SHA256:{}", Base64Unpadded::encode_string(&Sha256::digest(&key.blob)))
}

/// Appends `host key` to `path` as `ssh` does when it learns a key: the name is
/// lowercased (ssh lowercases the destination) and, with `hash`, hashed with a
/// fresh salt. Creates the parent directory (0700) and the file if needed.
pub fn append(path: &Path, host: &str, port: u16, key: &HostKey, hash: bool) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let name = host_pattern(host, port).to_ascii_lowercase();
    let name = if hash {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| io::Error::other(format!("random salt: {e}")))?;
        hash_host(&name, &salt)
    } else {
        name
    };
    let mut line = format!("{name} {}\n", key.to_openssh());
    let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
    // Not in OpenSSH: a last line without its newline would swallow ours.
    if file.seek(SeekFrom::End(0))? > 0 {
        file.seek(SeekFrom::End(-1))?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.insert(0, '\n');
        }
    }
    file.write_all(line.as_bytes())
}

/// OpenSSH's box for a changed key, through the strict-checking line. `host` is
/// the display name (`host_pattern`), `add_to` the first user known_hosts file,
/// `path:line` the offending entry. Lines end in `\n`; `ssh` itself logs them
/// to stderr with `\r\n`, except the one `\n` inside the fingerprint message.
pub fn changed_warning_in(
    add_to: &Path,
    host: &str,
    key: &HostKey,
    expected: &HostKey,
    path: &Path,
    line: usize,
) -> String {
    let mut s = String::new();
    let bar = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@";
    // Text of sshconnect.c:warn_changed_key() and check_host_key(), OpenSSH 9.2.
    let _ = writeln!(s, "{bar}");
    let _ = writeln!(s, "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @");
    let _ = writeln!(s, "{bar}");
    let _ = writeln!(s, "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!");
    let _ = writeln!(s, "Someone could be eavesdropping on you right now (man-in-the-middle attack)!");
    let _ = writeln!(s, "It is also possible that a host key has just been changed.");
    let _ = writeln!(s, "The fingerprint for the {} key sent by the remote host is", key.type_label());
    let _ = writeln!(s, "{}.", fingerprint_sha256(key));
    let _ = writeln!(s, "Please contact your system administrator.");
    let _ = writeln!(s, "Add correct host key in {} to get rid of this message.", add_to.display());
    let _ = writeln!(s, "Offending {} key in {}:{line}", expected.type_label(), path.display());
    let _ = writeln!(s, "  remove with:");
    let _ = writeln!(s, "  ssh-keygen -f \"{}\" -R \"{host}\"", path.display());
    let _ = writeln!(s, "Host key for {host} has changed and you have requested strict checking.");
    s
}

/// OpenSSH's box for a revoked key (`host` as from `host_pattern`), through the
/// strict-checking line; `\n` line ends (ssh logs them with `\r\n`).
pub fn revoked_warning_for(host: &str, key: &HostKey) -> String {
    let label = key.type_label();
    let bar = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@";
    // Text of sshconnect.c:check_host_key(), case HOST_REVOKED, OpenSSH 9.2.
    format!(
        "{bar}\n@       WARNING: REVOKED HOST KEY DETECTED!               @\n{bar}\n\
         The {label} host key for {host} is marked as revoked.\n\
         This could mean that a stolen key is being used to\n\
         impersonate this host.\n\
         {label} host key for {host} was revoked and you have requested strict checking.\n"
    )
}

/// `ssh`'s final line when it refuses a host key.
pub fn verification_failed() -> String {
    "Host key verification failed.".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A fresh key from the real `ssh-keygen`, or `None` (skip) if it is missing.
    fn keygen(dir: &Path, kind: &str) -> Option<HostKey> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = dir.join(format!("key{n}"));
        let mut cmd = Command::new("ssh-keygen");
        cmd.args(["-q", "-t", kind, "-N", "", "-f"]).arg(&file);
        if kind == "rsa" {
            cmd.args(["-b", "2048"]);
        }
        match cmd.status() {
            Ok(s) => assert!(s.success(), "ssh-keygen -t {kind} failed"),
            Err(_) if std::env::var("RSCP_REQUIRE_PEERS").as_deref() == Ok("1") => {
                panic!("ssh-keygen (OpenSSH) is required (RSCP_REQUIRE_PEERS=1) but is not installed")
            }
            Err(_) => {
                eprintln!("skipped: ssh-keygen (OpenSSH) is not installed");
                return None;
            }
        }
        let text = fs::read_to_string(file.with_extension("pub")).expect("read .pub");
        Some(HostKey::from_openssh(&text).expect("ssh-keygen's .pub parses"))
    }

    struct Keys {
        dir: tempfile::TempDir,
        ed: HostKey,
        ed2: HostKey,
        ec: HostKey,
        rsa: HostKey,
    }

    fn keys() -> Option<Keys> {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let ed = keygen(dir.path(), "ed25519")?;
        Some(Keys {
            ed2: keygen(dir.path(), "ed25519")?,
            ec: keygen(dir.path(), "ecdsa")?,
            rsa: keygen(dir.path(), "rsa")?,
            ed,
            dir,
        })
    }

    fn kh(text: &str) -> KnownHosts {
        KnownHosts::from_text(Path::new("/kh"), text)
    }

    fn changed_at(line: usize, expected: &HostKey) -> Verdict {
        Verdict::Changed { path: PathBuf::from("/kh"), line, expected: expected.clone() }
    }

    #[test]
    fn host_key_text_round_trip_and_types() {
        let Some(k) = keys() else { return };
        assert_eq!(HostKey::from_openssh(&k.ed.to_openssh()), Some(k.ed.clone()));
        assert_eq!(k.ed.key_type(), "ssh-ed25519");
        assert_eq!(k.ec.key_type(), "ecdsa-sha2-nistp256");
        assert_eq!(k.ec.type_label(), "ECDSA");
        assert_eq!(k.rsa.type_label(), "RSA");
        // The server names the signature algorithm; the key is still ssh-rsa.
        let rsa512 = HostKey { algorithm: "rsa-sha2-512".into(), blob: k.rsa.blob.clone() };
        assert_eq!(rsa512.key_type(), "ssh-rsa");
        assert!(rsa512.to_openssh().starts_with("ssh-rsa AAAA"));
        // Type field that disagrees with the blob, unknown types, bad base64.
        let b64 = Base64::encode_string(&k.ed.blob);
        assert_eq!(HostKey::from_openssh(&format!("ssh-rsa {b64}")), None);
        assert_eq!(HostKey::from_openssh(&format!("ssh-foo {b64}")), None);
        assert_eq!(HostKey::from_openssh("ssh-ed25519 !!!!"), None);
        assert_eq!(HostKey::from_openssh("ssh-ed25519"), None);
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        let Some(k) = keys() else { return };
        let pubfile = k.dir.path().join("fp.pub");
        fs::write(&pubfile, k.ed.to_openssh()).expect("write");
        let out = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(&pubfile)
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.split_whitespace().nth(1), Some(fingerprint_sha256(&k.ed).as_str()), "{text}");
    }

    #[test]
    fn plain_entries_ports_and_several_keys() {
        let Some(k) = keys() else { return };
        let text = format!(
            "example.com,10.0.0.1 {}\n[127.0.0.1]:2222 {}\n[127.0.0.1]:2222 {} comment here\n",
            k.ed.to_openssh(),
            k.ed.to_openssh(),
            k.ec.to_openssh()
        );
        let known = kh(&text);
        assert_eq!(known.check("example.com", 22, &k.ed), Verdict::Known);
        assert_eq!(known.check("EXAMPLE.com", 22, &k.ed), Verdict::Known, "case-insensitive");
        assert_eq!(known.check("10.0.0.1", 22, &k.ed), Verdict::Known);
        // A plain name only covers port 22.
        assert_eq!(known.check("example.com", 2222, &k.ed), Verdict::Unknown);
        assert_eq!(known.check("127.0.0.1", 2222, &k.ed), Verdict::Known);
        assert_eq!(known.check("127.0.0.1", 2222, &k.ec), Verdict::Known);
        assert_eq!(known.check("127.0.0.1", 22, &k.ed), Verdict::Unknown);
        assert_eq!(known.known_types("127.0.0.1", 2222), ["ssh-ed25519", "ecdsa-sha2-nistp256"]);
    }

    #[test]
    fn changed_and_other_type() {
        let Some(k) = keys() else { return };
        let text = format!(
            "# c\n\nh1 {}\nh2 {}\nh2 {}\n",
            k.ed2.to_openssh(),
            k.ec.to_openssh(),
            k.rsa.to_openssh()
        );
        let known = kh(&text);
        assert_eq!(known.check("h1", 22, &k.ed), changed_at(3, &k.ed2));
        // OpenSSH 9.2: any other listed key, whatever its type, is "changed";
        // the last non-matching line is the one reported.
        assert_eq!(known.check("h2", 22, &k.ed), changed_at(5, &k.rsa));
        assert_eq!(known.check("h2", 22, &k.rsa), Verdict::Known);
        let rsa512 = HostKey { algorithm: "rsa-sha2-512".into(), blob: k.rsa.blob.clone() };
        assert_eq!(known.check("h2", 22, &rsa512), Verdict::Known);
    }

    #[test]
    fn patterns_wildcards_and_negation() {
        let Some(k) = keys() else { return };
        let text = format!(
            "*.example.com,!bad.example.com {}\nweb?.test {}\n[10.1.*]:* {}\n",
            k.ed.to_openssh(),
            k.ec.to_openssh(),
            k.rsa.to_openssh()
        );
        let known = kh(&text);
        assert_eq!(known.check("a.example.com", 22, &k.ed), Verdict::Known);
        assert_eq!(known.check("A.B.Example.COM", 22, &k.ed), Verdict::Known);
        assert_eq!(known.check("bad.example.com", 22, &k.ed), Verdict::Unknown, "negation vetoes");
        assert_eq!(known.check("example.com", 22, &k.ed), Verdict::Unknown);
        assert_eq!(known.check("web1.test", 22, &k.ec), Verdict::Known);
        assert_eq!(known.check("web12.test", 22, &k.ec), Verdict::Unknown);
        assert_eq!(known.check("10.1.2.3", 2200, &k.rsa), Verdict::Known);
        assert_eq!(known.check("10.1.2.3", 22, &k.rsa), Verdict::Unknown);
        // A list with only a negation never matches.
        let neg = kh(&format!("!x {}\n", k.ed.to_openssh()));
        assert_eq!(neg.check("y", 22, &k.ed), Verdict::Unknown);
        assert!(match_pattern(b"abc", b"a*c"));
        assert!(match_pattern(b"ac", b"a*c"));
        assert!(match_pattern(b"aXbXc", b"a*b*c"));
        assert!(!match_pattern(b"abcd", b"a*c"));
        assert!(match_pattern(b"", b"*"));
        assert!(!match_pattern(b"", b"?"));
    }

    #[test]
    fn markers_revoked_and_cert_authority() {
        let Some(k) = keys() else { return };
        let text = format!(
            "host1 {ed}\n@revoked host1 {ed}\n@cert-authority *.example.com,!evil.example.com {ec}\n\
             @revoked * {rsa}\n@revoked ca.example.com {ec}\n@bogus host2 {ed}\n",
            ed = k.ed.to_openssh(),
            ec = k.ec.to_openssh(),
            rsa = k.rsa.to_openssh()
        );
        let known = kh(&text);
        assert_eq!(known.check("host1", 22, &k.ed), Verdict::Revoked { path: "/kh".into(), line: 2 });
        // `@revoked *` covers every host, even where the key is otherwise unknown.
        assert_eq!(known.check("anything", 2222, &k.rsa), Verdict::Revoked { path: "/kh".into(), line: 4 });
        // Revocation goes through host matching, as in OpenSSH.
        assert_eq!(known.check("host9", 22, &k.ed), Verdict::Unknown);
        // Unknown marker: the line is ignored.
        assert_eq!(known.check("host2", 22, &k.ed), Verdict::Unknown);
        assert_eq!(known.check_ca("www.example.com", 22, &k.ec), Verdict::Known);
        assert_eq!(known.check_ca("www.example.com", 443, &k.ec), Verdict::Unknown);
        assert_eq!(known.check_ca("evil.example.com", 22, &k.ec), Verdict::Unknown);
        assert_eq!(known.check_ca("www.example.com", 22, &k.ed), Verdict::Unknown);
        assert_eq!(
            known.check_ca("ca.example.com", 22, &k.ec),
            Verdict::Revoked { path: "/kh".into(), line: 5 }
        );
        // A CA line never makes a plain key known, nor counts as a changed key;
        // a plain line never makes a CA trusted.
        assert_eq!(known.check("www.example.com", 22, &k.ec), Verdict::Unknown);
        assert_eq!(known.check_ca("host1", 22, &k.ed), Verdict::Revoked { path: "/kh".into(), line: 2 });
        let plain = kh(&format!("host1 {}\n", k.ed.to_openssh()));
        assert_eq!(plain.check_ca("host1", 22, &k.ed), Verdict::Unknown);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let Some(k) = keys() else { return };
        let ed = k.ed.to_openssh();
        let b64 = Base64::encode_string(&k.ed.blob);
        let text = format!(
            "   # indented comment {ed}\n\n\t\nh\nh ssh-ed25519\nh ssh-ed25519 %%%%\nh ssh-rsa {b64}\n\
             |1|short|AAAA {ed}\n|1|{salt}|not base64! {ed}\nh {ed}\r\n",
            salt = Base64::encode_string(&[0u8; 20])
        );
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"\xff\xfe h garbage\n");
        let path = k.dir.path().join("messy");
        fs::write(&path, &bytes).expect("write");
        let known = KnownHosts::load(&[k.dir.path().join("missing"), path.clone()], &[]);
        assert_eq!(known.entries.len(), 1, "{:?}", known.entries);
        assert_eq!(known.check("h", 22, &k.ed), Verdict::Known);
        assert_eq!(known.entries[0].line, 10);
        assert_eq!(known.user_file(), Some(k.dir.path().join("missing").as_path()));
        assert!(KnownHosts::load(&[], &[PathBuf::from("/nonexistent/x")]).is_empty());
    }

    #[test]
    fn user_then_global_files() {
        let Some(k) = keys() else { return };
        let user = k.dir.path().join("user");
        let global = k.dir.path().join("global");
        fs::write(&user, format!("h {}\n", k.ed2.to_openssh())).expect("write");
        fs::write(&global, format!("h {}\n", k.ec.to_openssh())).expect("write");
        let known = KnownHosts::load(std::slice::from_ref(&user), std::slice::from_ref(&global));
        assert_eq!(
            known.check("h", 22, &k.ed),
            Verdict::Changed { path: global.clone(), line: 1, expected: k.ec.clone() }
        );
        assert_eq!(known.check("h", 22, &k.ed2), Verdict::Known);
        assert_eq!(known.user_file(), Some(user.as_path()));
    }

    #[test]
    fn hashed_entries_from_ssh_keygen() {
        let Some(k) = keys() else { return };
        let file = k.dir.path().join("to_hash");
        fs::write(
            &file,
            format!("myhost.example {}\n[127.0.0.1]:2222 {}\n", k.ed.to_openssh(), k.ec.to_openssh()),
        )
        .expect("write");
        // -H reports on stderr even with -q; keep the test output quiet.
        let out = Command::new("ssh-keygen").arg("-H").arg("-f").arg(&file).output().expect("run");
        assert!(out.status.success());
        let text = fs::read_to_string(&file).expect("read");
        assert!(text.lines().all(|l| l.starts_with("|1|")), "{text}");
        let known = KnownHosts::load(std::slice::from_ref(&file), &[]);
        assert_eq!(known.check("myhost.example", 22, &k.ed), Verdict::Known);
        assert_eq!(known.check("MyHost.Example", 22, &k.ed), Verdict::Known);
        assert_eq!(known.check("127.0.0.1", 2222, &k.ec), Verdict::Known);
        assert_eq!(known.check("127.0.0.1", 22, &k.ec), Verdict::Unknown);
        assert_eq!(known.check("otherhost", 22, &k.ed), Verdict::Unknown);
        assert_eq!(
            known.check("myhost.example", 22, &k.ed2),
            Verdict::Changed { path: file, line: 1, expected: k.ed }
        );
    }

    /// `ssh-keygen -F name -f file` prints the matching lines (exit 0) or nothing (1).
    fn keygen_finds(file: &Path, name: &str) -> bool {
        let out = Command::new("ssh-keygen").arg("-F").arg(name).arg("-f").arg(file).output().expect("run");
        out.status.success() && !out.stdout.is_empty()
    }

    #[test]
    fn append_creates_dirs_and_round_trips() {
        let Some(k) = keys() else { return };
        let file = k.dir.path().join("a/b/known_hosts");
        append(&file, "Plain.Example", 22, &k.ed, false).expect("append");
        append(&file, "127.0.0.1", 2222, &k.ec, true).expect("append hashed");
        let rsa512 = HostKey { algorithm: "rsa-sha2-512".into(), blob: k.rsa.blob.clone() };
        append(&file, "hashed.example", 22, &rsa512, true).expect("append hashed");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(k.dir.path().join("a/b")).expect("dir").permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let text = fs::read_to_string(&file).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], format!("plain.example {}", k.ed.to_openssh()));
        assert!(lines[1].starts_with("|1|") && lines[1].ends_with(&k.ec.to_openssh()), "{text}");
        assert!(lines[2].contains(" ssh-rsa AAAA"), "{text}");
        let known = KnownHosts::load(std::slice::from_ref(&file), &[]);
        assert_eq!(known.check("plain.example", 22, &k.ed), Verdict::Known);
        assert_eq!(known.check("127.0.0.1", 2222, &k.ec), Verdict::Known);
        assert_eq!(known.check("hashed.example", 22, &k.rsa), Verdict::Known);
        // The real ssh-keygen finds what we wrote, hashed or not.
        assert!(keygen_finds(&file, "plain.example"));
        assert!(keygen_finds(&file, "[127.0.0.1]:2222"));
        assert!(keygen_finds(&file, "hashed.example"));
        assert!(!keygen_finds(&file, "nothere.example"));
        // A file whose last line lacks its newline keeps both lines intact.
        let bare = k.dir.path().join("bare");
        fs::write(&bare, format!("x {}", k.ed.to_openssh())).expect("write");
        append(&bare, "y", 22, &k.ec, false).expect("append");
        let known = KnownHosts::load(&[bare], &[]);
        assert_eq!(known.check("x", 22, &k.ed), Verdict::Known);
        assert_eq!(known.check("y", 22, &k.ec), Verdict::Known);
    }

    #[test]
    fn warning_texts() {
        let key = HostKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGKKOivdknbK8kJWpxPfUjleElHiva9XeL79cdnSVD0",
        )
        .expect("key");
        let ec = HostKey::from_openssh(
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN+18F2KzfqJbq/CL1N6u7yeE7N8N5Bj5W/VhauDF+1CTdxWXAigQSMsjhcaoeAWZLxmICoy8fRuhgvwnoxrAnA=",
        )
        .expect("ecdsa key");
        assert_eq!(
            fingerprint_sha256(&key),
            "SHA256:mND0k3QNetNjxRG+neaKXixYvIwsUXsT/XNA+5Rbkc0",
            "as ssh printed it"
        );
        // Captured from OpenSSH_9.2p1 (Debian) `ssh` against a local sshd, line
        // ends normalised to "\n".
        let expected = [
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
            "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
            "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!",
            "Someone could be eavesdropping on you right now (man-in-the-middle attack)!",
            "It is also possible that a host key has just been changed.",
            "The fingerprint for the ED25519 key sent by the remote host is",
            "SHA256:mND0k3QNetNjxRG+neaKXixYvIwsUXsT/XNA+5Rbkc0.",
            "Please contact your system administrator.",
            "Add correct host key in /tmp/khx/u1 to get rid of this message.",
            "Offending ECDSA key in /tmp/khx/u2:1",
            "  remove with:",
            "  ssh-keygen -f \"/tmp/khx/u2\" -R \"[127.0.0.1]:22987\"",
            "Host key for [127.0.0.1]:22987 has changed and you have requested strict checking.",
            "",
        ]
        .join("\n");
        let got = changed_warning_in(
            Path::new("/tmp/khx/u1"),
            "[127.0.0.1]:22987",
            &key,
            &ec,
            Path::new("/tmp/khx/u2"),
            1,
        );
        assert_eq!(got, expected);
        let short = changed_warning_in(Path::new("/f"), "h", &key, &ec, Path::new("/f"), 3);
        assert!(
            short.contains("Add correct host key in /f to get rid")
                && short.contains("Offending ECDSA key in /f:3\n")
        );
        let expected = [
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
            "@       WARNING: REVOKED HOST KEY DETECTED!               @",
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@",
            "The ED25519 host key for [127.0.0.1]:22987 is marked as revoked.",
            "This could mean that a stolen key is being used to",
            "impersonate this host.",
            "ED25519 host key for [127.0.0.1]:22987 was revoked and you have requested strict checking.",
            "",
        ]
        .join("\n");
        assert_eq!(revoked_warning_for("[127.0.0.1]:22987", &key), expected);
        assert_eq!(verification_failed(), "Host key verification failed.");
        assert_eq!(host_pattern("h", 22), "h");
        assert_eq!(host_pattern("::1", 2222), "[::1]:2222");
    }
}
