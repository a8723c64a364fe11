#!/usr/bin/env python3
"""Writes the curated seed corpus under fuzz/seeds/<target>/ (run from fuzz/).

Seeds are small, named inputs: the spec's section 10 vectors, hostile records,
long lines, odd T records, shell-ish command lines and rscp operands. Crashes found by the
fuzzer are added by hand as seeds/<target>/crash-<what> next to these.
"""
import os

SEEDS = {}


def add(target, name, data):
    SEEDS.setdefault(target, {})[name] = data if isinstance(data, bytes) else data.encode()


T = b"T1700000000 0 1800000000 0\n"
V3 = (T + b"D0755 0 tree\n" + T + b"C0600 4 f1\none\n\0" + T + b"D0755 0 sub\n" + T
      + b"C0644 0 empty\n\0" + T + b"C0644 3 f2\nxyz\0E\nE\n")
RECORDS = {
    "v1_upload_p": T + b"C0644 6 a.txt\nhello\n\0",
    "v3_tree_rp": V3,
    "v4_tree_r": b"D0755 0 tree\nC0600 4 f1\none\n\0D0755 0 sub\nC0644 0 empty\n\0C0644 3 f2\nxyz\0E\nE\n",
    "v8_read_error": b"C0644 4 big.bin\n\0\0\0\0\x01scp: local/big.bin: Broken pipe\n",
    "v10_banner": b"Welcome-to-host\nC0644 6 a.txt\nhello\n\0",
    "v10_empty_line": b"\nC0644 6 a.txt\n",
    "v11_dotdot": b"C0644 3 ../x\nabc\0",
    "v11_dot_dir": b"D0755 0 .\n",
    "v11_bad_mode": b"C644 3 a.txt\nabc\0",
    "v11_size_not_delimited": b"C0644 3x a.txt\nabc\0",
    "v11_atime_not_delimited": b"T1 0 2\nC0644 1 a\nx\0",
    "v11_atime_usec": b"T1 0 2 1000000\n",
    "v11_fatal": b"\x02scp: fatal thing\n",
    "v11_warning_then_file": b"\x01scp: warn thing\nC0644 3 a.txt\nabc\0",
    "v11_brace_b": b"C0644 3 b.txt\nabc\0",
    "v11_not_requested_dir": b"D0755 0 notwhatyouasked\nC0644 3 x\nabc\0E\n",
    "v13_newline_name": b"C0644 1 new\\^Jline\nx\0",
    "v14_setuid": b"C4755 6 a\nhello\n\0",
    "v14_no_status": T + b"C0644 6 a\nhello\n",
    "times_twice": T + T + b"C0644 0 a\n\0",
    "times_then_e": b"D0755 0 d\n" + T + b"E\n",
    "times_out_of_range": b"T99999999999999999999 0 1 0\nC0644 0 a\n\0",
    "times_usec_signs": b"T1 +5 2  -0\nC0644 0 a\n\0",
    "times_huge_usec": b"T1 99999999999999999999999 2 0\n",
    "e_at_top": b"E\n",
    "deep_nesting": b"D0755 0 d\n" * 600 + b"E\n" * 600,
    "size_overflow": b"C0644 18446744073709551616 a\n",
    "size_i64_max": b"C0644 9223372036854775807 a\n",
    "size_i64_max_plus1": b"C0644 9223372036854775808 a\n",
    "size_leading_zeros": b"C0644 0000000000000003 a\nabc\0",
    "mode_sticky": b"C7777 0 a\n\0",
    "mode_five_digits": b"C07777 0 a\n\0",
    "empty_name": b"C0644 0 \n\0",
    "slash_name": b"C0644 0 a/b\n\0",
    "control_name": b"C0644 0 \x1b[31mred\n\0",
    "long_line_2046": b"C0644 0 " + b"n" * 2037 + b"\n\0",
    "long_line_2047": b"C0644 0 " + b"n" * 2038 + b"\n\0",
    "long_line_no_lf": b"x" * 3000,
    "dir_size_nonzero": b"D0755 99 d\nE\n",
    "status_other_byte": b"C0644 1 a\nxZ\n",
    "cut_record": b"C0644 6 a.t",
    "warning_no_lf": b"\x01scp: unterminated",
}

for name, data in RECORDS.items():
    add("wire_decode", name, data)
    # sink_machine header: [config, bits_lo, bits_hi, chunk]
    add("sink_machine", name + "_r", b"\x01\x00\x00\x00" + data)
    add("sink_machine", name + "_r_filter_chunked", b"\x03\x00\x00\x03" + data)
add("sink_machine", "v3_refusals", b"\x01\x55\xaa\x00" + V3)
add("sink_machine", "v3_depth1", b"\x05\x00\x00\x00" + V3)
add("sink_machine", "v1_no_r_refuse_all", b"\x00\xff\xff\x01" + T + b"C0644 6 a.txt\nhello\n\0")
# Reply credit (config bit 4, bit 5 for 2): refusals become drops.
add("sink_machine", "v3_credit_refusals", b"\x11\x55\xaa\x00" + V3)
add("sink_machine", "v3_credit2_refuse_dirs", b"\x31\x01\x00\x02" + V3)
add("sink_machine", "credit_nested_refused", b"\x11\x01\x00\x00" + b"D0755 0 a\nD0755 0 b\nC0644 3 x\nabc\x01scp: x: gone\nE\nT1 0 1 0\nC0644 1 y\nzE\nE\n")

REPLIES = b"\0" * 20
add("source_machine", "all_ok", b"\x00" + REPLIES)
add("source_machine", "all_ok_read_errors", b"\x7f" + REPLIES)
add("source_machine", "all_ok_reports", b"\x80" + REPLIES)
add("source_machine", "v5_missing", b"\x00\x01scp: nope: No such file or directory\n")
add("source_machine", "v7_not_a_dir_first", b"\x00\x01scp: tree/f1: Not a directory\n")
add("source_machine", "banner", b"\x00Welcome-to-host\n\0")
add("source_machine", "fatal_first", b"\x00\x02scp: fatal\n")
add("source_machine", "dir_refused", b"\x00\0\0\x01scp: tree: Permission denied\n\0\0\0\0")
add("source_machine", "file_refused", b"\x00\0\0\0\0\x01scp: f1: denied\n" + b"\0" * 12)
add("source_machine", "final_refused", b"\x00\0\0\0\0\0\x01scp: f1: No space left on device\n" + b"\0" * 12)
add("source_machine", "fatal_mid", b"\x00\0\0\0\x02scp: gone\n")
add("source_machine", "garbage_mid", b"\x00\0\0\0Xhello\n")
add("source_machine", "eof_mid", b"\x01\0\0\0\0")
add("source_machine", "long_reply", b"\x00\0\x01" + b"w" * 3000)
# Pipelined: [decisions, chunk, replies]; decisions 0 sends every file ahead.
add("source_pipelined", "all_ahead", b"\x00\x00" + REPLIES)
add("source_pipelined", "all_ahead_byte_at_a_time", b"\x00\x01" + REPLIES)
add("source_pipelined", "record_like_data_waits", b"\x55\x03" + REPLIES)
add("source_pipelined", "lockstep_read_errors", b"\xff\x02" + REPLIES)
add("source_pipelined", "ahead_refused", b"\x00\x00\0\0\0\0\x01scp: f1: Permission denied\n" + REPLIES)
add("source_pipelined", "ahead_status_refused", b"\x00\x05\0\0\0\0\0\x01scp: f1: No space left on device\n" + REPLIES)
add("source_pipelined", "dir_refused", b"\x00\x07\0\0\x01scp: tree: Permission denied\n" + REPLIES)
add("source_pipelined", "times_refused", b"\x00\x00\0\x01scp: tree: utimes failed\n" + REPLIES)
add("source_pipelined", "banner", b"\x00\x00Welcome-to-host\n\0")
add("source_pipelined", "fatal_mid", b"\x00\x02\0\0\0\0\x02scp: gone\n")
add("source_pipelined", "garbage_mid", b"\x00\x00\0\0\0Xhello\n")
add("source_pipelined", "eof_mid", b"\x00\x01\0\0\0\0\0\0")
add("source_pipelined", "long_reply", b"\x00\x40\0\x01" + b"w" * 3000)

COMMANDS = [
    "scp -t .", "scp -p -t dest.txt", "scp -r -p -t .", "scp -d -t tree/f1", "scp -t -- -dash.txt",
    "scp -v -p -t v.txt", "scp -r -p -f tree", "scp -f nope", "/usr/bin/scp -pt 'a b'",
    "rscp -f \"a\\\"b\" c\\ d", "scp -t ~/x", "scp -t ~root/x ~", "scp -f '*.txt' [ab]?", "scp -f \\*",
    "scp -t ''", "scp -t a;rm -rf /", "scp -t $(id)", "scp -t `id`", "scp -S /bin/sh -t x",
    "scp -o ProxyCommand=x -t y", "scp -t x | cat", "scp -t x > y", "scp -t #c", "scp -t 'unterminated",
    "scp -t x\\", "scp -t a\\\nb", "scp -tf x", "scp -r x", "scp -t", "sh -c id", "/tmp/x/scp -t y",
    "scp* -t x", "scp -t {a,b}", "scp -t =ls", "scp -t ~-", "scp -t ~1/x", "scp -t \"a\\$b\"",
    "scp -t -", "scp -t -- --", "scp\t-t\tx", "scp -t \"~\"/x", "scp -t ~u''/x", "scp -t x\0y",
]
for i, c in enumerate(COMMANDS):
    add("command_parse", "cmd%02d" % i, c.encode() if isinstance(c, str) else c)
add("command_parse", "many_words", b"scp -t" + b" x" * 5000)
add("command_parse", "too_long", b"scp -t " + b"x" * 70000)

PATHS = [
    "a.txt", "dir/sub file", "*.txt", "[!a]*", "[^a]b", "a\\ b", "\\*", "~", "~/x", "~root/x", "~-/x",
    "~1/x", "~u.s-e_r", "-dash", "\\-dash", "=cmd", "a=b", "$(id)", "`id`", "a;b|c&d", "new\nline",
    "a\\\nb", "trailing\\", "'single'", "\"double\"", "{a,b}", "#hash", "x#y", "\x1b[31m", "\xff\xfe",
    "a b\tc", "!bang", "^caret", "]x", "[", "~u'x/y", "~/\\~", "",
]
for i, p in enumerate(PATHS):
    add("quote_path", "path%02d" % i, p.encode("latin-1"))

FILTERS = [
    ("a.txt", "a.txt"), ("{a,b}.txt", "b.txt"), ("{a,b}.txt", "c.txt"), ("dir/*.txt", "x.txt"),
    ("foo.[1]", "foo.[1]"), ("[!a]*", "b"), ("{}", "{}"), ("{a,{b,c}}d", "cd"), ("{a", "a"), ("a}", "a}"),
    ("\\{a,b}", "{a,b}"), ("[{]a,b}", "a"), ("x/", "x"), ("{a/,b/}", "b"), ("/", ""), ("///", ""),
    ("*" * 40 + "a", "b" * 60), ("*a*a*a*a*a*a*a*a*b", "a" * 200), ("{a,b}" * 14, "ab" * 7),
    ("{" * 200 + "}" * 200, "x"), ("{{{{{{{{{{a,b}}}}}}}}}}", "a"), ("[a-", "[a-"), ("[]-a]", "]"),
    ("[[:alpha:]]", "q"), ("?", "\n"), ("\\", "\\"), ("a\\", "a\\"), ("[\\]]", "]"),
]
for i, (p, n) in enumerate(FILTERS):
    add("name_filter", "filter%02d" % i, p.encode() + b"\0" + n.encode())

OPERANDS = [
    "host:path/x", "bob@host:", "host:", "local.txt", ":local", "./host:file", "dir/a:b", "[::1]:/tmp/x",
    "bob@[fe80::1]:x", "bob@[fe80::1%eth0]:x", "a@b@host:x", "host:a:b", "[host]:x", "[::1", "[::1]x:y",
    "[]:x", "@host:x", "bo b@host:x", "bo'b@host:x", "b#@host:x", "b`@host:x", "b\"@host:x",
    "\xe9t\xe9@host:x", "host\xff:x", "u@h\x1b[31m:x", "[u@[h]:x", "[a@b]:x", "x@[a]]:y", "u@[a:b]:x",
    "-oProxyCommand=x:y", "host:-p", "host:$(id)", "host:`id`", "h;id:x", "h\nx:y",
    "scp://host", "scp://host/", "scp://bob@host:2222/dir/x", "scp://host//abs/x.txt",
    "scp://b%40b;fp=x@host/a%20b", "scp://[::1]:22/x", "scp://[::1]", "scp://host:0/x", "scp://host:65535/x",
    "scp://host:65536/x", "scp://host:abc/x", "scp://host:/x", "scp:///x", "scp://@host/x", "scp://;x@host/x",
    "scp://host/%zz", "scp://host/%2", "scp://host/%00", "scp://host/%+1", "scp://host/%-1", "scp://%+41@h/x",
    "scp://[::1/x", "scp://[::1]x/y", "scp://u@v@host/x", "scp://host/a@b", "scp://h/%2e%2e/x",
    "scp://u%20v@h/x", "scp://u%27@h/x", "scp://h:22:23/x", "scp:/host/x", "SCP://host/x", "scp://",
    "scp://h/\xff", "[" * 100 + ":x", "a" * 3000 + ":" + "b" * 3000,
]
for i, o in enumerate(OPERANDS):
    add("operand_parse", "operand%02d" % i, o.encode("latin-1"))
add("operand_parse", "nul_ends_the_argument", b"host:x\0y")
# CVE-2023-51385: hosts and users a shell would run through ProxyCommand %h / %r.
for i, o in enumerate(["a`touch pwned`b:x", "a$(id)b:x", "u$(id)@h:x", "-oProxyCommand=sh:x", "scp://a$(id)b/x",
                       "scp://u%3bid@h/x", "u\\@h:x", "h\tx:y", "[a|b]:x", "u$x@h-1.example_2:f"]):
    add("operand_parse", "shell_in_host_or_user%02d" % i, o.encode())

# SFTP replies as a server sends them to `rscp -s` (big-endian framing, v3).
def sftp(kind, body):
    return (len(body) + 1).to_bytes(4, "big") + bytes([kind]) + body


def u32(v):
    return v.to_bytes(4, "big")


def sstr(b):
    return u32(len(b)) + b


VERSION = sftp(2, u32(3) + sstr(b"limits@openssh.com") + sstr(b"1") + sstr(b"expand-path@openssh.com") + sstr(b"1"))
DIR_ATTRS = u32(0x0F) + (0).to_bytes(8, "big") + u32(0) + u32(0) + u32(0o40755) + u32(1) + u32(2)
add("sftp_reply", "version", VERSION)
add("sftp_reply", "upload_transcript", VERSION + sftp(105, u32(1) + DIR_ATTRS) + sftp(102, u32(2) + sstr(b"h0"))
    + sftp(101, u32(3) + u32(0) + sstr(b"Success") + sstr(b"")) + sftp(101, u32(4) + u32(0) + sstr(b"Success") + sstr(b"")))
add("sftp_reply", "limits_reply", sftp(201, u32(1) + (262144).to_bytes(8, "big") + (261120).to_bytes(8, "big") * 2
    + (1019).to_bytes(8, "big")))
add("sftp_reply", "name_two_entries", sftp(104, u32(5) + u32(2) + sstr(b"a") + sstr(b"-rw a") + u32(0)
    + sstr(b"..") + sstr(b"d .." ) + DIR_ATTRS))
add("sftp_reply", "status_without_message", sftp(101, u32(9) + u32(4)))
add("sftp_reply", "data", sftp(103, u32(6) + sstr(b"payload\0\1")))
add("sftp_reply", "attrs_extended", sftp(105, u32(7) + u32(0x80000004) + u32(0o100644) + u32(1) + sstr(b"x@y") + sstr(b"v")))
add("sftp_reply", "too_long", (0x40001).to_bytes(4, "big") + b"\x65")
add("sftp_reply", "zero_length", u32(0))
add("sftp_reply", "huge_name_count", sftp(104, u32(1) + u32(0xFFFFFFFF)))
add("sftp_reply", "request_type", sftp(3, u32(1) + sstr(b"/etc/passwd")))
add("sftp_reply", "string_past_end", sftp(102, u32(1) + u32(99) + b"ab"))

if __name__ == "__main__":
    total = 0
    for target, files in SEEDS.items():
        os.makedirs(os.path.join("seeds", target), exist_ok=True)
        for name, data in files.items():
            with open(os.path.join("seeds", target, name), "wb") as f:
                f.write(data)
            total += len(data)
    print("%d seeds, %d bytes" % (sum(len(f) for f in SEEDS.values()), total))
