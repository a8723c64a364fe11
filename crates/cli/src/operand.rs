//! Telling local operands from remote ones (`[user@]host:path`, `[v6addr]:path`,
//! `scp://…`), with OpenSSH's colon rules (`misc.c` `colon()`).

/// The index of the colon that separates host from path, if `arg` names a remote
/// file. A leading `:` is part of a local name, a `/` before the first colon makes
/// the operand local (`./host:file`), and `[...]` brackets hide the colons of an
/// IPv6 address.
pub fn host_colon(arg: &[u8]) -> Option<usize> {
    if arg.first() == Some(&b':') {
        return None;
    }
    let mut bracketed = arg.first() == Some(&b'[');
    for (i, &b) in arg.iter().enumerate() {
        let next = arg.get(i + 1).copied();
        if b == b'@' && next == Some(b'[') {
            bracketed = true;
        }
        if b == b']' && next == Some(b':') && bracketed {
            return Some(i + 1);
        }
        if b == b':' && !bracketed {
            return Some(i);
        }
        if b == b'/' {
            return None;
        }
    }
    None
}

/// True if `arg` names a file on another host.
pub fn is_remote(arg: &[u8]) -> bool {
    arg.starts_with(b"scp://") || host_colon(arg).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_rules() {
        assert_eq!(host_colon(b"host:path"), Some(4));
        assert_eq!(host_colon(b"user@host:"), Some(9));
        assert_eq!(host_colon(b"local.txt"), None);
        assert_eq!(host_colon(b":local"), None);
        assert_eq!(host_colon(b"./host:file"), None);
        assert_eq!(host_colon(b"dir/a:b"), None);
        assert_eq!(host_colon(b"[::1]:path"), Some(5));
        assert_eq!(host_colon(b"bob@[fe80::1]:x"), Some(13));
        assert!(is_remote(b"scp://host/path"));
        assert!(!is_remote(b"plain"));
    }
}
