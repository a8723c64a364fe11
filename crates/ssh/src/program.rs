//! The `-S program` transport: run an ssh-compatible program with the argument
//! vector OpenSSH's scp builds (spec §1.4), and use its stdin/stdout as the
//! remote command's streams. Wrappers (sudo, logging, `kubectl exec` adapters)
//! rely on this exact vector.

use std::ffi::{OsStr, OsString};
use std::process::Stdio;

use tokio::sync::oneshot;

use crate::remote::{ExitStatus, Remote};

/// What goes into one program invocation besides the fixed options.
#[derive(Debug, Clone, Default)]
pub struct ProgramCall {
    /// The user's ssh options in command-line order (`-4 -6 -A -C`,
    /// `-oBatchmode=yes`, `-c X -F X -i X -J X -o X`, `-v`, `-q`).
    pub ssh_args: Vec<OsString>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// Added after the user's options (the second hop of a `-3` relay).
    pub batch_mode: bool,
    /// `-s`: the command is a subsystem's name (SFTP mode).
    pub subsystem: bool,
    pub host: String,
}

/// The argument vector (after argv\[0]) OpenSSH 10 gives its ssh program:
/// hardening options first (so `-o` cannot undo them), the user's options,
/// `-oForwardAgent=no` last as a default that `-A` beats, then port, user, `--`,
/// host and the command as one word.
pub fn arguments(call: &ProgramCall, command: &[u8]) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-x",
        "-oPermitLocalCommand=no",
        "-oClearAllForwardings=yes",
        "-oRemoteCommand=none",
        "-oRequestTTY=no",
        "-oControlMaster=no",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.extend(call.ssh_args.iter().cloned());
    args.push("-oForwardAgent=no".into());
    if call.batch_mode {
        args.push("-oBatchMode=yes".into());
    }
    if let Some(port) = call.port {
        args.push("-p".into());
        args.push(port.to_string().into());
    }
    if let Some(user) = &call.user {
        args.push("-l".into());
        args.push(user.into());
    }
    if call.subsystem {
        args.push("-s".into());
    }
    args.push("--".into());
    args.push(call.host.clone().into());
    args.push(OsStr::from_encoded_bytes_checked(command).to_os_string());
    args
}

trait FromBytes {
    fn from_encoded_bytes_checked(bytes: &[u8]) -> &OsStr;
}

impl FromBytes for OsStr {
    fn from_encoded_bytes_checked(bytes: &[u8]) -> &OsStr {
        use std::os::unix::ffi::OsStrExt;
        OsStr::from_bytes(bytes)
    }
}

/// Starts `program` (found on PATH like `execvp`) for `command`; its stderr
/// passes through, as with OpenSSH.
pub fn spawn(program: &OsStr, call: &ProgramCall, command: &[u8]) -> std::io::Result<Remote> {
    let mut child = tokio::process::Command::new(program)
        .args(arguments(call, command))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(std::io::Error::other("the ssh program has no pipes"));
    };
    let (exit_tx, exit_rx) = oneshot::channel();
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(status) => status
                .code()
                .and_then(|c| u32::try_from(c).ok())
                .map_or(ExitStatus::Abnormal, ExitStatus::Code),
            Err(_) => ExitStatus::Abnormal,
        };
        let _ = exit_tx.send(status);
    });
    Ok(Remote::from_streams(stdout, ClosingStdin(Some(stdin)), exit_rx))
}

/// The program's stdin; shutting it down closes the pipe, so the remote command
/// sees end of file (tokio's `ChildStdin` only flushes on shutdown).
struct ClosingStdin(Option<tokio::process::ChildStdin>);

impl tokio::io::AsyncWrite for ClosingStdin {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(stdin) => std::pin::Pin::new(stdin).poll_write(cx, buf),
            None => std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(stdin) => std::pin::Pin::new(stdin).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(stdin) = self.0.as_mut() {
            std::task::ready!(std::pin::Pin::new(stdin).poll_flush(cx))?;
        }
        self.0 = None;
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The captured OpenSSH vector of spec §1.4 (plus 10.0's ControlMaster).
    #[test]
    fn vector_matches_openssh() {
        let call = ProgramCall {
            ssh_args: [
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
                "jump",
                "-o",
                "ServerAliveInterval=5",
                "-q",
            ]
            .iter()
            .map(OsString::from)
            .collect(),
            port: Some(2222),
            user: Some("bob".into()),
            batch_mode: false,
            subsystem: false,
            host: "host".into(),
        };
        let args: Vec<String> =
            arguments(&call, b"scp -t x.txt").iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args.join(" "),
            "-x -oPermitLocalCommand=no -oClearAllForwardings=yes -oRemoteCommand=none -oRequestTTY=no \
             -oControlMaster=no -4 -A -oBatchmode=yes -C -c aes128-ctr -F /dev/null -i /tmp/k -J jump \
             -o ServerAliveInterval=5 -q -oForwardAgent=no -p 2222 -l bob -- host scp -t x.txt"
        );
        assert_eq!(args.last().map(String::as_str), Some("scp -t x.txt"), "the command is one word");
    }

    /// SFTP mode (`-s`): OpenSSH 9.2's vector, captured with `scp -S`, ends in
    /// `-s -- host sftp` (10.0 adds `-oControlMaster=no` as above).
    #[test]
    fn subsystem_vector_matches_openssh() {
        let call = ProgramCall {
            port: Some(2222),
            user: Some("bob".into()),
            subsystem: true,
            host: "host".into(),
            ..ProgramCall::default()
        };
        let args: Vec<String> =
            arguments(&call, b"sftp").iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args.join(" "),
            "-x -oPermitLocalCommand=no -oClearAllForwardings=yes -oRemoteCommand=none -oRequestTTY=no \
             -oControlMaster=no -oForwardAgent=no -p 2222 -l bob -s -- host sftp"
        );
    }

    #[tokio::test]
    async fn runs_the_program_over_pipes() {
        use std::os::unix::fs::PermissionsExt;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        // A stand-in for ssh: records its arguments, runs the last one locally.
        let wrapper = dir.path().join("fake-ssh");
        let log = dir.path().join("args");
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\neval \"cmd=\\${{$#}}\"\nexec sh -c \"$cmd\"\n",
            log.display()
        );
        std::fs::write(&wrapper, script).expect("write wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let call = ProgramCall { host: "somehost".into(), port: Some(2222), ..ProgramCall::default() };
        let remote = spawn(wrapper.as_os_str(), &call, b"printf ready; cat; exit 3").expect("spawn");
        let (mut reader, mut writer, exit) = remote.into_parts();
        let mut ready = [0u8; 5];
        reader.read_exact(&mut ready).await.expect("read");
        assert_eq!(&ready, b"ready");
        writer.write_all(b"echo").await.expect("write");
        writer.shutdown().await.expect("eof");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"echo");
        assert_eq!(exit.wait().await, ExitStatus::Code(3));
        let args = std::fs::read_to_string(&log).expect("log");
        assert!(args.ends_with("-p\n2222\n--\nsomehost\nprintf ready; cat; exit 3\n"), "{args}");
        assert!(spawn(OsStr::new("/nonexistent/ssh"), &call, b"true").is_err());
    }
}
