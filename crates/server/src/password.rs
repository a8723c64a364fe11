//! The password file: `user:PHC` lines, each PHC string an Argon2id hash, and
//! the check of a password against it. Owns hashing and verifying only; it must
//! never hold, log or print a password or a hash (its `Debug` shows user names).
//!
//! A file with any line that is not an argon2id hash is refused whole, so a
//! plain-text password file is never half-used.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use argon2::password_hash::phc::Salt;
use argon2::{ARGON2ID_IDENT, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier};

/// What to tell the administrator to do about a bad line.
const HOW_TO_HASH: &str = "make one with `rscpd hash-password`";

/// Salt of the stand-in hash unknown users are checked against (any fixed value).
const DUMMY_SALT: &[u8] = b"rscpd-no-such-user";

/// Users and their Argon2id hashes, read from a password file.
pub struct PasswordFile {
    users: BTreeMap<String, PasswordHash>,
    /// Checked for unknown users so that they cost what a known user costs:
    /// the first user's parameters with a fixed salt. `None` when no users.
    dummy: Option<PasswordHash>,
}

impl fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // User names only: hashes are offline-crackable secrets.
        f.debug_struct("PasswordFile")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PasswordFile {
    /// Reads and parses the file at `path`; errors name the file (and line).
    pub fn load(path: &Path) -> Result<PasswordFile, String> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| format!("{origin}: {e}"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("{origin}: not UTF-8 text; expected `user:argon2-hash` lines"))?;
        Self::parse(&text, &origin)
    }

    /// Parses password file text; `origin` names it in errors ("ORIGIN:LINE: ...").
    pub fn parse(text: &str, origin: &str) -> Result<PasswordFile, String> {
        let mut users = BTreeMap::new();
        let mut first_line = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let Some((user, hash)) =
                parse_line(line).map_err(|reason| format!("{origin}:{number}: {reason}"))?
            else {
                continue;
            };
            if let Some(first) = first_line.insert(user.to_owned(), number) {
                return Err(format!("{origin}:{number}: user `{user}` already appears on line {first}"));
            }
            users.insert(user.to_owned(), hash);
        }
        let dummy = users.values().next().map(dummy_like);
        Ok(PasswordFile { users, dummy })
    }

    /// How many users the file lists.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether `password` is `user`'s. Constant work whether or not the user
    /// exists: unknown users are checked against a stand-in hash (and refused),
    /// so response time does not tell which user names exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash, true),
            None => match &self.dummy {
                Some(dummy) => (dummy, false),
                // No users at all: nothing to learn from timing.
                None => return false,
            },
        };
        let matches = Argon2::default().verify_password(password.as_bytes(), hash).is_ok();
        matches && known
    }
}

/// A new Argon2id PHC string with a random salt and the argon2 crate's default
/// (OWASP) parameters.
///
/// # Panics
/// Only if the operating system's random number generator fails.
pub fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .expect("the system random number generator failed")
}

/// One line: `Ok(None)` for blank lines and comments, else the user and hash.
fn parse_line(line: &str) -> Result<Option<(&str, PasswordHash)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let Some((user, phc)) = line.split_once(':') else {
        return Err(format!("expected `user:argon2-hash`; {HOW_TO_HASH}"));
    };
    if user.is_empty() {
        return Err("empty user name".to_owned());
    }
    Ok(Some((user, parse_hash(phc)?)))
}

/// An Argon2id PHC string whose parameters, salt and hash are all usable, so
/// `verify` can never fail for a reason other than a wrong password.
fn parse_hash(phc: &str) -> Result<PasswordHash, String> {
    let hash = PasswordHash::new(phc).map_err(|_| format!("not an argon2 hash; {HOW_TO_HASH}"))?;
    if hash.algorithm != ARGON2ID_IDENT {
        let algorithm = hash.algorithm.as_str();
        if algorithm.starts_with("argon2") {
            return Err(format!("{algorithm} hash; only argon2id is accepted; {HOW_TO_HASH}"));
        }
        return Err(format!("not an argon2 hash; {HOW_TO_HASH}"));
    }
    if let Some(version) = hash.version {
        argon2::Version::try_from(version)
            .map_err(|e| format!("argon2 version {version}: {e}; {HOW_TO_HASH}"))?;
    }
    Params::try_from(&hash).map_err(|e| format!("argon2 parameters: {e}; {HOW_TO_HASH}"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(format!("argon2 hash without salt or hash value; {HOW_TO_HASH}"));
    }
    Ok(hash)
}

/// A stand-in with `hash`'s parameters (so it costs the same to check) and a
/// fixed salt (so it holds no user's material).
fn dummy_like(hash: &PasswordHash) -> PasswordHash {
    let mut dummy = hash.clone();
    if let Ok(salt) = Salt::new(DUMMY_SALT) {
        dummy.salt = Some(salt);
    }
    dummy
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters keep the tests fast; `parse` accepts any valid ones.
    fn cheap_hash(password: &str, salt: &[u8]) -> String {
        let params = Params::new(64, 1, 1, None).expect("params");
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon.hash_password_with_salt(password.as_bytes(), salt).expect("hash").to_string()
    }

    fn two_users() -> PasswordFile {
        let text = format!(
            "# users\n\nalice:{}\n  bob:{}  \n",
            cheap_hash("wonderland", b"saltsalt-alice"),
            cheap_hash("builder", b"saltsalt-bob"),
        );
        PasswordFile::parse(&text, "passwd").expect("valid file")
    }

    #[test]
    fn parses_users_skipping_comments_and_blank_lines() {
        let file = two_users();
        assert_eq!(file.len(), 2);
        assert!(PasswordFile::parse("# nothing\n\n", "passwd").expect("valid file").len() == 0);
    }

    #[test]
    fn verifies_right_password_only() {
        let file = two_users();
        assert!(file.verify("alice", "wonderland"));
        assert!(file.verify("bob", "builder"));
        assert!(!file.verify("alice", "builder"));
        assert!(!file.verify("alice", ""));
        assert!(!file.verify("Alice", "wonderland"));
    }

    #[test]
    fn unknown_user_is_refused_even_with_a_real_password() {
        let file = two_users();
        assert!(!file.verify("mallory", "wonderland"));
        assert!(!file.verify("", ""));
        let empty = PasswordFile::parse("", "passwd").expect("valid file");
        assert!(!empty.verify("alice", "wonderland"));
    }

    #[test]
    fn dummy_has_the_first_users_parameters_and_a_fixed_salt() {
        let file = two_users();
        let dummy = file.dummy.as_ref().expect("dummy");
        let alice = &file.users["alice"];
        assert_eq!(dummy.params, alice.params);
        assert_eq!(dummy.salt, Some(Salt::new(DUMMY_SALT).expect("salt")));
    }

    #[test]
    fn hash_password_round_trip() {
        let phc = hash_password("correct horse");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_ne!(phc, hash_password("correct horse"), "salt must be random");
        let file = PasswordFile::parse(&format!("carol:{phc}\n"), "passwd").expect("valid file");
        assert!(file.verify("carol", "correct horse"));
        assert!(!file.verify("carol", "correct horse "));
    }

    #[test]
    fn plain_text_line_refuses_the_whole_file() {
        let text = format!("alice:{}\n\nbob:hunter2\n", cheap_hash("x", b"saltsalt"));
        let err = PasswordFile::parse(&text, "/etc/rscpd/passwd").expect_err("refused");
        assert_eq!(err, "/etc/rscpd/passwd:3: not an argon2 hash; make one with `rscpd hash-password`");
    }

    #[test]
    fn invalid_lines_are_refused_with_their_line_number() {
        let good = cheap_hash("x", b"saltsalt");
        let cases = [
            ("no colon at all".to_owned(), "expected `user:argon2-hash`"),
            (format!(":{good}"), "empty user name"),
            ("alice:".to_owned(), "not an argon2 hash"),
            ("alice:$2b$12$abcdefghijklmnopqrstuv".to_owned(), "not an argon2 hash"),
            (
                "alice:$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
                "argon2i hash; only argon2id",
            ),
            ("alice:$argon2id$v=19$m=64,t=1,p=1".to_owned(), "without salt"),
            (
                "alice:$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
                "argon2 parameters",
            ),
            (
                "alice:$argon2id$v=7$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned(),
                "argon2 version 7",
            ),
        ];
        for (line, expected) in cases {
            let err = PasswordFile::parse(&format!("# header\n{line}\n"), "pw").expect_err("refused");
            assert!(err.starts_with("pw:2: "), "{line}: {err}");
            assert!(err.contains(expected), "{line}: {err}");
        }
    }

    #[test]
    fn duplicate_user_is_refused() {
        let text =
            format!("alice:{}\nalice:{}\n", cheap_hash("a", b"saltsalt"), cheap_hash("b", b"saltsalt"));
        let err = PasswordFile::parse(&text, "pw").expect_err("refused");
        assert_eq!(err, "pw:2: user `alice` already appears on line 1");
    }

    #[test]
    fn debug_shows_users_but_no_hashes() {
        let file = two_users();
        let shown = format!("{file:?}");
        assert!(shown.contains("alice") && shown.contains("bob"), "{shown}");
        assert!(!shown.contains("argon2") && !shown.contains('$'), "{shown}");
    }

    #[test]
    fn load_reads_a_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("passwd");
        std::fs::write(&path, format!("alice:{}\n", cheap_hash("pw", b"saltsalt"))).expect("write");
        let file = PasswordFile::load(&path).expect("valid file");
        assert!(file.verify("alice", "pw"));

        std::fs::write(&path, "alice:pw\n").expect("write");
        let err = PasswordFile::load(&path).expect_err("refused");
        assert!(err.starts_with(&format!("{}:1: ", path.display())), "{err}");

        let missing = dir.path().join("missing");
        let err = PasswordFile::load(&missing).expect_err("refused");
        assert!(err.starts_with(&format!("{}: ", missing.display())), "{err}");
    }
}
