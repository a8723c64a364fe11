//! From a remote operand and the command line to an authenticated SSH session:
//! ssh_config resolution (`rscp_ssh::config`) turned into `ConnectOptions`, and
//! the connection itself. Warnings about options rscp does not act on are
//! printed here, once per host.

use std::path::PathBuf;

use rscp_proto::operand::RemotePath;
use rscp_ssh::config::{self, HostConfig, Overrides};
use rscp_ssh::{AddressFamily, AuthMethod, Client, ConnectOptions, HostKeyChecking};

use crate::flags::Flags;
use crate::prompt::TerminalPrompter;

/// The command-line settings that ssh_config resolution starts from.
pub fn overrides(flags: &Flags, remote: &RemotePath) -> Overrides {
    Overrides {
        user: remote.user.clone(),
        port: remote.port.or(flags.port),
        identity_files: flags.identities.iter().map(PathBuf::from).collect(),
        options: flags.ssh_options.iter().map(|o| o.to_string_lossy().into_owned()).collect(),
        config_file: flags.ssh_config.as_ref().map(PathBuf::from),
        jump: flags.jump.as_ref().map(|j| j.to_string_lossy().into_owned()),
        cipher: flags.cipher.as_ref().map(|c| c.to_string_lossy().into_owned()),
        compression: flags.compress,
        ipv4: flags.ipv4,
        ipv6: flags.ipv6,
        forward_agent: flags.forward_agent,
        batch_mode: flags.batch,
        verbose: flags.verbose,
        quiet: flags.quiet,
    }
}

/// How to reach one host: its settings and the proxies in front of it.
#[derive(Debug, Clone)]
pub struct Route {
    pub options: ConnectOptions,
    /// `ProxyJump`/`-J`: `[user@]host[:port]` hops, comma-separated.
    pub proxy_jump: Option<String>,
    pub proxy_command: Option<String>,
}

/// Resolves the settings for `remote` as ssh would.
pub fn resolve(flags: &Flags, remote: &RemotePath) -> Result<Route, String> {
    resolve_overrides(&remote.host, &overrides(flags, remote), flags.quiet)
}

fn resolve_overrides(host: &str, overrides: &Overrides, quiet: bool) -> Result<Route, String> {
    let host_config =
        config::resolve(host, overrides, &config::Environment::from_process()).map_err(|e| e.to_string())?;
    // The final user (also from `-o User=` or ssh_config) reaches `ProxyCommand … %r`
    // and `Match exec`, which a shell runs: ssh's CVE-2023-51385 rule applies to it.
    if rscp_proto::operand::checked_user(host_config.user.as_bytes()).is_err() {
        return Err("remote username contains invalid characters".to_string());
    }
    if !host_config.unsupported.is_empty() && !quiet {
        eprintln!("rscp: ignoring unsupported ssh options: {}", host_config.unsupported.join(", "));
    }
    Ok(Route {
        options: connect_options(&host_config),
        proxy_jump: host_config.proxy_jump.clone(),
        proxy_command: host_config.proxy_command.clone(),
    })
}

/// One `-J` hop: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
fn parse_hop(hop: &str) -> Result<(Option<String>, String, Option<u16>), String> {
    let bad = || format!("ssh: Invalid ProxyJump host \"{hop}\"");
    let spec = hop.strip_prefix("ssh://").unwrap_or(hop);
    let (user, hostport) = match spec.rsplit_once('@') {
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, spec),
    };
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or_else(bad)?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = port.map(|p| p.parse::<u16>().map_err(|_| bad())).transpose()?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((user, host.to_string(), port))
}

/// Maps resolved ssh_config settings onto the client's options.
pub fn connect_options(c: &HostConfig) -> ConnectOptions {
    let mut o = ConnectOptions::new(&c.host, c.port, &c.user);
    o.hostname = c.hostname.clone();
    o.host_key_name = c.host_key_alias.clone().unwrap_or_else(|| c.hostname.clone());
    o.host_key_alias = c.host_key_alias.is_some();
    o.address_family = match c.address_family {
        config::AddressFamily::Any => AddressFamily::Any,
        config::AddressFamily::Inet => AddressFamily::Inet,
        config::AddressFamily::Inet6 => AddressFamily::Inet6,
    };
    o.connect_timeout = c.connect_timeout.map(std::time::Duration::from_secs);
    if c.server_alive_interval > 0 {
        o.keepalive_interval = Some(std::time::Duration::from_secs(c.server_alive_interval));
        o.keepalive_max = usize::try_from(c.server_alive_count_max).unwrap_or(usize::MAX);
    }
    o.host_key_checking = match c.strict_host_key_checking {
        config::StrictHostKeyChecking::Yes => HostKeyChecking::Yes,
        config::StrictHostKeyChecking::AcceptNew => HostKeyChecking::AcceptNew,
        config::StrictHostKeyChecking::No => HostKeyChecking::No,
        config::StrictHostKeyChecking::Ask => HostKeyChecking::Ask,
    };
    o.user_known_hosts = c.user_known_hosts_files.clone();
    o.global_known_hosts = c.global_known_hosts_files.clone();
    o.hash_known_hosts = c.hash_known_hosts;
    o.identity_files = c.identity_files.clone();
    o.certificate_files = c.certificate_files.clone();
    o.identities_only = c.identities_only;
    o.agent_socket = match c.identity_agent.as_deref() {
        Some("none") => None,
        Some("SSH_AUTH_SOCK") | None => std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from),
        Some(path) => Some(PathBuf::from(path)),
    };
    o.auth_methods = auth_methods(c);
    o.password_prompts = c.number_of_password_prompts;
    o.batch_mode = c.batch_mode;
    o.ciphers = c.ciphers.clone();
    o.kex_algorithms = c.kex_algorithms.clone();
    o.macs = c.macs.clone();
    o.host_key_algorithms = c.host_key_algorithms.clone();
    o.compression = c.compression;
    o.quiet = c.log_level == config::LogLevel::Quiet;
    o.forward_agent = c.forward_agent;
    o
}

/// The methods to try, in `PreferredAuthentications` order (ssh's default:
/// public key, keyboard-interactive, password), minus the disabled ones.
fn auth_methods(c: &HostConfig) -> Vec<AuthMethod> {
    let names: Vec<String> = match &c.preferred_authentications {
        Some(list) => list.clone(),
        None => ["publickey", "keyboard-interactive", "password"].map(String::from).to_vec(),
    };
    names
        .iter()
        .filter_map(|name| match name.as_str() {
            "publickey" if c.pubkey_authentication => Some(AuthMethod::PublicKey),
            "keyboard-interactive" if c.kbd_interactive_authentication => {
                Some(AuthMethod::KeyboardInteractive)
            }
            "password" if c.password_authentication => Some(AuthMethod::Password),
            _ => None,
        })
        .collect()
}

/// Connects and authenticates through the route's proxies; the error text is
/// ssh's.
pub async fn connect(flags: &Flags, route: &Route) -> Result<Client, String> {
    let prompter = || -> Box<dyn rscp_ssh::Prompter> { Box::new(TerminalPrompter { quiet: flags.quiet }) };
    let options = &route.options;
    if let Some(command) = &route.proxy_command {
        return Client::connect_command(options, command, prompter()).await.map_err(|e| e.to_string());
    }
    let Some(jumps) = &route.proxy_jump else {
        return Client::connect(options, prompter()).await.map_err(|e| e.to_string());
    };
    let mut via: Option<Client> = None;
    for hop in jumps.split(',') {
        let (user, host, port) = parse_hop(hop)?;
        // A hop gets its own ssh_config settings, but not the target's -o options.
        let hop_overrides = Overrides {
            user,
            port,
            config_file: flags.ssh_config.as_ref().map(PathBuf::from),
            batch_mode: flags.batch,
            quiet: flags.quiet,
            ..Overrides::default()
        };
        let hop_route = resolve_overrides(&host, &hop_overrides, flags.quiet)?;
        let client = match via.take() {
            None => Client::connect(&hop_route.options, prompter()).await,
            Some(previous) => Client::connect_via(&hop_route.options, previous, prompter()).await,
        };
        via = Some(client.map_err(|e| e.to_string())?);
    }
    match via {
        Some(jump) => Client::connect_via(options, jump, prompter()).await.map_err(|e| e.to_string()),
        None => Client::connect(options, prompter()).await.map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hops() {
        assert_eq!(parse_hop("jump"), Ok((None, "jump".into(), None)));
        assert_eq!(parse_hop("bob@jump:2222"), Ok((Some("bob".into()), "jump".into(), Some(2222))));
        assert_eq!(parse_hop("ssh://bob@[::1]:22"), Ok((Some("bob".into()), "::1".into(), Some(22))));
        assert!(parse_hop("jump:x").is_err());
        assert!(parse_hop("@:22").is_err());
    }
}
