//! The remote command line of the SCP protocol (`scp -r -p -t /srv/www`), both ways.
//!
//! A client [`build`]s the line it asks the SSH server to exec. OpenSSH pastes the
//! remote path raw, so the remote shell runs backticks and `$(...)` hidden in it
//! (CVE-2020-15778); here every path goes through [`quote_path`], which leaves the
//! remote shell only globs, a leading `~` and the user's own backslash escapes.
//!
//! A server (rscpd, or rscp under a `ForceCommand`) [`parse`]s such a line itself,
//! with no shell, and accepts only the subset that means the same thing with or
//! without one: anything that would need a shell (`;`, `|`, `$`, backticks,
//! redirections, ...) is refused, never emulated.
//!
//! This module must never run a shell or a program, never expand `~` or globs itself
//! (it only reports them in [`RemotePath`]), and never accept an option that could
//! name a program or a configuration (`-S`, `-o`, `-F`: CVE-2007-6415 in scponly).

use std::fmt;

use crate::display::escape;

/// Longest command line [`parse`] accepts, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// Most words (program, options and paths together) [`parse`] accepts.
pub const MAX_WORDS: usize = 4096;

/// Which end of the transfer the remote scp plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `-t`: the remote side receives ("to").
    Sink,
    /// `-f`: the remote side sends ("from").
    Source,
}

/// The options the two scp ends pass each other.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `-v`
    pub verbose: bool,
    /// `-r`
    pub recursive: bool,
    /// `-p`
    pub preserve: bool,
    /// `-d`: the target must be a directory.
    pub target_dir: bool,
}

/// A parsed remote command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCommand {
    pub direction: Direction,
    pub flags: Flags,
    /// At least one.
    pub paths: Vec<RemotePath>,
}

/// One path word of a parsed command line, with what a shell would have expanded in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotePath {
    /// `Some(user)` when the word began with an unquoted `~` or `~user` (user empty for
    /// plain `~`); `literal` is then the rest after it (empty or starting with '/').
    pub tilde: Option<Vec<u8>>,
    /// The path with all quoting removed.
    pub literal: Vec<u8>,
    /// `Some(pattern)` only when the word had at least one UNQUOTED glob character
    /// (`*`, `?`, `[`): an fnmatch pattern in which every quoted `*?[]\` byte is
    /// backslash-escaped. Like `literal`, it excludes the `~user` prefix.
    pub pattern: Option<Vec<u8>>,
}

/// Why [`parse`] refused a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// No words at all.
    Empty,
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// The program is not `scp` or `rscp` (the word is kept, as the peer sent it).
    NotScp(Vec<u8>),
    /// An option letter other than `t f r p d v`.
    UnsupportedOption(u8),
    NeitherSinkNorSource,
    BothSinkAndSource,
    MissingPath,
    /// A byte that only means something to a shell, or NUL.
    UnsafeCharacter(u8),
    UnterminatedQuote,
    /// More than [`MAX_WORDS`] words.
    TooManyPaths,
}

/// How much of a peer's program word an error message shows.
const SHOWN_PROGRAM: usize = 128;

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty command line"),
            Self::TooLong => write!(f, "command line longer than {MAX_LINE} bytes"),
            Self::NotScp(program) => {
                let shown = program.get(..SHOWN_PROGRAM).unwrap_or(program);
                let more = if shown.len() < program.len() { "..." } else { "" };
                write!(f, "not an scp command: \"{}{more}\"", escape(shown))
            }
            Self::UnsupportedOption(b) => write!(f, "unsupported option -{}", escape(&[*b])),
            Self::NeitherSinkNorSource => f.write_str("neither -t nor -f given"),
            Self::BothSinkAndSource => f.write_str("both -t and -f given"),
            Self::MissingPath => f.write_str("no path given"),
            Self::UnsafeCharacter(b) => {
                write!(f, "refusing '{}' in command line: it needs a shell", escape(&[*b]))
            }
            Self::UnterminatedQuote => f.write_str("unterminated quote in command line"),
            Self::TooManyPaths => write!(f, "command line has more than {MAX_WORDS} words"),
        }
    }
}

impl std::error::Error for CommandError {}

/// Builds the remote command line in OpenSSH's order, every path quoted by [`quote_path`].
///
/// An empty path becomes `.` (OpenSSH turns `host:` into `.`). ` --` is added when a
/// path would reach the remote getopt starting with `-`. OpenSSH checks only its single
/// path's first byte; we check every path (a GNU getopt permutes arguments) and also a
/// user-escaped `\-`, so no path can turn into an option.
pub fn build(program: &str, direction: Direction, flags: &Flags, paths: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(program.len() + 16 + paths.iter().map(|p| p.len() + 1).sum::<usize>());
    out.extend_from_slice(program.as_bytes());
    let options = [
        (flags.verbose, " -v"),
        (flags.recursive, " -r"),
        (flags.preserve, " -p"),
        (flags.target_dir, " -d"),
    ];
    for (on, option) in options {
        if on {
            out.extend_from_slice(option.as_bytes());
        }
    }
    out.extend_from_slice(match direction {
        Direction::Sink => b" -t",
        Direction::Source => b" -f",
    });
    if paths.iter().any(|p| matches!(p, [b'-', ..] | [b'\\', b'-', ..])) {
        out.extend_from_slice(b" --");
    }
    for path in paths {
        out.push(b' ');
        if path.is_empty() {
            out.push(b'.');
        } else {
            out.extend_from_slice(&quote_path(path));
        }
    }
    out
}

/// Quotes one user-typed remote path for a POSIX shell (sh, dash, bash), keeping glob
/// characters, the user's backslash escapes and a leading `~`/`~user` active.
///
/// These are the semantics of OpenSSH's SFTP mode, kept on the SCP wire:
/// - `*`, `?`, `[`, `]` stay unquoted so the remote shell globs; a `!` or `^` right
///   after an unquoted `[` also stays, so `[!a]` still negates.
/// - A backslash and the byte after it pass through (the user's own escape, `a\ b`,
///   `\*`); a backslash before a newline becomes a quoted newline, since
///   backslash-newline would be a line continuation. A lone trailing backslash becomes
///   `\\`.
/// - A leading `~` or `~user` (up to the first `/`) stays unquoted when `user` is made of
///   `[A-Za-z0-9._-]`, does not start with `-` and is not all digits (bash reads `~-` and
///   `~1` as directory-stack references).
/// - Letters, digits, `-_./,:@%+=` and bytes >= 0x80 stay as they are, except a leading
///   `=` (zsh expands `=cmd` to a program's path).
/// - A newline becomes `'\n'` (single-quoted); every other byte gets a backslash.
///
/// An empty path becomes `''`. A NUL byte cannot reach a shell at all: callers must not
/// pass one (it is escaped like any other byte, but the command line would be cut there).
pub fn quote_path(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b"''".to_vec();
    }
    let mut out = Vec::with_capacity(path.len() + path.len() / 4 + 2);
    let mut rest = path;
    if let Some(after) = path.strip_prefix(b"~") {
        let end = after.iter().position(|&b| b == b'/').unwrap_or(after.len());
        let (user, tail) = after.split_at(end);
        if is_tilde_user(user) {
            out.push(b'~');
            out.extend_from_slice(user);
            rest = tail;
        }
    }
    let mut after_bracket = false;
    let mut i = 0;
    while let Some(&b) = rest.get(i) {
        i += 1;
        let follows_bracket = std::mem::replace(&mut after_bracket, false);
        match b {
            b'\\' => match rest.get(i) {
                Some(b'\n') => {
                    out.extend_from_slice(b"'\n'");
                    i += 1;
                }
                Some(&next) => {
                    out.push(b'\\');
                    out.push(next);
                    i += 1;
                }
                None => out.extend_from_slice(b"\\\\"),
            },
            b'[' => {
                out.push(b'[');
                after_bracket = true;
            }
            b'*' | b'?' | b']' => out.push(b),
            b'!' | b'^' if follows_bracket => out.push(b),
            b'\n' => out.extend_from_slice(b"'\n'"),
            b'=' if out.is_empty() => out.extend_from_slice(b"\\="),
            _ if is_plain(b) => out.push(b),
            _ => {
                out.push(b'\\');
                out.push(b);
            }
        }
    }
    out
}

/// Bytes no POSIX shell gives a meaning to, anywhere in a word.
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_./,:@%+=".contains(&b) || b >= 0x80
}

/// Whether `~user` is a home-directory reference both sides agree on.
fn is_tilde_user(user: &[u8]) -> bool {
    if user.is_empty() {
        return true;
    }
    let valid = user.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    valid && !user.starts_with(b"-") && !user.iter().all(u8::is_ascii_digit)
}

/// One byte of a word, and whether quoting made it literal.
#[derive(Clone, Copy, Debug)]
struct Char {
    byte: u8,
    quoted: bool,
}

/// One word of a command line, as the shell's quote removal would leave it.
#[derive(Debug, Default)]
struct Word {
    chars: Vec<Char>,
    /// How many bytes preceded the first quote character (even `''`), which stops `~`
    /// expansion if it falls inside the tilde prefix.
    first_quote: Option<usize>,
}

impl Word {
    fn push(&mut self, byte: u8, quoted: bool) {
        self.chars.push(Char { byte, quoted });
    }

    fn mark_quote(&mut self) {
        self.first_quote.get_or_insert(self.chars.len());
    }
}

fn literal(word: &[Char]) -> Vec<u8> {
    word.iter().map(|c| c.byte).collect()
}

/// Parses a command line a client sent, with no shell.
///
/// Words split as in a POSIX shell: unquoted spaces and tabs separate; `'...'` is
/// literal; inside `"..."` a backslash escapes only `` $ ` " \ `` and newline; outside
/// quotes a backslash escapes the next byte and backslash-newline disappears. Refused
/// ([`CommandError::UnsafeCharacter`]): NUL anywhere; unquoted `` ; & | < > ( ) $ ` ``
/// and newline; `$` and backtick inside double quotes; `#` starting a word (a shell
/// comment). A backslash ending the line is [`CommandError::UnterminatedQuote`]
/// (dash keeps it, bash may drop it). Unquoted `{ } ! ^ =` and a `~` that does not start
/// a word are literal, as dash reads them: no brace expansion, no `~-`/`~+`/`~N`, no
/// `a=~` (bash-only expansions; rscp's own client quotes all of these anyway).
///
/// Options are read as a POSIX getopt reads them: clusters (`-pt`), `--` ends them, so
/// does the first non-option word (a lone `-` is a path); only `t f r p d v` are known,
/// so `-S`, `-o`, `-F` and the like are refused.
pub fn parse(line: &[u8]) -> Result<RemoteCommand, CommandError> {
    if line.len() > MAX_LINE {
        return Err(CommandError::TooLong);
    }
    let mut words = split_words(line)?.into_iter();
    let program = words.next().ok_or(CommandError::Empty)?;
    if !is_scp_program(&program.chars) {
        return Err(CommandError::NotScp(literal(&program.chars)));
    }

    let mut flags = Flags::default();
    let (mut sink, mut source) = (false, false);
    let mut paths = Vec::new();
    let mut options_done = false;
    for word in words {
        if !options_done {
            // getopt sees words after quote removal, so `"-t"` is an option too.
            let text = literal(&word.chars);
            if text == b"--" {
                options_done = true;
                continue;
            }
            match text.strip_prefix(b"-") {
                Some(letters) if !letters.is_empty() => {
                    for &letter in letters {
                        match letter {
                            b't' => sink = true,
                            b'f' => source = true,
                            b'r' => flags.recursive = true,
                            b'p' => flags.preserve = true,
                            b'd' => flags.target_dir = true,
                            b'v' => flags.verbose = true,
                            other => return Err(CommandError::UnsupportedOption(other)),
                        }
                    }
                    continue;
                }
                // A lone `-` is an operand for getopt.
                _ => options_done = true,
            }
        }
        paths.push(remote_path(&word));
    }

    let direction = match (sink, source) {
        (true, false) => Direction::Sink,
        (false, true) => Direction::Source,
        (true, true) => return Err(CommandError::BothSinkAndSource),
        (false, false) => return Err(CommandError::NeitherSinkNorSource),
    };
    if paths.is_empty() {
        return Err(CommandError::MissingPath);
    }
    Ok(RemoteCommand { direction, flags, paths })
}

/// `scp`, `rscp`, or an absolute path ending in one of them, with no glob a shell
/// would expand.
fn is_scp_program(word: &[Char]) -> bool {
    if word.iter().any(|c| !c.quoted && matches!(c.byte, b'*' | b'?' | b'[')) {
        return false;
    }
    let text = literal(word);
    let name = match text.iter().rposition(|&b| b == b'/') {
        Some(slash) if text.starts_with(b"/") => text.get(slash + 1..).unwrap_or_default(),
        Some(_) => return false,
        None => &text[..],
    };
    name == b"scp" || name == b"rscp"
}

/// Splits `line` into words the way a POSIX shell would, refusing what needs a shell.
fn split_words(line: &[u8]) -> Result<Vec<Word>, CommandError> {
    let mut words: Vec<Word> = Vec::new();
    let mut word = Word::default();
    // A word exists once it has a byte or a quote (`''` is an empty word).
    let mut in_word = false;
    let mut i = 0;

    while let Some(&b) = line.get(i) {
        i += 1;
        match b {
            0 => return Err(CommandError::UnsafeCharacter(0)),
            b' ' | b'\t' => {
                if in_word {
                    finish_word(&mut words, &mut word)?;
                    in_word = false;
                }
            }
            b'\\' => match line.get(i) {
                // Line continuation: both bytes vanish.
                Some(b'\n') => i += 1,
                Some(0) => return Err(CommandError::UnsafeCharacter(0)),
                Some(&next) => {
                    word.mark_quote();
                    word.push(next, true);
                    in_word = true;
                    i += 1;
                }
                // dash keeps a backslash that ends the input, bash sometimes drops it:
                // with no answer both agree on, refuse it.
                None => return Err(CommandError::UnterminatedQuote),
            },
            b'\'' => {
                in_word = true;
                word.mark_quote();
                loop {
                    let c = *line.get(i).ok_or(CommandError::UnterminatedQuote)?;
                    i += 1;
                    match c {
                        b'\'' => break,
                        0 => return Err(CommandError::UnsafeCharacter(0)),
                        _ => word.push(c, true),
                    }
                }
            }
            b'"' => {
                in_word = true;
                word.mark_quote();
                loop {
                    let c = *line.get(i).ok_or(CommandError::UnterminatedQuote)?;
                    i += 1;
                    match c {
                        b'"' => break,
                        // Expansions still happen inside double quotes.
                        0 | b'$' | b'`' => return Err(CommandError::UnsafeCharacter(c)),
                        b'\\' => match line.get(i) {
                            Some(b'\n') => i += 1,
                            Some(&e @ (b'$' | b'`' | b'"' | b'\\')) => {
                                word.push(e, true);
                                i += 1;
                            }
                            // Any other backslash is literal inside double quotes.
                            _ => word.push(b'\\', true),
                        },
                        _ => word.push(c, true),
                    }
                }
            }
            // A shell would drop the rest of the line as a comment.
            b'#' if !in_word => return Err(CommandError::UnsafeCharacter(b'#')),
            b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' | b'$' | b'`' | b'\n' => {
                return Err(CommandError::UnsafeCharacter(b));
            }
            _ => {
                word.push(b, false);
                in_word = true;
            }
        }
    }
    if in_word {
        finish_word(&mut words, &mut word)?;
    }
    Ok(words)
}

fn finish_word(words: &mut Vec<Word>, word: &mut Word) -> Result<(), CommandError> {
    if words.len() >= MAX_WORDS {
        return Err(CommandError::TooManyPaths);
    }
    words.push(std::mem::take(word));
    Ok(())
}

fn remote_path(word: &Word) -> RemotePath {
    let (tilde, rest) = split_tilde(word);
    let globs = rest.iter().any(|c| !c.quoted && matches!(c.byte, b'*' | b'?' | b'['));
    let pattern = globs.then(|| {
        let mut pattern = Vec::with_capacity(rest.len() + 4);
        for c in rest {
            if c.quoted && matches!(c.byte, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(c.byte);
        }
        pattern
    });
    RemotePath { tilde, literal: literal(rest), pattern }
}

/// Splits off an unquoted `~user` prefix the way sh finds one: up to the first `/`
/// (or the end), with no quoting at all in it, not even `''`.
fn split_tilde(word: &Word) -> (Option<Vec<u8>>, &[Char]) {
    let all = &word.chars[..];
    let Some((first, after)) = all.split_first() else {
        return (None, all);
    };
    if first.byte != b'~' || first.quoted {
        return (None, all);
    }
    let end = after.iter().position(|c| c.byte == b'/').unwrap_or(after.len());
    let (user, tail) = after.split_at(end);
    // The prefix is `~` plus the user: a quote at or before its end spoils it.
    let quoted_prefix = word.first_quote.is_some_and(|q| q <= end + 1);
    let user = literal(user);
    if quoted_prefix || !is_tilde_user(&user) {
        return (None, all);
    }
    (Some(user), tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Direction, flags, paths, expected command line.
    type BuildCase = (Direction, Flags, &'static [&'static [u8]], &'static [u8]);

    /// Path typed, expected tilde, literal and pattern.
    type PathCase = (&'static [u8], Option<&'static [u8]>, &'static [u8], Option<&'static [u8]>);

    // ---- build ----

    fn flags(verbose: bool, recursive: bool, preserve: bool, target_dir: bool) -> Flags {
        Flags { verbose, recursive, preserve, target_dir }
    }

    #[test]
    fn build_matches_openssh_order() {
        let none = Flags::default();
        let cases: &[BuildCase] = &[
            (Direction::Sink, flags(false, false, true, false), &[b"dest.txt"], b"scp -p -t dest.txt"),
            (Direction::Sink, flags(false, true, true, false), &[b"."], b"scp -r -p -t ."),
            (Direction::Sink, flags(false, false, false, true), &[b"tree/f1"], b"scp -d -t tree/f1"),
            (Direction::Sink, none.clone(), &[b"-dash.txt"], b"scp -t -- -dash.txt"),
            (Direction::Sink, flags(true, false, true, false), &[b"v.txt"], b"scp -v -p -t v.txt"),
            (Direction::Source, flags(false, true, true, false), &[b"tree"], b"scp -r -p -f tree"),
            (Direction::Source, flags(true, true, true, true), &[b"a"], b"scp -v -r -p -d -f a"),
            (Direction::Sink, none.clone(), &[b""], b"scp -t ."),
            (Direction::Source, none.clone(), &[b"a", b"-b"], b"scp -f -- a -b"),
            (Direction::Sink, none.clone(), &[b"\\-x"], b"scp -t -- \\-x"),
            (Direction::Sink, none.clone(), &[b"my file"], b"scp -t my\\ file"),
            (Direction::Sink, none, &[], b"scp -t"),
        ];
        for (direction, flags, paths, want) in cases {
            let got = build("scp", *direction, flags, paths);
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(&got));
        }
    }

    // ---- quote_path, by example ----

    #[test]
    fn quote_examples() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"my file.txt", b"my\\ file.txt"),
            (b"$(touch /tmp/x)", b"\\$\\(touch\\ /tmp/x\\)"),
            (b"`id`", b"\\`id\\`"),
            (b"*.txt", b"*.txt"),
            (b"~/x y", b"~/x\\ y"),
            (b"~", b"~"),
            (b"~bob/a", b"~bob/a"),
            (b"~bob", b"~bob"),
            (b"~b$b/a", b"\\~b\\$b/a"),
            (b"~-/a", b"\\~-/a"),
            (b"~1/a", b"\\~1/a"),
            (b"a~b", b"a\\~b"),
            (b"a\\ b", b"a\\ b"),
            (b"\\*", b"\\*"),
            (b"abc\\", b"abc\\\\"),
            (b"a\\\nb", b"a'\n'b"),
            (b"it's", b"it\\'s"),
            (b"a\nb", b"a'\n'b"),
            (b"a\tb", b"a\\\tb"),
            (b"{a,b}", b"\\{a,b\\}"),
            (b"[!a]x", b"[!a]x"),
            (b"a!b", b"a\\!b"),
            (b"=ls", b"\\=ls"),
            (b"a=b", b"a=b"),
            (b"-_./,:@%+=", b"-_./,:@%+="),
            ("caf\u{e9}".as_bytes(), "caf\u{e9}".as_bytes()),
            (b"\xff", b"\xff"),
            (b"", b"''"),
        ];
        for (path, want) in cases {
            let got = quote_path(path);
            assert_eq!(got, *want, "{} -> {}", String::from_utf8_lossy(path), String::from_utf8_lossy(&got));
        }
    }

    // ---- quote_path, proved against real shells ----

    static UNIQUE: AtomicUsize = AtomicUsize::new(0);

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("rscp-command-{}-{tag}-{n}", std::process::id()));
            std::fs::create_dir(&path).expect("create temp dir");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Shells to prove the quoting against, with the locales to run them in.
    fn shells() -> Vec<(&'static str, &'static str)> {
        let mut shells = vec![("/bin/sh", "C")];
        if Path::new("/bin/bash").exists() {
            shells.push(("/bin/bash", "C"));
            shells.push(("/bin/bash", "C.UTF-8"));
        }
        if Path::new("/bin/dash").exists() {
            shells.push(("/bin/dash", "C"));
        }
        shells
    }

    /// Runs `script` with `shell -c` in `cwd` and splits its NUL-terminated output.
    fn run(shell: &str, locale: &str, script: &[u8], cwd: &Path, home: &Path) -> Vec<Vec<u8>> {
        let out = Command::new(shell)
            .arg("-c")
            .arg(OsStr::from_bytes(script))
            .current_dir(cwd)
            .env("HOME", home)
            .env("LC_ALL", locale)
            .output()
            .expect("run shell");
        assert!(
            out.status.success(),
            "{shell} failed on {}: {}",
            String::from_utf8_lossy(script),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut fields: Vec<Vec<u8>> = out.stdout.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
        assert_eq!(fields.pop(), Some(Vec::new()), "output not NUL-terminated");
        fields
    }

    /// Has every shell print `paths` through `build`, in an empty directory, and checks
    /// it gets `want` back and that nothing ran. Returns nothing; panics on a mismatch.
    fn assert_shell_yields(paths: &[&[u8]], want: &[Vec<u8>], marker: &Path, cwd: &Path, home: &Path) {
        let line = build("printf '%s\\0'", Direction::Sink, &Flags::default(), paths);
        for (shell, locale) in shells() {
            let mut got = run(shell, locale, &line, cwd, home);
            assert_eq!(got.first().map(Vec::as_slice), Some(&b"-t"[..]));
            got.remove(0);
            if got.first().map(Vec::as_slice) == Some(&b"--"[..]) {
                got.remove(0);
            }
            for (g, w) in got.iter().zip(want) {
                assert_eq!(
                    g,
                    w,
                    "{shell} {locale}: got {:?} want {:?} from {:?}",
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(w),
                    String::from_utf8_lossy(&line)
                );
            }
            assert_eq!(got.len(), want.len(), "{shell} {locale}: {}", String::from_utf8_lossy(&line));
            assert!(!marker.exists(), "{shell} ran a command from {}", String::from_utf8_lossy(&line));
            let left = std::fs::read_dir(cwd).expect("read cwd").count();
            assert_eq!(left, 0, "{shell} created a file from {}", String::from_utf8_lossy(&line));
        }
    }

    /// Hostile paths with no backslash and no leading tilde: each must reach the remote
    /// program byte for byte. `MARKER` is replaced by a file path that must never appear.
    fn hostile() -> Vec<Vec<u8>> {
        let raw: &[&[u8]] = &[
            b"plain.txt",
            b"my file.txt",
            b"  two  spaces  ",
            b"tab\there",
            b"new\nline",
            b"\n",
            b"\n\n",
            b"trailing\n",
            b"it's",
            b"'",
            b"''",
            b"\"dq\"",
            b"\"",
            b"$HOME",
            b"${HOME}",
            b"$IFS",
            b"$((1+1))",
            b"$'x'",
            b"$(touch MARKER)",
            b"`touch MARKER`",
            b"a;touch MARKER",
            b";touch MARKER;",
            b"a|touch MARKER",
            b"a&touch MARKER&",
            b"a&&touch MARKER",
            b"a||touch MARKER",
            b"a\ntouch MARKER\n",
            b"x>MARKER",
            b">MARKER",
            b"x<y",
            b"(touch MARKER)",
            b"{touch,MARKER}",
            b"{a,b}",
            b"{a..c}",
            b"!",
            b"!!",
            b"a!b",
            b"!touch",
            b"#comment",
            b"a#b",
            b"a~b",
            b"a~",
            b"=ls",
            b"a=b",
            b"IFS=x",
            b"-rf",
            b"--",
            b"-",
            b"^caret",
            b"a^b",
            b"%1",
            b"a\rb",
            b"\x1b]0;title\x07",
            b"\x01\x02\x7f",
            b"\xff\xfe",
            "caf\u{e9} \u{1f600}".as_bytes(),
            b"-_./,:@%+=",
            b"*",
            b"?",
            b"[",
            b"]",
            b"[a]",
            b"[!a]",
            b"*.txt",
            b"a b*",
            b"$*",
            b"`*`",
            b"~$(touch MARKER)",
            b"~bob;touch MARKER",
            b"~-",
            b"~+",
            b"~1",
            b"~~",
            b"a'\n'b",
            b"'\\''",
        ];
        raw.iter().filter(|p| !p.contains(&b'\\')).map(|p| p.to_vec()).collect()
    }

    fn with_marker(path: &[u8], marker: &Path) -> Vec<u8> {
        let marker = marker.as_os_str().as_bytes();
        let mut out = Vec::new();
        let mut rest = path;
        while let Some(at) = rest.windows(6).position(|w| w == b"MARKER") {
            out.extend_from_slice(rest.get(..at).unwrap_or_default());
            out.extend_from_slice(marker);
            rest = rest.get(at + 6..).unwrap_or_default();
        }
        out.extend_from_slice(rest);
        out
    }

    struct Scene {
        _root: TempDir,
        cwd: PathBuf,
        home: PathBuf,
        marker: PathBuf,
    }

    fn scene(tag: &str) -> Scene {
        let root = TempDir::new(tag);
        let cwd = root.0.join("cwd");
        let home = root.0.join("home");
        std::fs::create_dir(&cwd).expect("cwd");
        std::fs::create_dir(&home).expect("home");
        let marker = root.0.join("MARKER");
        Scene { cwd, home, marker, _root: root }
    }

    #[test]
    fn shell_sees_hostile_paths_literally() {
        let s = scene("hostile");
        let paths: Vec<Vec<u8>> = hostile().iter().map(|p| with_marker(p, &s.marker)).collect();
        // One at a time, so a failure names its path...
        for path in &paths {
            assert_shell_yields(&[path], std::slice::from_ref(path), &s.marker, &s.cwd, &s.home);
        }
        // ...and all at once, as a multi-path source command.
        let refs: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
        assert_shell_yields(&refs, &paths, &s.marker, &s.cwd, &s.home);
    }

    #[test]
    fn shell_honours_user_escapes() {
        let s = scene("escapes");
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\\ b", b"a b"),
            (b"\\*", b"*"),
            (b"\\*.txt", b"*.txt"),
            (b"a\\\\b", b"a\\b"),
            (b"abc\\", b"abc\\"),
            (b"\\", b"\\"),
            (b"a\\\nb", b"a\nb"),
            (b"\\~/x", b"~/x"),
            (b"\\$(touch MARKER)", b"$(touch MARKER)"),
            (b"\\'", b"'"),
            (b"\\-x", b"-x"),
            (b"\\=ls", b"=ls"),
            (b"\\\xc3\xa9", b"\xc3\xa9"),
        ];
        for (path, want) in cases {
            let path = with_marker(path, &s.marker);
            let want = with_marker(want, &s.marker);
            assert_shell_yields(&[&path], &[want], &s.marker, &s.cwd, &s.home);
        }
    }

    #[test]
    fn shell_still_globs() {
        let s = scene("glob");
        for name in ["a.txt", "b.txt", "c.dat", "*star"] {
            std::fs::write(s.cwd.join(name), b"").expect("create file");
        }
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"*.txt", &[b"a.txt", b"b.txt"]),
            (b"?.txt", &[b"a.txt", b"b.txt"]),
            (b"[ab].txt", &[b"a.txt", b"b.txt"]),
            (b"[!a].txt", &[b"b.txt"]),
            (b"[a-c].*", &[b"a.txt", b"b.txt", b"c.dat"]),
            (b"\\**", &[b"*star"]),
            (b"\\*.txt", &[b"*.txt"]),
            (b"*.none", &[b"*.none"]),
        ];
        for (shell, locale) in shells() {
            for (path, want) in cases {
                let line = quote_path(path);
                let mut script = b"printf '%s\\0' ".to_vec();
                script.extend_from_slice(&line);
                let got = run(shell, locale, &script, &s.cwd, &s.home);
                assert_eq!(got, *want, "{shell}: {}", String::from_utf8_lossy(&line));
            }
        }
    }

    #[test]
    fn shell_expands_tilde() {
        let s = scene("tilde");
        let home = s.home.as_os_str().as_bytes();
        let cases: &[(&[u8], &[u8])] =
            &[(b"~", b""), (b"~/", b"/"), (b"~/x y", b"/x y"), (b"~/$(touch MARKER)", b"/$(touch MARKER)")];
        for (path, tail) in cases {
            let path = with_marker(path, &s.marker);
            let mut want = home.to_vec();
            want.extend_from_slice(&with_marker(tail, &s.marker));
            assert_shell_yields(&[&path], &[want], &s.marker, &s.cwd, &s.home);
        }
    }

    /// A small deterministic generator, so the property tests need no crate.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn byte(&mut self) -> u8 {
            (self.next() & 0xff) as u8
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random paths with no NUL, backslash, glob opener or leading `~`.
    fn random_paths(seed: u64, count: usize) -> Vec<Vec<u8>> {
        let mut rng = Lcg(seed);
        let interesting = b" \t\n'\"$`;&|<>(){}!#~^=-\r\x7f\x80\xff";
        (0..count)
            .map(|_| {
                let len = rng.below(16) as usize;
                let mut path: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = if rng.below(2) == 0 {
                            let i = rng.below(interesting.len() as u64) as usize;
                            interesting.get(i).copied().unwrap_or(b'x')
                        } else {
                            rng.byte()
                        };
                        if matches!(b, 0 | b'\\' | b'*' | b'?' | b'[') { b'x' } else { b }
                    })
                    .collect();
                if path.first() == Some(&b'~') {
                    path.insert(0, b'x');
                }
                path
            })
            .collect()
    }

    #[test]
    fn shell_agrees_on_random_paths() {
        let s = scene("random");
        let paths = random_paths(0x5eed, 600);
        let want: Vec<Vec<u8>> =
            paths.iter().map(|p| if p.is_empty() { b".".to_vec() } else { p.clone() }).collect();
        let refs: Vec<&[u8]> = paths.iter().map(Vec::as_slice).collect();
        assert_shell_yields(&refs, &want, &s.marker, &s.cwd, &s.home);
    }

    // ---- parse ----

    fn path(literal: &[u8]) -> RemotePath {
        RemotePath { tilde: None, literal: literal.to_vec(), pattern: None }
    }

    fn parsed(line: &[u8]) -> RemoteCommand {
        parse(line).unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(line)))
    }

    fn refused(line: &[u8]) -> CommandError {
        match parse(line) {
            Ok(c) => panic!("{:?} accepted as {c:?}", String::from_utf8_lossy(line)),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_what_clients_send() {
        let c = parsed(b"scp -t dest");
        assert_eq!(
            c,
            RemoteCommand { direction: Direction::Sink, flags: Flags::default(), paths: vec![path(b"dest")] }
        );
        // libssh2
        let c = parsed(b"scp -pt /tmp/x");
        assert_eq!(
            (c.direction, c.flags.preserve, &c.paths[..]),
            (Direction::Sink, true, &[path(b"/tmp/x")][..])
        );
        // WinSCP
        let c = parsed(b"scp -r -p -d -t \"my dir\"");
        assert_eq!(c.flags, flags(false, true, true, true));
        assert_eq!(c.paths, vec![path(b"my dir")]);
        let c = parsed(b"/usr/bin/scp -vrpd -f a 'b c' d\\ e");
        assert_eq!(c.direction, Direction::Source);
        assert_eq!(c.flags, flags(true, true, true, true));
        assert_eq!(c.paths, vec![path(b"a"), path(b"b c"), path(b"d e")]);
        assert_eq!(parsed(b"rscp -f x").paths, vec![path(b"x")]);
        assert_eq!(parsed(b"/opt/rscp/bin/rscp -f x").direction, Direction::Source);
        assert_eq!(parsed(b"scp\t-t\t\tx\t").paths, vec![path(b"x")]);
        assert_eq!(parsed(b"  scp  -dt  x  ").flags, flags(false, false, false, true));
        assert_eq!(parsed(b"scp \"-t\" x").direction, Direction::Sink);
    }

    #[test]
    fn options_end_like_getopt() {
        assert_eq!(parsed(b"scp -t -- -x").paths, vec![path(b"-x")]);
        assert_eq!(parsed(b"scp -t -- --").paths, vec![path(b"--")]);
        assert_eq!(parsed(b"scp -t - x").paths, vec![path(b"-"), path(b"x")]);
        let c = parsed(b"scp -f x -r");
        assert_eq!(c.paths, vec![path(b"x"), path(b"-r")]);
        assert!(!c.flags.recursive);
        assert_eq!(parsed(b"scp -t ''").paths, vec![path(b"")]);
    }

    #[test]
    fn refuses_bad_commands() {
        use CommandError as E;
        let cases: &[(&[u8], CommandError)] = &[
            (b"", E::Empty),
            (b" \t ", E::Empty),
            (b"\\\n", E::Empty),
            (b"ls -t x", E::NotScp(b"ls".to_vec())),
            (b"scpx -t x", E::NotScp(b"scpx".to_vec())),
            (b"bin/scp -t x", E::NotScp(b"bin/scp".to_vec())),
            (b"/usr/bin/sc? -t x", E::NotScp(b"/usr/bin/sc?".to_vec())),
            (b"/*/scp -t x", E::NotScp(b"/*/scp".to_vec())),
            (b"FOO=1 scp -t x", E::NotScp(b"FOO=1".to_vec())),
            (b"scp -S /tmp/evil -t x", E::UnsupportedOption(b'S')),
            (b"scp -o ProxyCommand=x -t x", E::UnsupportedOption(b'o')),
            (b"scp -F cfg -t x", E::UnsupportedOption(b'F')),
            (b"scp -tx y", E::UnsupportedOption(b'x')),
            (b"scp -t -3 y", E::UnsupportedOption(b'3')),
            (b"scp x", E::NeitherSinkNorSource),
            (b"scp", E::NeitherSinkNorSource),
            (b"scp -r -p x", E::NeitherSinkNorSource),
            (b"scp -t -f x", E::BothSinkAndSource),
            (b"scp -tf x", E::BothSinkAndSource),
            (b"scp -t", E::MissingPath),
            (b"scp -t --", E::MissingPath),
            (b"scp -t x; rm -rf /", E::UnsafeCharacter(b';')),
            (b"scp -t x && id", E::UnsafeCharacter(b'&')),
            (b"scp -t x | id", E::UnsafeCharacter(b'|')),
            (b"scp -t x > y", E::UnsafeCharacter(b'>')),
            (b"scp -t <y", E::UnsafeCharacter(b'<')),
            (b"scp -t (x)", E::UnsafeCharacter(b'(')),
            (b"scp -t x)", E::UnsafeCharacter(b')')),
            (b"scp -t $(id)", E::UnsafeCharacter(b'$')),
            (b"scp -t $HOME", E::UnsafeCharacter(b'$')),
            (b"scp -t `id`", E::UnsafeCharacter(b'`')),
            (b"scp -t \"$HOME\"", E::UnsafeCharacter(b'$')),
            (b"scp -t \"`id`\"", E::UnsafeCharacter(b'`')),
            (b"scp -t $'x'", E::UnsafeCharacter(b'$')),
            (b"scp -t x\nid", E::UnsafeCharacter(b'\n')),
            (b"scp -t x\n", E::UnsafeCharacter(b'\n')),
            (b"scp -t #x", E::UnsafeCharacter(b'#')),
            (b"scp -t x #y", E::UnsafeCharacter(b'#')),
            (b"scp -t x\0y", E::UnsafeCharacter(0)),
            (b"scp -t 'x\0y'", E::UnsafeCharacter(0)),
            (b"scp -t \"x\0y\"", E::UnsafeCharacter(0)),
            (b"scp -t x\\\0", E::UnsafeCharacter(0)),
            (b"scp -t 'abc", E::UnterminatedQuote),
            (b"scp -t \"abc", E::UnterminatedQuote),
            (b"scp -t \"abc\\\"", E::UnterminatedQuote),
            (b"scp -t \"abc\\", E::UnterminatedQuote),
            (b"scp -t a\\", E::UnterminatedQuote),
            (b"scp -t \\", E::UnterminatedQuote),
        ];
        for (line, want) in cases {
            assert_eq!(refused(line), *want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn bounds_size_and_words() {
        let mut line = b"scp -t ".to_vec();
        line.resize(MAX_LINE, b'a');
        assert_eq!(parsed(&line).paths.len(), 1);
        line.push(b'a');
        assert_eq!(refused(&line), CommandError::TooLong);

        let mut line = b"scp -f".to_vec();
        for _ in 0..MAX_WORDS - 2 {
            line.extend_from_slice(b" x");
        }
        assert_eq!(parsed(&line).paths.len(), MAX_WORDS - 2);
        line.extend_from_slice(b" x");
        assert_eq!(refused(&line), CommandError::TooManyPaths);
        // Empty quoted words count too.
        let mut line = b"scp -f".to_vec();
        for _ in 0..MAX_WORDS {
            line.extend_from_slice(b" ''");
        }
        assert_eq!(refused(&line), CommandError::TooManyPaths);
    }

    #[test]
    fn quoting_forms() {
        let one = |line: &[u8]| {
            let c = parsed(line);
            assert_eq!(c.paths.len(), 1, "{:?}", String::from_utf8_lossy(line));
            c.paths.into_iter().next().expect("one path")
        };
        assert_eq!(one(b"scp -t 'a b'\"c d\"e\\ f"), path(b"a bc de f"));
        assert_eq!(one(b"scp -t '$(id) `id` ; | \\'"), path(b"$(id) `id` ; | \\"));
        assert_eq!(one(b"scp -t \"a\\$b\\`c\\\"d\\\\e\\xf\""), path(b"a$b`c\"d\\e\\xf"));
        assert_eq!(one(b"scp -t \"a\\\nb\""), path(b"ab"));
        assert_eq!(one(b"scp -t a\\\nb"), path(b"ab"));
        assert_eq!(one(b"scp -t 'a\nb'"), path(b"a\nb"));
        assert_eq!(one(b"scp -t \"a\nb\""), path(b"a\nb"));
        assert_eq!(one(b"scp -t a#b"), path(b"a#b"));
        assert_eq!(one(b"scp -t ''#b"), path(b"#b"));
        assert_eq!(one(b"scp -t \\#b"), path(b"#b"));
        assert_eq!(one(b"scp -t {a,b}"), path(b"{a,b}"));
        assert_eq!(one(b"scp -t !x^y=z"), path(b"!x^y=z"));
        assert_eq!(one(b"scp -t a~b"), path(b"a~b"));
        assert_eq!(one(b"scp -t a\rb"), path(b"a\rb"));
        assert_eq!(one(b"scp -t ]"), path(b"]"));
    }

    #[test]
    fn tilde_and_patterns() {
        let one = |line: &[u8]| parsed(line).paths.into_iter().next().expect("one path");
        let rp = |tilde: Option<&[u8]>, literal: &[u8], pattern: Option<&[u8]>| RemotePath {
            tilde: tilde.map(<[u8]>::to_vec),
            literal: literal.to_vec(),
            pattern: pattern.map(<[u8]>::to_vec),
        };
        assert_eq!(one(b"scp -t ~"), rp(Some(b""), b"", None));
        assert_eq!(one(b"scp -t ~/x"), rp(Some(b""), b"/x", None));
        assert_eq!(one(b"scp -t ~bob"), rp(Some(b"bob"), b"", None));
        assert_eq!(one(b"scp -t ~bob/a\\ b"), rp(Some(b"bob"), b"/a b", None));
        assert_eq!(one(b"scp -f ~bob/*.txt"), rp(Some(b"bob"), b"/*.txt", Some(b"/*.txt")));
        assert_eq!(one(b"scp -t '~'/x"), path(b"~/x"));
        assert_eq!(one(b"scp -t \\~/x"), path(b"~/x"));
        assert_eq!(one(b"scp -t ~'bob'/x"), path(b"~bob/x"));
        assert_eq!(one(b"scp -t ~bob'/'x"), path(b"~bob/x"));
        assert_eq!(one(b"scp -t ~-/x"), path(b"~-/x"));
        assert_eq!(one(b"scp -t ~1"), path(b"~1"));
        assert_eq!(one(b"scp -t ~a+b/x"), path(b"~a+b/x"));
        assert_eq!(one(b"scp -t x~"), path(b"x~"));

        assert_eq!(one(b"scp -f *.txt"), rp(None, b"*.txt", Some(b"*.txt")));
        assert_eq!(one(b"scp -f 'a*'b?"), rp(None, b"a*b?", Some(b"a\\*b?")));
        assert_eq!(one(b"scp -f \\[x\\]*"), rp(None, b"[x]*", Some(b"\\[x\\]*")));
        assert_eq!(one(b"scp -f [!a]'\\'"), rp(None, b"[!a]\\", Some(b"[!a]\\\\")));
        assert_eq!(one(b"scp -f \"[x]\""), path(b"[x]"));
        assert_eq!(one(b"scp -f x]"), path(b"x]"));
        assert_eq!(one(b"scp -f 'a b'*"), rp(None, b"a b*", Some(b"a b*")));
    }

    #[test]
    fn round_trips_through_build() {
        let mut paths = hostile();
        paths.extend(random_paths(0xfeed, 2000));
        let directions = [Direction::Sink, Direction::Source];
        let all_flags = [Flags::default(), flags(true, true, true, true), flags(false, true, false, true)];
        for (n, p) in paths.iter().enumerate() {
            let direction = directions.get(n % 2).copied().unwrap_or(Direction::Sink);
            let f = all_flags.get(n % 3).cloned().unwrap_or_default();
            let line = build("scp", direction, &f, &[p]);
            let c = parsed(&line);
            assert_eq!(c.direction, direction);
            assert_eq!(c.flags, f);
            let globs = p.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
            let want_literal = if p.is_empty() { b".".to_vec() } else { p.clone() };
            assert_eq!(c.paths.len(), 1);
            let got = c.paths.first().expect("one path");
            assert_eq!(got.literal, want_literal, "{:?}", String::from_utf8_lossy(&line));
            assert_eq!(got.tilde, None);
            if globs {
                assert!(got.pattern.is_some(), "{:?}", String::from_utf8_lossy(&line));
            } else {
                assert_eq!(got.pattern, None);
            }
        }
        // With user escapes, globs and tilde, the meaning survives.
        let cases: &[PathCase] = &[
            (b"~/x", Some(b""), b"/x", None),
            (b"~/x y", Some(b""), b"/x y", None),
            (b"~bob", Some(b"bob"), b"", None),
            (b"~bob/*.txt", Some(b"bob"), b"/*.txt", Some(b"/*.txt")),
            (b"*.txt", None, b"*.txt", Some(b"*.txt")),
            (b"my dir/*.txt", None, b"my dir/*.txt", Some(b"my dir/*.txt")),
            (b"\\*.txt", None, b"*.txt", None),
            (b"\\[x\\]*", None, b"[x]*", Some(b"\\[x\\]*")),
            (b"$*", None, b"$*", Some(b"$*")),
            (b"[!a]", None, b"[!a]", Some(b"[!a]")),
            (b"a\\ b", None, b"a b", None),
            (b"a\\\\b*", None, b"a\\b*", Some(b"a\\\\b*")),
            (b"abc\\", None, b"abc\\", None),
            (b"a\\\nb", None, b"a\nb", None),
            (b"\\~/x", None, b"~/x", None),
            (b"\\-x", None, b"-x", None),
            (b"", None, b".", None),
        ];
        for (p, tilde, literal, pattern) in cases {
            let line = build("scp", Direction::Source, &Flags::default(), &[p]);
            let c = parsed(&line);
            let want = RemotePath {
                tilde: tilde.map(<[u8]>::to_vec),
                literal: literal.to_vec(),
                pattern: pattern.map(<[u8]>::to_vec),
            };
            assert_eq!(c.paths, vec![want], "{:?}", String::from_utf8_lossy(&line));
        }
    }

    /// Whatever the word splitter accepts, a real shell splits the same way.
    #[test]
    fn parser_agrees_with_shell() {
        let s = scene("split");
        let home = s.home.as_os_str().as_bytes();
        let mut rng = Lcg(7);
        let alphabet = b"ab  \t'''\"\"\"\\\\\\\n#{},!=^~/%\r\x7f\xc3\xa9]-";
        let mut lines = Vec::new();
        let mut wants = Vec::new();
        while lines.len() < 400 {
            let len = 1 + rng.below(24) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| {
                    let i = rng.below(alphabet.len() as u64) as usize;
                    alphabet.get(i).copied().unwrap_or(b'a')
                })
                .collect();
            // bash (not dash) expands `~` after `=` in words shaped like assignments.
            if line.windows(2).any(|w| w == b"=~") {
                continue;
            }
            let Ok(words) = split_words(&line) else {
                continue;
            };
            if words.is_empty() {
                continue;
            }
            let mut want = Vec::new();
            let mut other_user = false;
            for word in &words {
                let p = remote_path(word);
                match p.tilde {
                    None => want.push(literal(&word.chars)),
                    Some(user) if user.is_empty() => {
                        let mut w = home.to_vec();
                        w.extend_from_slice(&p.literal);
                        want.push(w);
                    }
                    Some(_) => other_user = true,
                }
            }
            if !other_user {
                lines.push(line);
                wants.push(want);
            }
        }
        for (shell, locale) in shells() {
            for (line, want) in lines.iter().zip(&wants) {
                // Where bash goes beyond POSIX (brace expansion, `~-` as $OLDPWD), the
                // parser follows dash on purpose.
                let joined: Vec<u8> = line
                    .split(|&b| b == b'\n')
                    .flat_map(|part| part.strip_suffix(b"\\").unwrap_or(part).iter().copied())
                    .collect();
                let bashism = line.contains(&b'{') || joined.windows(2).any(|w| w == b"~-");
                if shell.ends_with("bash") && bashism {
                    continue;
                }
                let mut script = b"printf '%s\\0' ".to_vec();
                script.extend_from_slice(line);
                let got = run(shell, locale, &script, &s.cwd, &s.home);
                assert_eq!(got, *want, "{shell}: {:?}", String::from_utf8_lossy(line));
            }
        }
    }

    #[test]
    fn never_panics_on_noise() {
        let mut rng = Lcg(42);
        let alphabet = b"scp -tfrpdv'\"\\\n\t ~/*?[]$`;#\0\xff";
        for _ in 0..20_000 {
            let len = rng.below(40) as usize;
            let mut line = if rng.below(2) == 0 { b"scp -t ".to_vec() } else { Vec::new() };
            for _ in 0..len {
                let b = if rng.below(4) == 0 {
                    rng.byte()
                } else {
                    let i = rng.below(alphabet.len() as u64) as usize;
                    alphabet.get(i).copied().unwrap_or(b' ')
                };
                line.push(b);
            }
            let _ = parse(&line);
            let _ = quote_path(&line);
            if let Err(e) = parse(&line) {
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn messages_are_one_safe_line() {
        let e = CommandError::NotScp(b"evil\x1b[2J\n\xff".to_vec());
        assert_eq!(e.to_string(), "not an scp command: \"evil\\033[2J\\012\\377\"");
        let long = CommandError::NotScp(vec![b'a'; 1000]);
        assert!(long.to_string().ends_with("aaa...\""));
        assert!(long.to_string().len() < 200);
        assert_eq!(CommandError::UnsupportedOption(b'S').to_string(), "unsupported option -S");
        assert_eq!(CommandError::UnsupportedOption(0x1b).to_string(), "unsupported option -\\033");
        assert_eq!(
            CommandError::UnsafeCharacter(b'\n').to_string(),
            "refusing '\\012' in command line: it needs a shell"
        );
        let all = [
            CommandError::Empty,
            CommandError::TooLong,
            CommandError::NeitherSinkNorSource,
            CommandError::BothSinkAndSource,
            CommandError::MissingPath,
            CommandError::UnsafeCharacter(0),
            CommandError::UnterminatedQuote,
            CommandError::TooManyPaths,
        ];
        for e in all {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.bytes().any(|b| b < 0x20 || b == 0x7f), "{text:?}");
        }
    }
}
