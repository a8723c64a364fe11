//! Which names a server may send back for a download (CVE-2019-6111).
//!
//! For `host:PATTERN` the server chooses the names it sends. This module owns the
//! client-side rule that decides whether such a name is one the user asked for,
//! with OpenSSH scp's semantics: csh-style brace expansion of the request
//! ([`expand_braces`]), reduction of every result to its last path component, then
//! an exact byte match or POSIX `fnmatch(3)` with no flags ([`fnmatch`]).
//!
//! It works on bytes and runs on hostile input (the request and the peer's names):
//! it must never panic, recurse, or take time or memory that grows faster than the
//! bounded output, and it must never accept a name that no requested pattern
//! allows. It does not validate names (`name.rs` does) nor decide when the check
//! applies (OpenSSH skips it for `-r` and `-T`); that is the caller's business.

use std::collections::HashSet;
use std::fmt;

use crate::display::escape;

/// Most patterns one request may expand to.
pub const MAX_EXPANSIONS: usize = 10_000;

/// Most bytes all the patterns of one request may add up to (unless the request
/// itself is longer: a pattern without braces always expands to itself).
pub const MAX_EXPANDED_BYTES: usize = 4 << 20;

/// Why a requested pattern cannot be turned into a filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BraceError {
    /// A `{` without its `}`, or a `}` without its `{`; holds the whole pattern.
    Unbalanced(Vec<u8>),
    /// The expansion would exceed [`MAX_EXPANSIONS`] names or [`MAX_EXPANDED_BYTES`].
    TooManyExpansions,
}

impl fmt::Display for BraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Same wording as OpenSSH's fatal error; the pattern is user input, so
            // control bytes and invalid UTF-8 are escaped before they reach a tty.
            BraceError::Unbalanced(pattern) => {
                write!(f, "invalid brace pattern \"{}\"", escape(pattern))
            }
            BraceError::TooManyExpansions => f.write_str("brace pattern expands to too many names"),
        }
    }
}

impl std::error::Error for BraceError {}

/// The names a download may receive: the last path component of every brace
/// expansion of the requested paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameFilter {
    patterns: Vec<Vec<u8>>,
}

impl NameFilter {
    /// Builds the filter for a requested remote path (bytes as the user typed them after `host:`).
    pub fn from_request(remote_path: &[u8]) -> Result<NameFilter, BraceError> {
        Self::from_requests([remote_path])
    }

    /// Several requested paths (one filter accepting a name if any pattern matches).
    pub fn from_requests<'a>(paths: impl IntoIterator<Item = &'a [u8]>) -> Result<NameFilter, BraceError> {
        let mut seen = HashSet::new();
        let mut patterns = Vec::new();
        for path in paths {
            for expanded in expand_braces(strip_trailing_slashes(path))? {
                // Stripping again lets `{a/,b/}` mean `a` and `b`, as `a/` alone does.
                let last = last_component(strip_trailing_slashes(&expanded));
                // An empty pattern (from "/") could only match an empty name.
                if !last.is_empty() && seen.insert(last.to_vec()) {
                    patterns.push(last.to_vec());
                }
            }
        }
        Ok(NameFilter { patterns })
    }

    /// Whether the peer may send `name`: it equals a pattern byte for byte (as
    /// OpenSSH 9.2+ accepts, so a file named `foo.[1]` works) or a pattern matches it.
    /// A filter without patterns accepts nothing.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.patterns.iter().any(|pattern| pattern == name || fnmatch(pattern, name))
    }

    /// The patterns, deduplicated, in the order the requests expanded to them.
    pub fn patterns(&self) -> &[Vec<u8>] {
        &self.patterns
    }

    /// True when no pattern is left (e.g. the request was "/"): nothing matches.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Drops trailing `/` characters, keeping a lone "/" (as "///" becomes "/").
fn strip_trailing_slashes(path: &[u8]) -> &[u8] {
    let kept = path.iter().rposition(|&b| b != b'/').map_or(1, |i| i + 1);
    path.get(..kept).unwrap_or(path)
}

/// The part after the last `/`, like OpenSSH's `strrchr(pattern, '/')`: a `/`
/// inside brackets counts too, as it does there.
fn last_component(pattern: &[u8]) -> &[u8] {
    match pattern.iter().rposition(|&b| b == b'/') {
        Some(i) => pattern.get(i + 1..).unwrap_or_default(),
        None => pattern,
    }
}

// ---------------------------------------------------------------------------
// Brace expansion

/// Expands csh-style braces: `{a,b}c` gives `ac` and `bc`, in csh order.
///
/// Mirrors OpenSSH's `brace_expand`: groups nest, a lone `{}` is literal, a
/// backslash escapes the next byte (and is kept, since the result is an fnmatch
/// pattern), braces and commas inside a bracket expression are literal, and an
/// unmatched `{` or `}` is an error. Unlike OpenSSH, a `[` that no `]` closes is
/// literal (as fnmatch treats it) rather than an error, and results come in csh
/// order rather than OpenSSH's worklist order.
pub fn expand_braces(pattern: &[u8]) -> Result<Vec<Vec<u8>>, BraceError> {
    let (toks, total) = tokenize(pattern)?;
    let byte_limit = MAX_EXPANDED_BYTES.max(pattern.len());
    if total.count > MAX_EXPANSIONS as u64 || total.bytes > byte_limit as u64 {
        return Err(BraceError::TooManyExpansions);
    }
    Ok(generate(pattern, &toks))
}

/// One piece of a brace pattern; literal runs are ranges of the pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BraceTok {
    /// Literal bytes `pattern[start..end]` (escapes and brackets included).
    Lit { start: usize, end: usize },
    /// `{`, with the number of alternatives up to its `}`.
    Open { alts: usize },
    /// `,` between two alternatives.
    Comma,
    /// `}`
    Close,
}

/// How many names a piece of pattern expands to and how many bytes they total
/// (saturating: anything near `u64::MAX` is rejected anyway).
#[derive(Clone, Copy, Debug)]
struct Tally {
    count: u64,
    bytes: u64,
}

impl Tally {
    /// An empty sequence: one empty name.
    const EMPTY: Tally = Tally { count: 1, bytes: 0 };
    /// No alternatives yet.
    const NONE: Tally = Tally { count: 0, bytes: 0 };

    /// This sequence followed by `next`: every name here times every name there.
    fn then(&mut self, next: Tally) {
        self.bytes =
            self.bytes.saturating_mul(next.count).saturating_add(next.bytes.saturating_mul(self.count));
        self.count = self.count.saturating_mul(next.count);
    }

    /// One more alternative of a group.
    fn or(&mut self, alt: Tally) {
        self.count = self.count.saturating_add(alt.count);
        self.bytes = self.bytes.saturating_add(alt.bytes);
    }
}

/// A `{` whose `}` has not been seen yet.
struct OpenGroup {
    /// Index of its `Open` token, patched with the alternative count at `}`.
    tok: usize,
    alts: usize,
    /// The finished alternatives, summed.
    done: Tally,
    /// The alternative being read.
    current: Tally,
}

/// The tally that the next piece of pattern extends.
fn current<'t>(root: &'t mut Tally, open: &'t mut [OpenGroup]) -> &'t mut Tally {
    match open.last_mut() {
        Some(group) => &mut group.current,
        None => root,
    }
}

/// First pass: splits the pattern into tokens, checks that braces balance and
/// counts the output exactly, all in one left-to-right scan without recursion.
fn tokenize(pattern: &[u8]) -> Result<(Vec<BraceTok>, Tally), BraceError> {
    let unbalanced = || BraceError::Unbalanced(pattern.to_vec());
    let mut toks: Vec<BraceTok> = Vec::new();
    let mut root = Tally::EMPTY;
    let mut open: Vec<OpenGroup> = Vec::new();
    let mut brackets = Brackets::new(pattern);
    let mut i = 0;
    while let Some(&c) = pattern.get(i) {
        let literal_len = match c {
            b'\\' if i + 1 < pattern.len() => 2,
            b'[' => brackets.parse(i).map_or(1, |(_, end)| end - i),
            // OpenSSH (like csh) keeps a lone `{}` for find(1).
            b'{' if pattern.get(i + 1) == Some(&b'}') => 2,
            b'{' => {
                open.push(OpenGroup { tok: toks.len(), alts: 1, done: Tally::NONE, current: Tally::EMPTY });
                toks.push(BraceTok::Open { alts: 1 });
                i += 1;
                continue;
            }
            b',' if !open.is_empty() => {
                if let Some(group) = open.last_mut() {
                    group.done.or(group.current);
                    group.current = Tally::EMPTY;
                    group.alts += 1;
                }
                toks.push(BraceTok::Comma);
                i += 1;
                continue;
            }
            b'}' => {
                // OpenSSH rejects a `}` that closes nothing, too.
                let Some(group) = open.pop() else {
                    return Err(unbalanced());
                };
                let mut sum = group.done;
                sum.or(group.current);
                if let Some(BraceTok::Open { alts }) = toks.get_mut(group.tok) {
                    *alts = group.alts;
                }
                toks.push(BraceTok::Close);
                current(&mut root, &mut open).then(sum);
                i += 1;
                continue;
            }
            _ => 1,
        };
        let end = i.saturating_add(literal_len).min(pattern.len());
        match toks.last_mut() {
            Some(BraceTok::Lit { end: last_end, .. }) if *last_end == i => *last_end = end,
            _ => toks.push(BraceTok::Lit { start: i, end }),
        }
        let bytes = u64::try_from(end - i).unwrap_or(u64::MAX);
        current(&mut root, &mut open).then(Tally { count: 1, bytes });
        i = end;
    }
    if !open.is_empty() {
        return Err(unbalanced());
    }
    Ok((toks, root))
}

/// A group being generated.
struct GenGroup {
    /// Where the group's base (the names before it) starts in the output.
    start: usize,
    /// How many base names there are.
    base_len: usize,
    alts: usize,
    /// Where each alternative started in the output.
    bounds: Vec<usize>,
    /// A copy of the base for the alternatives not started yet.
    base: Vec<Vec<u8>>,
}

/// Second pass: builds the names. Every alternative starts from a copy of the
/// names before its group (the last one takes the original), so a byte is copied
/// only where it ends up in the output; `}` then restores csh order.
fn generate(pattern: &[u8], toks: &[BraceTok]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![Vec::new()];
    // The names the next token extends are `out[cur..]`.
    let mut cur = 0;
    let mut groups: Vec<GenGroup> = Vec::new();
    for tok in toks {
        match *tok {
            BraceTok::Lit { start, end } => {
                let bytes = pattern.get(start..end).unwrap_or_default();
                for name in out.iter_mut().skip(cur) {
                    name.extend_from_slice(bytes);
                }
            }
            BraceTok::Open { alts } => {
                let base = if alts > 1 {
                    out.get(cur..).map(<[Vec<u8>]>::to_vec).unwrap_or_default()
                } else {
                    Vec::new()
                };
                groups.push(GenGroup {
                    start: cur,
                    base_len: out.len().saturating_sub(cur),
                    alts,
                    bounds: vec![cur],
                    base,
                });
            }
            BraceTok::Comma => {
                if let Some(group) = groups.last_mut() {
                    let at = out.len();
                    group.bounds.push(at);
                    if group.bounds.len() >= group.alts {
                        out.append(&mut group.base);
                    } else {
                        out.extend(group.base.iter().cloned());
                    }
                    cur = at;
                }
            }
            BraceTok::Close => {
                if let Some(group) = groups.pop() {
                    interleave(&mut out, &group);
                    cur = group.start;
                }
            }
        }
    }
    out
}

/// Reorders a finished group from alternative-major (every base name with the
/// first alternative, then with the second...) to csh's base-major order.
/// Every base name has the same number of results in a given alternative, so
/// each alternative's run splits into equal blocks, one per base name.
fn interleave(out: &mut Vec<Vec<u8>>, group: &GenGroup) {
    let m = group.base_len;
    if m < 2 || group.bounds.len() < 2 || group.start > out.len() {
        return;
    }
    let mut tail = out.split_off(group.start);
    let ends = group.bounds.iter().skip(1).copied().chain([out.len() + tail.len()]);
    // (offset in `tail`, results per base name) for each alternative.
    let blocks: Vec<(usize, usize)> = group
        .bounds
        .iter()
        .zip(ends)
        .map(|(&from, to)| (from.saturating_sub(group.start), to.saturating_sub(from) / m))
        .collect();
    out.reserve(tail.len());
    for i in 0..m {
        for &(offset, per_base) in &blocks {
            let first = offset + i * per_base;
            if let Some(block) = tail.get_mut(first..first + per_base) {
                out.extend(block.iter_mut().map(std::mem::take));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Bracket expressions, shared by brace expansion and fnmatch

/// A set of bytes, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        if let Some(word) = self.0.get_mut(usize::from(b >> 6)) {
            *word |= 1 << (b & 63);
        }
    }

    fn insert_range(&mut self, lo: u8, hi: u8) {
        // A reversed range (`[z-a]`) is empty.
        for b in lo..=hi {
            self.insert(b);
        }
    }

    fn insert_class(&mut self, class: Class) {
        for b in (0..=u8::MAX).filter(|&b| class(b)) {
            self.insert(b);
        }
    }

    fn invert(&mut self) {
        for word in &mut self.0 {
            *word = !*word;
        }
    }

    fn contains(&self, b: u8) -> bool {
        self.0.get(usize::from(b >> 6)).is_some_and(|word| (word >> (b & 63)) & 1 == 1)
    }
}

/// Membership test of a POSIX character class.
type Class = fn(u8) -> bool;

/// A POSIX character class `[:name:]` at `i`: its predicate (C locale) and the
/// index after it. Unknown names are not classes: their `[` is an ordinary byte.
fn class_at(pat: &[u8], i: usize) -> Option<(Class, usize)> {
    let body = pat.get(i..)?.strip_prefix(b"[:")?;
    let name_len = body.iter().take(8).take_while(|b| b.is_ascii_lowercase()).count();
    let (name, rest) = body.split_at_checked(name_len)?;
    if !rest.starts_with(b":]") {
        return None;
    }
    let class: Class = match name {
        b"alnum" => |b| b.is_ascii_alphanumeric(),
        b"alpha" => |b| b.is_ascii_alphabetic(),
        b"blank" => |b| b == b' ' || b == b'\t',
        b"cntrl" => |b| b.is_ascii_control(),
        b"digit" => |b| b.is_ascii_digit(),
        b"graph" => |b| b.is_ascii_graphic(),
        b"lower" => |b| b.is_ascii_lowercase(),
        b"print" => |b| b.is_ascii_graphic() || b == b' ',
        b"punct" => |b| b.is_ascii_punctuation(),
        // C's isspace includes the vertical tab, unlike is_ascii_whitespace.
        b"space" => |b| b == b' ' || (b'\t'..=b'\r').contains(&b),
        b"upper" => |b| b.is_ascii_uppercase(),
        b"xdigit" => |b| b.is_ascii_hexdigit(),
        _ => return None,
    };
    Some((class, i + 2 + name_len + 2))
}

/// One set member at `i`, a backslash escaping the next byte: (byte, next index).
fn read_member(pat: &[u8], i: usize) -> Option<(u8, usize)> {
    let c = *pat.get(i)?;
    match pat.get(i + 1) {
        Some(&escaped) if c == b'\\' => Some((escaped, i + 2)),
        _ => Some((c, i + 1)),
    }
}

/// Parses the bracket expression opening at `open`: its set and the index after
/// its `]`, or `None` when no `]` closes it (the `[` is then a literal byte).
/// `!` or `^` first negates; a `]` first (after any negation) is a member.
fn parse_bracket(pat: &[u8], open: usize) -> Option<(ByteSet, usize)> {
    let mut i = open + 1;
    let negated = matches!(pat.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut set = ByteSet::default();
    let mut first = true;
    loop {
        let c = *pat.get(i)?;
        if c == b']' && !first {
            break;
        }
        first = false;
        if let Some((class, next)) = class_at(pat, i) {
            set.insert_class(class);
            i = next;
            continue;
        }
        let (lo, next) = read_member(pat, i)?;
        i = next;
        // `-` makes a range unless it is last (`[a-]` holds `a` and `-`) or a class
        // follows: a class is one unit wherever it starts, which `Brackets` relies on.
        let range_end = pat.get(i + 1).is_some_and(|&d| d != b']') && class_at(pat, i + 1).is_none();
        if pat.get(i) == Some(&b'-') && range_end {
            let (hi, next) = read_member(pat, i + 1)?;
            set.insert_range(lo, hi);
            i = next;
        } else {
            set.insert(lo);
        }
    }
    if negated {
        set.invert();
    }
    Some((set, i + 1))
}

/// Parses bracket expressions left to right along one pattern, remembering the
/// first `[` that nothing closes: no later `[` can be closed either, except one
/// that starts a `[:class:]` (the failed scan stepped over that class's `]`).
/// This holds because both scans cut the bytes into the same units (escape
/// pairs, classes, single bytes) and close only on a `]` unit. Without it, a
/// pattern of many `[` would take quadratic time.
#[derive(Debug)]
struct Brackets<'p> {
    pat: &'p [u8],
    unterminated_from: Option<usize>,
    /// Off only in tests, to check the shortcut against full scans.
    memo: bool,
}

impl<'p> Brackets<'p> {
    fn new(pat: &'p [u8]) -> Self {
        Brackets { pat, unterminated_from: None, memo: true }
    }

    /// `parse_bracket` for a `[` at `open`, which must not lie inside anything
    /// this pattern's scan already stepped over (escape pair, bracket expression).
    fn parse(&mut self, open: usize) -> Option<(ByteSet, usize)> {
        let known_open = self.unterminated_from.is_some_and(|from| from < open);
        if self.memo && known_open && class_at(self.pat, open).is_none() {
            return None;
        }
        let parsed = parse_bracket(self.pat, open);
        if parsed.is_none() && self.unterminated_from.is_none() {
            self.unterminated_from = Some(open);
        }
        parsed
    }
}

// ---------------------------------------------------------------------------
// fnmatch

/// One element of a compiled fnmatch pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Byte(u8),
    /// `?`
    Any,
    /// `*` (consecutive stars are one).
    Star,
    Set(ByteSet),
}

impl Tok {
    fn matches(&self, b: u8) -> bool {
        match *self {
            Tok::Byte(want) => b == want,
            Tok::Any => true,
            Tok::Star => false,
            Tok::Set(set) => set.contains(b),
        }
    }
}

fn compile(pattern: &[u8]) -> Vec<Tok> {
    compile_with(Brackets::new(pattern))
}

fn compile_with(mut brackets: Brackets<'_>) -> Vec<Tok> {
    let pattern = brackets.pat;
    let mut toks = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while let Some(&c) = pattern.get(i) {
        i += 1;
        let tok = match c {
            b'*' if toks.last() == Some(&Tok::Star) => continue,
            b'*' => Tok::Star,
            b'?' => Tok::Any,
            b'[' => match brackets.parse(i - 1) {
                Some((set, end)) => {
                    i = end;
                    Tok::Set(set)
                }
                None => Tok::Byte(b'['),
            },
            // A trailing lone backslash matches itself.
            b'\\' => match pattern.get(i) {
                Some(&escaped) => {
                    i += 1;
                    Tok::Byte(escaped)
                }
                None => Tok::Byte(b'\\'),
            },
            _ => Tok::Byte(c),
        };
        toks.push(tok);
    }
    toks
}

/// Whether a path component is a glob pattern: an unescaped `*`, `?` or `[`.
pub fn has_glob(component: &[u8]) -> bool {
    let mut escaped = false;
    for &b in component {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
    }
    false
}

/// A literal path component without its backslash escapes (`a\*b` -> `a*b`).
pub fn unescape(component: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(component.len());
    let mut escaped = false;
    for &b in component {
        if b == b'\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(b);
    }
    out
}

/// POSIX `fnmatch(pattern, name, 0)` on bytes: `*` and `?` match any bytes,
/// including `/` and a leading `.`; `[...]` bracket expressions (with `!`/`^`,
/// ranges, `[:class:]`, backslash escapes); a `[` nothing closes is literal; a
/// backslash escapes the next byte. Time is O(pattern × name) at worst.
pub fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    let toks = compile(pattern);
    let (mut t, mut n) = (0, 0);
    // After a mismatch, retry from the last `*` with it swallowing one more
    // byte; earlier stars never need revisiting, so this cannot go exponential.
    let mut last_star: Option<(usize, usize)> = None;
    loop {
        match toks.get(t) {
            Some(Tok::Star) => {
                t += 1;
                last_star = Some((t, n));
                continue;
            }
            Some(tok) if name.get(n).is_some_and(|&b| tok.matches(b)) => {
                t += 1;
                n += 1;
                continue;
            }
            None if n == name.len() => return true,
            _ => {}
        }
        match last_star {
            Some((star_t, star_n)) if star_n < name.len() => {
                last_star = Some((star_t, star_n + 1));
                t = star_t;
                n = star_n + 1;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_components_and_their_escapes() {
        assert!(has_glob(b"*.txt") && has_glob(b"a?") && has_glob(b"[ab]"));
        assert!(!has_glob(b"plain") && !has_glob(br"a\*b") && !has_glob(br"\[x"));
        assert!(has_glob(br"a\\*"), "an escaped backslash leaves the star active");
        assert_eq!(unescape(br"a\*b\\c"), br"a*b\c".to_vec());
    }

    fn expand(p: &str) -> Vec<String> {
        expand_braces(p.as_bytes())
            .expect("expands")
            .into_iter()
            .map(|v| String::from_utf8(v).expect("utf-8"))
            .collect()
    }

    fn filter(p: &str) -> NameFilter {
        NameFilter::from_request(p.as_bytes()).expect("valid pattern")
    }

    fn patterns(p: &str) -> Vec<Vec<u8>> {
        filter(p).patterns().to_vec()
    }

    fn m(pattern: &str, name: &str) -> bool {
        fnmatch(pattern.as_bytes(), name.as_bytes())
    }

    #[test]
    fn openssh_brace_case() {
        let f = filter("{a,b}.txt");
        assert!(f.matches(b"a.txt"));
        assert!(f.matches(b"b.txt"));
        assert!(!f.matches(b"c.txt"));
        assert!(!f.matches(b"a.txtx"));
        assert!(!f.matches(b""));
    }

    #[test]
    fn star_suffix() {
        let f = filter("*.txt");
        assert!(f.matches(b"x.txt"));
        assert!(f.matches(b".txt"));
        assert!(f.matches(b".hidden.txt"));
        assert!(!f.matches(b"x.txt.bak"));
        assert!(!f.matches(b"xtxt"));
    }

    #[test]
    fn exact_match_beats_brackets() {
        let f = filter("foo.[1]");
        assert!(f.matches(b"foo.[1]"));
        assert!(f.matches(b"foo.1"));
        assert!(!f.matches(b"foo.2"));
        assert!(!f.matches(b"foo.[2]"));
    }

    #[test]
    fn brackets() {
        let f = filter("x[ab]y");
        assert!(f.matches(b"xay"));
        assert!(f.matches(b"xby"));
        assert!(!f.matches(b"xcy"));
        assert!(!f.matches(b"xy"));
        assert!(!f.matches(b"xaby"));
        assert!(m("[a-c]", "b"));
        assert!(!m("[a-c]", "d"));
        assert!(!m("[z-a]", "m"));
        assert!(m("[]]", "]"));
        assert!(m("[]a]", "a"));
        assert!(m("[!]]", "a"));
        assert!(!m("[!]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("[-a]", "-"));
        assert!(m("[]-a]", "_"));
        assert!(m("[\\]]", "]"));
        assert!(m("[a\\-z]", "-"));
        assert!(!m("[a\\-z]", "m"));
        assert!(m("[a-\\z]", "m"));
        assert!(m("[[]", "["));
        assert!(m("[/]", "/"));
    }

    #[test]
    fn negation() {
        for p in ["[!a]", "[^a]"] {
            assert!(m(p, "b"), "{p}");
            assert!(!m(p, "a"), "{p}");
            assert!(!m(p, ""), "{p}");
            assert!(!m(p, "bb"), "{p}");
        }
        assert!(m("[!a-y]", "z"));
        // One byte against the two of a UTF-8 'é'.
        assert!(!m("[!a]", "\u{e9}"));
        assert!(fnmatch(b"[!a]", b"\xff"));
        let f = filter("*.[!o]");
        assert!(f.matches(b"x.c"));
        assert!(!f.matches(b"x.o"));
    }

    #[test]
    fn classes() {
        assert!(m("[[:digit:]]", "7"));
        assert!(!m("[[:digit:]]", "a"));
        assert!(m("x[[:alpha:][:digit:]_]", "x_"));
        assert!(m("[![:space:]]", "a"));
        assert!(!m("[![:space:]]", "\x0b"));
        assert!(m("[[:upper:]]", "Q"));
        // A class cannot end a range: `a`, `-` and the digits.
        assert!(m("[a-[:digit:]]", "-"));
        assert!(m("[a-[:digit:]]", "5"));
        assert!(!m("[a-[:digit:]]", "b"));
        assert!(!m("[[:upper:]]", "q"));
        assert!(!fnmatch(b"[[:print:]]", b"\x80"));
        // Not a known class: `[` `:` `f` `o` and then a literal `]`.
        assert!(m("[[:foo:]]", "f]"));
        // `[:alpha:]` alone is a plain set of `:`, `a`, `l`, `p`, `h`.
        assert!(m("[:alpha:]", "h"));
        assert!(!m("[:alpha:]", "b"));
        // The outer `[` is unterminated, the class-looking part is a set.
        assert!(m("[[:alpha:]", "[p"));
    }

    #[test]
    fn unterminated_bracket_is_literal() {
        assert!(m("a[b", "a[b"));
        assert!(!m("a[b", "ab"));
        assert!(m("[", "["));
        assert!(m("[!", "[!"));
        assert!(m("[]", "[]"));
        assert!(m("[!]", "[!]"));
        assert!(m("*[", "xx["));
        assert!(m("[\\]", "[]"));
        assert!(m("[a[b]", "a"));
        assert!(m("[[a]", "a"));
        assert_eq!(expand("a[b{c,d}"), ["a[bc", "a[bd"]);
    }

    #[test]
    fn escapes_and_wildcards() {
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "x"));
        assert!(m("a\\?", "a?"));
        assert!(!m("a\\?", "ab"));
        assert!(m("\\a", "a"));
        assert!(m("a\\", "a\\"));
        assert!(!m("a\\", "a"));
        assert!(m("\\\\", "\\"));
        assert!(m("?", "/"));
        assert!(m("?", "."));
        assert!(!m("?", ""));
        assert!(m("*", ""));
        assert!(m("*", "a/b"));
        assert!(m("a*b", "a/x/b"));
        assert!(m("**", "x"));
        assert!(m("*?*", "x"));
        assert!(!m("*?*", ""));
        assert!(m("a*", "a"));
        assert!(m("*a", "aaa"));
        assert!(!m("*a", "aab"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn request_reduces_to_last_component() {
        assert_eq!(patterns("dir/sub/*.c"), [b"*.c"]);
        assert_eq!(patterns("~/x.txt"), [b"x.txt"]);
        assert_eq!(patterns("/abs/path"), [b"path"]);
        assert_eq!(patterns("{a/x,b/y}"), [b"x", b"y"]);
        assert_eq!(patterns("a/{x,y/z}"), [b"x", b"z"]);
        // OpenSSH cuts at the last '/', even inside brackets.
        assert_eq!(patterns("a[/]b"), [b"]b"]);
        let f = filter("dir/sub/*.c");
        assert!(f.matches(b"main.c"));
        assert!(!f.matches(b"main.h"));
    }

    #[test]
    fn trailing_slashes() {
        assert_eq!(patterns("dir/"), [b"dir"]);
        assert_eq!(patterns("a/dir///"), [b"dir"]);
        assert_eq!(patterns("{a/,b/}"), [b"a", b"b"]);
        assert!(filter("/").is_empty());
        assert!(filter("///").is_empty());
        assert!(filter("").is_empty());
        assert!(!filter("/").matches(b""));
        assert!(!filter("/").matches(b"x"));
        assert_eq!(strip_trailing_slashes(b"/"), b"/");
        assert_eq!(strip_trailing_slashes(b"//"), b"/");
        assert_eq!(strip_trailing_slashes(b"a//"), b"a");
        assert_eq!(strip_trailing_slashes(b""), b"");
    }

    #[test]
    fn expansion_order_and_nesting() {
        assert_eq!(expand("{a,b}c"), ["ac", "bc"]);
        assert_eq!(expand("{a,{b,c}}"), ["a", "b", "c"]);
        assert_eq!(expand("{a,b}{1,2}"), ["a1", "a2", "b1", "b2"]);
        assert_eq!(
            expand("x{a,b}{1,2}{-,+}"),
            ["xa1-", "xa1+", "xa2-", "xa2+", "xb1-", "xb1+", "xb2-", "xb2+"]
        );
        assert_eq!(expand("{a,b{1,2}c,d}e"), ["ae", "b1ce", "b2ce", "de"]);
        assert_eq!(expand("{{a,b},{c,d}}{1,2}"), ["a1", "a2", "b1", "b2", "c1", "c2", "d1", "d2"]);
        assert_eq!(expand("{a}"), ["a"]);
        assert_eq!(expand("{{{a}}}"), ["a"]);
        assert_eq!(expand("plain"), ["plain"]);
        assert_eq!(expand(""), [""]);
        assert_eq!(expand("a,b"), ["a,b"]);
        let f = filter("dir/{x,{y,z}w}.c");
        assert_eq!(f.patterns(), [b"x.c".as_slice(), b"yw.c", b"zw.c"]);
        assert!(f.matches(b"zw.c"));
        assert!(!f.matches(b"z.c"));
    }

    #[test]
    fn empty_alternatives() {
        assert_eq!(expand("a{,b}"), ["a", "ab"]);
        assert_eq!(expand("a{b,}"), ["ab", "a"]);
        assert_eq!(expand("{,}"), ["", ""]);
        assert_eq!(expand("x{,}{,}"), ["x", "x", "x", "x"]);
        assert_eq!(patterns("a{,b}"), [b"a".as_slice(), b"ab"]);
        assert_eq!(patterns("a{,}"), [b"a"]);
        assert!(filter("{,}").is_empty());
    }

    #[test]
    fn lone_empty_braces_are_literal() {
        assert_eq!(expand("{}"), ["{}"]);
        assert_eq!(expand("a{}b"), ["a{}b"]);
        assert_eq!(expand("{a,{}}"), ["a", "{}"]);
        assert_eq!(expand("{{}}"), ["{}"]);
        assert!(filter("x{}").matches(b"x{}"));
        assert_eq!(expand_braces(b"{}}"), Err(BraceError::Unbalanced(b"{}}".to_vec())));
    }

    #[test]
    fn escaped_braces_are_literal() {
        assert_eq!(expand("\\{a,b\\}"), ["\\{a,b\\}"]);
        let f = filter("\\{a,b\\}");
        assert!(f.matches(b"{a,b}"));
        assert!(!f.matches(b"a"));
        assert_eq!(expand("{a\\,b,c}"), ["a\\,b", "c"]);
        assert_eq!(expand("{a\\}b,c}"), ["a\\}b", "c"]);
        assert!(filter("{a\\}b,c}").matches(b"a}b"));
        assert_eq!(expand("a\\"), ["a\\"]);
        assert_eq!(expand_braces(b"{a\\}"), Err(BraceError::Unbalanced(b"{a\\}".to_vec())));
    }

    #[test]
    fn braces_in_brackets_are_literal() {
        assert_eq!(expand("[{]"), ["[{]"]);
        assert!(filter("[{]").matches(b"{"));
        assert_eq!(expand("[}]"), ["[}]"]);
        assert_eq!(expand("x[{,}]y"), ["x[{,}]y"]);
        assert_eq!(expand("{[,],b}"), ["[,]", "b"]);
        assert_eq!(expand("{a,[}]}"), ["a", "[}]"]);
        assert_eq!(expand("[]{]"), ["[]{]"]);
        assert!(filter("{[,],b}").matches(b","));
        assert_eq!(expand_braces(b"{a[,b}]"), Err(BraceError::Unbalanced(b"{a[,b}]".to_vec())));
    }

    #[test]
    fn unbalanced_braces() {
        for p in ["{a", "a}b", "}", "{", "{a,b", "{a}}", "{{a}", "a{b,c}}d", "{a,b}{"] {
            assert_eq!(
                expand_braces(p.as_bytes()),
                Err(BraceError::Unbalanced(p.as_bytes().to_vec())),
                "{p}"
            );
        }
        let err = NameFilter::from_request(b"{a").expect_err("unbalanced");
        assert_eq!(err.to_string(), "invalid brace pattern \"{a\"");
        let err = NameFilter::from_request(b"a}b").expect_err("unbalanced");
        assert_eq!(err.to_string(), "invalid brace pattern \"a}b\"");
        // The whole request is reported, slashes included.
        let err = NameFilter::from_request(b"dir/{a/").expect_err("unbalanced");
        assert_eq!(err, BraceError::Unbalanced(b"dir/{a".to_vec()));
        let err = NameFilter::from_requests([b"ok".as_slice(), b"x}"]).expect_err("bad");
        assert_eq!(err, BraceError::Unbalanced(b"x}".to_vec()));
    }

    #[test]
    fn error_message_escapes() {
        let err = expand_braces(b"{\x1b[2J\n").expect_err("unbalanced");
        assert_eq!(err.to_string(), "invalid brace pattern \"{\\033[2J\\012\"");
        let err = expand_braces(b"\xff}\x7f").expect_err("unbalanced");
        assert_eq!(err.to_string(), "invalid brace pattern \"\\377}\\177\"");
        let err = expand_braces("{caf\u{e9}".as_bytes()).expect_err("unbalanced");
        assert_eq!(err.to_string(), "invalid brace pattern \"{caf\u{e9}\"");
        assert_eq!(BraceError::TooManyExpansions.to_string(), "brace pattern expands to too many names");
        let boxed: Box<dyn std::error::Error> = Box::new(BraceError::TooManyExpansions);
        assert!(boxed.source().is_none());
    }

    #[test]
    fn too_many_expansions() {
        let p = "{a,b}".repeat(30);
        assert_eq!(expand_braces(p.as_bytes()), Err(BraceError::TooManyExpansions));
        assert_eq!(NameFilter::from_request(p.as_bytes()), Err(BraceError::TooManyExpansions));
        // 2^13 = 8192 is fine, 2^14 = 16384 is not.
        assert_eq!(expand_braces("{a,b}".repeat(13).as_bytes()).expect("ok").len(), 8192);
        assert_eq!(expand_braces("{a,b}".repeat(14).as_bytes()), Err(BraceError::TooManyExpansions));
        // Exactly the limit.
        let alts = vec!["x"; MAX_EXPANSIONS].join(",");
        assert_eq!(expand_braces(format!("{{{alts}}}").as_bytes()).expect("ok").len(), MAX_EXPANSIONS);
        let alts = vec!["x"; MAX_EXPANSIONS + 1].join(",");
        assert_eq!(expand_braces(format!("{{{alts}}}").as_bytes()), Err(BraceError::TooManyExpansions));
        // Few names, too many bytes.
        let long = "y".repeat(MAX_EXPANDED_BYTES / 4);
        assert_eq!(
            expand_braces(format!("{long}{{a,b,c,d,e}}").as_bytes()),
            Err(BraceError::TooManyExpansions)
        );
        // A long pattern without braces still expands to itself.
        let long = vec![b'z'; MAX_EXPANDED_BYTES + 10];
        assert_eq!(expand_braces(&long).expect("ok"), [long]);
        // Huge counts saturate instead of overflowing.
        let p = "{a,b,c,d,e,f,g,h}".repeat(200);
        assert_eq!(expand_braces(p.as_bytes()), Err(BraceError::TooManyExpansions));
        // Unbalanced wins over too many, whatever the order.
        let p = format!("{}{{", "{a,b}".repeat(30));
        assert!(matches!(expand_braces(p.as_bytes()), Err(BraceError::Unbalanced(_))));
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let depth = 200_000;
        let p = format!("{}a{}", "{".repeat(depth), "}".repeat(depth));
        assert_eq!(expand(&p), ["a"]);
        let p = format!("{}a,b{}", "{".repeat(depth), "}".repeat(depth));
        assert_eq!(expand(&p), ["a", "b"]);
        let p = "{a}".repeat(depth);
        assert_eq!(expand(&p), ["a".repeat(depth)]);
        let p = format!("{{a,b}}{}", "{x}".repeat(depth));
        assert_eq!(expand(&p), ["a".to_string() + &"x".repeat(depth), "b".to_string() + &"x".repeat(depth)]);
        let p = "{".repeat(depth);
        assert!(matches!(expand_braces(p.as_bytes()), Err(BraceError::Unbalanced(_))));
        let p = format!("{{{}}}", "{a,b}x,".repeat(2000));
        assert_eq!(expand_braces(p.as_bytes()).expect("ok").len(), 4001);
    }

    #[test]
    fn many_open_brackets_stay_linear() {
        let p = "[".repeat(200_000);
        assert!(fnmatch(p.as_bytes(), p.as_bytes()));
        assert_eq!(expand_braces(p.as_bytes()).expect("ok"), [p.as_bytes().to_vec()]);
        let p = "[:".repeat(100_000);
        assert!(fnmatch(p.as_bytes(), p.as_bytes()));
        let p = format!("[{}", "[:alpha:]".repeat(20_000));
        let name = format!("[{}", "a".repeat(20_000));
        assert!(fnmatch(p.as_bytes(), name.as_bytes()));
        let p = "[!".repeat(100_000) + "x";
        assert!(expand_braces(p.as_bytes()).is_ok());
    }

    #[test]
    fn pathological_star() {
        let name = vec![b'a'; 10_000];
        assert!(!fnmatch(b"*a*a*a*a*a*a*b", &name));
        assert!(fnmatch(b"*a*a*a*a*a*a*a", &name));
        let p = "*a".repeat(500) + "b";
        assert!(!fnmatch(p.as_bytes(), &name));
        assert!(!fnmatch(b"*[a]*?*[!b]*b", &name));
        let f = filter("{*a*a*a*a*b,*a*a*a*a*c}");
        assert!(!f.matches(&name));
    }

    #[test]
    fn raw_bytes() {
        let f = NameFilter::from_request(b"caf\xe9*.txt").expect("ok");
        assert!(f.matches(b"caf\xe9.txt"));
        assert!(f.matches(b"caf\xe9\xff\x00.txt"));
        assert!(!f.matches(b"cafe.txt"));
        assert!(fnmatch(b"?", b"\xff"));
        assert!(fnmatch(b"??", "\u{e9}".as_bytes()));
        assert!(!fnmatch(b"?", "\u{e9}".as_bytes()));
        assert!(fnmatch(b"[\x80-\xff]", b"\x9b"));
        assert!(!fnmatch(b"[\x80-\xff]", b"\x7f"));
        assert!(fnmatch(b"a\x01b", b"a\x01b"));
        assert!(fnmatch(b"*\n*", b"line\nbreak"));
        assert!(fnmatch(b"[\x00]", b"\x00"));
        assert!(NameFilter::from_request(b"\x1b[31m").expect("ok").matches(b"\x1b[31m"));
        let f = NameFilter::from_request(b"{\x01,\xfe}x").expect("ok");
        assert!(f.matches(b"\x01x"));
        assert!(f.matches(b"\xfex"));
        assert!(!f.matches(b"\x02x"));
    }

    #[test]
    fn several_requests() {
        let f = NameFilter::from_requests([b"a/*.c".as_slice(), b"b/{x,y}.h", b"c/x.h", b"/"]).expect("ok");
        assert_eq!(f.patterns(), [b"*.c".to_vec(), b"x.h".to_vec(), b"y.h".to_vec()]);
        assert!(f.matches(b"m.c"));
        assert!(f.matches(b"y.h"));
        assert!(!f.matches(b"z.h"));
        let none = NameFilter::from_requests(std::iter::empty()).expect("ok");
        assert!(none.is_empty());
        assert!(!none.matches(b"anything"));
    }

    /// Small deterministic generator, so the randomized tests need no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, from: &[&'a [u8]]) -> &'a [u8] {
            let i = usize::try_from(self.next() % from.len() as u64).expect("fits");
            from.get(i).copied().expect("in range")
        }

        fn pattern(&mut self, pieces: &[&[u8]], max: u64) -> Vec<u8> {
            let len = self.next() % (max + 1);
            (0..len).flat_map(|_| self.pick(pieces).to_vec()).collect()
        }
    }

    #[test]
    fn bracket_memo_changes_nothing() {
        let pieces: &[&[u8]] = &[
            b"[",
            b"]",
            b"\\",
            b"!",
            b"^",
            b"-",
            b":",
            b"a",
            b"b",
            b"{",
            b"}",
            b",",
            b"*",
            b"[:alpha:]",
            b"[:",
            b":]",
            b"alpha",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200_000 {
            let p = rng.pattern(pieces, 12);
            let plain = compile_with(Brackets { pat: &p, unterminated_from: None, memo: false });
            assert_eq!(compile(&p), plain, "{}", escape(&p));
        }
    }

    /// Expands the first group and recurses, rescanning each result, the way
    /// OpenSSH does (minus its bracket quirks); `None` when unbalanced.
    fn reference_expand(p: &[u8]) -> Option<Vec<Vec<u8>>> {
        let mut i = 0;
        let mut group: Option<(usize, Vec<usize>)> = None;
        let mut depth = 0usize;
        while let Some(&c) = p.get(i) {
            match c {
                b'\\' => i += 1,
                b'[' => {
                    if let Some((_, end)) = parse_bracket(p, i) {
                        i = end;
                        continue;
                    }
                }
                b'{' if p.get(i + 1) == Some(&b'}') => i += 1,
                b'{' => {
                    if group.is_none() {
                        group = Some((i, Vec::new()));
                    }
                    depth += 1;
                }
                b',' if depth == 1 => group.as_mut().expect("open").1.push(i),
                b'}' => {
                    if depth == 0 {
                        return None;
                    }
                    depth -= 1;
                    if depth == 0 {
                        let (start, commas) = group.take().expect("open");
                        let mut cuts = vec![start];
                        cuts.extend(commas);
                        cuts.push(i);
                        let mut out = Vec::new();
                        for w in cuts.windows(2) {
                            let mut q = p[..start].to_vec();
                            q.extend_from_slice(&p[w[0] + 1..w[1]]);
                            q.extend_from_slice(&p[i + 1..]);
                            out.extend(reference_expand(&q)?);
                        }
                        return Some(out);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if depth > 0 { None } else { Some(vec![p.to_vec()]) }
    }

    #[test]
    fn expansion_matches_reference() {
        let pieces: &[&[u8]] = &[b"{", b"}", b",", b"a", b"b", b"[", b"]", b"\\", b"!", b"{}", b"{a,b}"];
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut expanded = 0;
        for _ in 0..100_000 {
            let p = rng.pattern(pieces, 10);
            let ours = expand_braces(&p);
            match reference_expand(&p) {
                Some(want) if want.len() <= MAX_EXPANSIONS => {
                    assert_eq!(ours, Ok(want), "{}", escape(&p));
                    expanded += 1;
                }
                Some(_) => assert_eq!(ours, Err(BraceError::TooManyExpansions)),
                None => assert_eq!(ours, Err(BraceError::Unbalanced(p.clone())), "{}", escape(&p)),
            }
        }
        assert!(expanded > 10_000);
    }

    #[test]
    fn tally_matches_output() {
        let pieces: &[&[u8]] = &[b"{", b"}", b",", b"ab", b"c", b"{x,yz}", b"{,}"];
        let mut rng = Rng(42);
        for _ in 0..20_000 {
            let p = rng.pattern(pieces, 14);
            if let Ok((toks, tally)) = tokenize(&p) {
                if tally.count > MAX_EXPANSIONS as u64 {
                    continue;
                }
                let out = generate(&p, &toks);
                assert_eq!(out.len() as u64, tally.count);
                assert_eq!(out.iter().map(Vec::len).sum::<usize>() as u64, tally.bytes);
            }
        }
    }
}
