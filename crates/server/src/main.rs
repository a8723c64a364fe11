//! rscpd: a copy-only SSH server. Serves SCP (`scp -t`/`scp -f`, in-process) and
//! the SFTP subsystem out of one root directory; never a shell.

mod authorized_keys;
mod password;
mod sftp;

fn main() {}
