//! Command-line flags, parsed exactly like OpenSSH scp's getopt loop over its
//! option string `12346ABCTdfOpqRrstvD:F:J:M:P:S:c:i:l:o:X:`.
//!
//! Options end at the first operand (or `--`); flags cluster (`-rp`), and values
//! join (`-P2222`, `-oPort=2222`) or follow. This module only parses: it must never
//! act on a flag.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// What `--help` adds after the usage text.
pub const HELP: &str = "
Copies files between hosts on a network, like OpenSSH scp, over rscp's own SSH
client; also serves as the remote end (-t/-f) for scp clients.

  -3  copy between two remote hosts through this host (default)
  -R  copy between two remote hosts directly (the source host runs scp)
  -4/-6  IPv4/IPv6 only            -A  forward the agent (for -R)
  -B  batch mode: never prompt     -C  compression
  -c  cipher list                  -F  ssh_config file (none: no file)
  -i  identity file                -J  jump host(s)
  -l  limit bandwidth in Kbit/s    -O  legacy SCP protocol (the only one yet)
  -o  ssh_config option            -P  port
  -p  preserve times and modes     -q  no progress meter or warnings
  -r  recursive                    -S  program to use instead of ssh
  -T  no check of the names the server sends (CVE-2019-6111 check off)
  -v  verbose (repeat for more)    --inplace  write into existing files

The full manual: docs/rscp.md.
";

/// OpenSSH scp's usage text (printed to stderr, exit status 1).
pub const USAGE: &str = "\
usage: scp [-346ABCOpqRrsTv] [-c cipher] [-D sftp_server_path] [-F ssh_config]
           [-i identity_file] [-J destination] [-l limit] [-o ssh_option]
           [-P port] [-S program] [-X sftp_option] source ... target
";

/// Which remote end `-t` / `-f` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteEnd {
    /// `-t`: receive into the target.
    Sink,
    /// `-f`: send the operands.
    Source,
}

/// Every flag OpenSSH scp accepts, plus rscp's `--inplace`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub three_way: bool,
    pub ipv4: bool,
    pub ipv6: bool,
    pub forward_agent: bool,
    pub batch: bool,
    pub compress: bool,
    pub no_name_check: bool,
    pub target_dir: bool,
    pub legacy: bool,
    pub preserve: bool,
    pub quiet: bool,
    pub remote_direct: bool,
    pub recursive: bool,
    pub sftp: bool,
    pub verbose: u8,
    pub remote_end: Option<RemoteEnd>,
    pub cipher: Option<OsString>,
    pub sftp_server: Option<OsString>,
    pub ssh_config: Option<OsString>,
    pub identities: Vec<OsString>,
    pub jump: Option<OsString>,
    /// `-l`, in Kbit/s (1 Kbit = 1024 bits), 1..=104857600.
    pub limit_kbps: Option<u64>,
    pub ssh_options: Vec<OsString>,
    pub port: Option<u16>,
    pub program: Option<OsString>,
    pub sftp_options: Vec<OsString>,
    /// `--inplace`: write into existing files instead of renaming new ones over them.
    pub inplace: bool,
    /// The options passed on to an ssh program (`-S`), in command-line order, as
    /// OpenSSH passes them: `-4 -6 -A -C` verbatim, `-B` as `-oBatchmode=yes`,
    /// `-c -F -i -J -o` with their values as separate words, `-v`, `-q`.
    pub ssh_args: Vec<OsString>,
    pub operands: Vec<OsString>,
}

/// Why the command line was refused, and how OpenSSH reacts to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagError {
    /// Print the optional message (`scp: <msg>`), then the usage text; exit 1.
    Usage(Option<String>),
    /// Print `scp: <msg>`; exit 255 (OpenSSH's `fatal()`).
    Fatal(String),
    /// `--help`: the usage text and a summary on stdout; exit 0.
    Help,
    /// `--version`; exit 0.
    Version,
}

const WITH_VALUE: &[u8] = b"DFJMPSciloX";
const WITHOUT_VALUE: &[u8] = b"12346ABCTdfOpqRrstv";

/// Parses the arguments after the program name.
pub fn parse(args: &[OsString]) -> Result<Flags, FlagError> {
    let mut flags = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        if arg == b"--" {
            i += 1;
            break;
        }
        // rscp's long options, before the first operand (OpenSSH has none).
        match arg {
            b"--help" => return Err(FlagError::Help),
            b"--version" => return Err(FlagError::Version),
            _ => {}
        }
        if arg == b"--inplace" {
            flags.inplace = true;
            i += 1;
            continue;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            break;
        }
        let mut pos = 1;
        while pos < arg.len() {
            let letter = arg[pos];
            pos += 1;
            if WITH_VALUE.contains(&letter) {
                let value = if pos < arg.len() {
                    OsStr::from_bytes(&arg[pos..]).to_os_string()
                } else {
                    i += 1;
                    match args.get(i) {
                        Some(v) => v.clone(),
                        None => {
                            return Err(FlagError::Usage(Some(format!(
                                "option requires an argument -- {}",
                                char::from(letter)
                            ))));
                        }
                    }
                };
                set_value(&mut flags, letter, value)?;
                break;
            } else if WITHOUT_VALUE.contains(&letter) {
                set_flag(&mut flags, letter)?;
            } else {
                return Err(FlagError::Usage(Some(format!("unknown option -- {}", escape_letter(letter)))));
            }
        }
        i += 1;
    }
    flags.operands = args[i..].to_vec();
    Ok(flags)
}

fn escape_letter(letter: u8) -> String {
    rscp_proto::display::escape(&[letter])
}

fn set_flag(flags: &mut Flags, letter: u8) -> Result<(), FlagError> {
    match letter {
        b'4' | b'6' | b'A' | b'C' | b'v' | b'q' => {
            flags.ssh_args.push(format!("-{}", char::from(letter)).into())
        }
        b'B' => flags.ssh_args.push("-oBatchmode=yes".into()),
        _ => {}
    }
    match letter {
        b'1' => {
            return Err(FlagError::Fatal("SSH protocol v.1 is no longer supported".into()));
        }
        b'2' => {}
        b'3' => flags.three_way = true,
        b'4' => flags.ipv4 = true,
        b'6' => flags.ipv6 = true,
        b'A' => flags.forward_agent = true,
        b'B' => flags.batch = true,
        b'C' => flags.compress = true,
        b'T' => flags.no_name_check = true,
        b'd' => flags.target_dir = true,
        b'f' => flags.remote_end = Some(RemoteEnd::Source),
        b't' => flags.remote_end = Some(RemoteEnd::Sink),
        b'O' => flags.legacy = true,
        b'p' => flags.preserve = true,
        b'q' => flags.quiet = true,
        b'R' => flags.remote_direct = true,
        b'r' => flags.recursive = true,
        b's' => flags.sftp = true,
        b'v' => flags.verbose = flags.verbose.saturating_add(1),
        _ => return Err(FlagError::Usage(None)),
    }
    Ok(())
}

fn set_value(flags: &mut Flags, letter: u8, value: OsString) -> Result<(), FlagError> {
    if matches!(letter, b'c' | b'F' | b'i' | b'J' | b'o') {
        flags.ssh_args.push(format!("-{}", char::from(letter)).into());
        flags.ssh_args.push(value.clone());
    }
    match letter {
        b'c' => flags.cipher = Some(value),
        b'D' => flags.sftp_server = Some(value),
        b'F' => flags.ssh_config = Some(value),
        b'i' => flags.identities.push(value),
        b'J' => flags.jump = Some(value),
        b'l' => flags.limit_kbps = Some(parse_limit(&value).ok_or(FlagError::Usage(None))?),
        b'o' => flags.ssh_options.push(value),
        b'P' => flags.port = Some(parse_port(&value)?),
        b'S' => flags.program = Some(value),
        b'X' => {
            check_sftp_option(&value)?;
            flags.sftp_options.push(value);
        }
        // -M is in OpenSSH's option string but has no handler: usage.
        _ => return Err(FlagError::Usage(None)),
    }
    Ok(())
}

/// `-l`: a whole number of Kbit/s in 1..=100 Gbit/s, else usage (OpenSSH).
fn parse_limit(value: &OsStr) -> Option<u64> {
    let text = value.to_str()?;
    let limit: u64 = text.parse().ok()?;
    (1..=104_857_600).contains(&limit).then_some(limit)
}

/// `-P`: a port number 1..=65535 (OpenSSH's `a2port`).
fn parse_port(value: &OsStr) -> Result<u16, FlagError> {
    value.to_str().and_then(|s| s.parse::<u16>().ok()).filter(|&p| p != 0).ok_or_else(|| {
        FlagError::Fatal(format!("bad port \"{}\"\n", rscp_proto::display::escape(value.as_bytes())))
    })
}

/// `-X buffer=N` (1 B..256 KiB) or `-X nrequests=N` (1..262144), else fatal.
fn check_sftp_option(value: &OsStr) -> Result<(), FlagError> {
    let text = value.to_str().unwrap_or_default();
    let valid = match text.split_once('=') {
        Some(("buffer", n)) => parse_size(n).is_some_and(|n| (1..=256 * 1024).contains(&n)),
        Some(("nrequests", n)) => n.parse::<u64>().is_ok_and(|n| (1..=262_144).contains(&n)),
        _ => false,
    };
    if valid { Ok(()) } else { Err(FlagError::Fatal("Invalid -X option".into())) }
}

/// A size with an optional K/M suffix, as OpenSSH's `scan_scaled`.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, scale) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1024),
        b'm' | b'M' => (&text[..text.len() - 1], 1024 * 1024),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Flags, FlagError> {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    fn ok(args: &[&str]) -> Flags {
        parse_str(args).expect("valid flags")
    }

    fn operands(flags: &Flags) -> Vec<&str> {
        flags.operands.iter().map(|o| o.to_str().expect("utf-8")).collect()
    }

    #[test]
    fn each_boolean_flag() {
        type Getter = fn(&Flags) -> bool;
        let cases: &[(&str, Getter)] = &[
            ("-3", |f| f.three_way),
            ("-4", |f| f.ipv4),
            ("-6", |f| f.ipv6),
            ("-A", |f| f.forward_agent),
            ("-B", |f| f.batch),
            ("-C", |f| f.compress),
            ("-T", |f| f.no_name_check),
            ("-d", |f| f.target_dir),
            ("-O", |f| f.legacy),
            ("-p", |f| f.preserve),
            ("-q", |f| f.quiet),
            ("-R", |f| f.remote_direct),
            ("-r", |f| f.recursive),
            ("-s", |f| f.sftp),
            ("-v", |f| f.verbose == 1),
            ("-f", |f| f.remote_end == Some(RemoteEnd::Source)),
            ("-t", |f| f.remote_end == Some(RemoteEnd::Sink)),
            ("--inplace", |f| f.inplace),
        ];
        for (flag, get) in cases {
            assert!(get(&ok(&[flag, "a", "b"])), "{flag}");
            assert!(!get(&ok(&["a", "b"])), "{flag} unset by default");
        }
        assert_eq!(ok(&["-2", "a", "b"]), ok(&["a", "b"]), "-2 is ignored");
        assert_eq!(ok(&["-vvv"]).verbose, 3);
    }

    #[test]
    fn each_flag_with_a_value() {
        let f =
            ok(&["-c", "aes128-ctr", "-D", "/usr/lib/sftp", "-F", "cfg", "-i", "k1", "-ik2", "-J", "jump"]);
        assert_eq!(f.cipher.as_deref(), Some(OsStr::new("aes128-ctr")));
        assert_eq!(f.sftp_server.as_deref(), Some(OsStr::new("/usr/lib/sftp")));
        assert_eq!(f.ssh_config.as_deref(), Some(OsStr::new("cfg")));
        assert_eq!(f.identities, ["k1", "k2"]);
        assert_eq!(f.jump.as_deref(), Some(OsStr::new("jump")));
        let f =
            ok(&["-l", "400", "-oPort=2222", "-o", "User bob", "-P2222", "-S", "./wrap", "-X", "buffer=32k"]);
        assert_eq!(f.limit_kbps, Some(400));
        assert_eq!(f.ssh_options, ["Port=2222", "User bob"]);
        assert_eq!(f.port, Some(2222));
        assert_eq!(f.program.as_deref(), Some(OsStr::new("./wrap")));
        assert_eq!(f.sftp_options, ["buffer=32k"]);
    }

    #[test]
    fn ssh_args_keep_command_line_order() {
        let f = ok(&[
            "-4",
            "-A",
            "-B",
            "-C",
            "-c",
            "aes128-ctr",
            "-F",
            "/dev/null",
            "-i",
            "/tmp/k",
            "-J",
            "jump",
        ]);
        let f2 = ok(&["-oServerAliveInterval=5", "-q", "-P", "2222", "-l", "1000", "-rpv", "a", "b"]);
        assert_eq!(
            f.ssh_args,
            [
                "-4",
                "-A",
                "-oBatchmode=yes",
                "-C",
                "-c",
                "aes128-ctr",
                "-F",
                "/dev/null",
                "-i",
                "/tmp/k",
                "-J",
                "jump"
            ]
        );
        assert_eq!(f2.ssh_args, ["-o", "ServerAliveInterval=5", "-q", "-v"]);
    }

    #[test]
    fn clusters_and_joined_values() {
        let f = ok(&["-rpP2222", "src", "dst"]);
        assert!(f.recursive && f.preserve);
        assert_eq!(f.port, Some(2222));
        assert_eq!(operands(&f), ["src", "dst"]);
        let f = ok(&["-rpo", "Port=1", "a"]);
        assert_eq!(f.ssh_options, ["Port=1"]);
    }

    #[test]
    fn options_end_at_the_first_operand_or_double_dash() {
        let f = ok(&["-r", "src", "-p", "dst"]);
        assert!(!f.preserve);
        assert_eq!(operands(&f), ["src", "-p", "dst"]);
        let f = ok(&["--", "-p", "dst"]);
        assert_eq!(operands(&f), ["-p", "dst"]);
        let f = ok(&["-t", "--", "-dash"]);
        assert_eq!(operands(&f), ["-dash"]);
        let f = ok(&["-", "x"]);
        assert_eq!(operands(&f), ["-", "x"]);
    }

    #[test]
    fn long_options() {
        assert_eq!(parse_str(&["--help"]), Err(FlagError::Help));
        assert_eq!(parse_str(&["-r", "--version"]), Err(FlagError::Version));
        assert_eq!(operands(&ok(&["a", "--help"])), ["a", "--help"], "after an operand it is a file name");
    }

    #[test]
    fn errors_match_openssh() {
        assert_eq!(
            parse_str(&["-1", "a", "b"]),
            Err(FlagError::Fatal("SSH protocol v.1 is no longer supported".into()))
        );
        assert_eq!(parse_str(&["-Z"]), Err(FlagError::Usage(Some("unknown option -- Z".into()))));
        assert_eq!(
            parse_str(&["-P"]),
            Err(FlagError::Usage(Some("option requires an argument -- P".into())))
        );
        assert_eq!(parse_str(&["-M", "x"]), Err(FlagError::Usage(None)));
        assert_eq!(parse_str(&["-P", "abc"]), Err(FlagError::Fatal("bad port \"abc\"\n".into())));
        assert_eq!(parse_str(&["-P", "0"]), Err(FlagError::Fatal("bad port \"0\"\n".into())));
        assert_eq!(parse_str(&["-P", "65536"]), Err(FlagError::Fatal("bad port \"65536\"\n".into())));
        for bad in ["0", "abc", "104857601", "-5"] {
            assert_eq!(parse_str(&["-l", bad]), Err(FlagError::Usage(None)), "-l {bad}");
        }
        assert_eq!(ok(&["-l", "104857600"]).limit_kbps, Some(104_857_600));
        for bad in ["foo", "buffer=0", "buffer=300k", "nrequests=0", "nrequests=x"] {
            assert_eq!(
                parse_str(&["-X", bad]),
                Err(FlagError::Fatal("Invalid -X option".into())),
                "-X {bad}"
            );
        }
        assert!(parse_str(&["-X", "nrequests=64"]).is_ok());
        assert_eq!(parse_str(&["-\u{1b}"]), Err(FlagError::Usage(Some("unknown option -- \\033".into()))));
    }
}
