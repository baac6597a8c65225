//! `[deploy]`: the push webhook that deploys the backend's host (Gitea, Forgejo or GitHub), and
//! the public address `vesper doctor` checks. The shared secret is only named here (a file).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The deploy webhook and the public address.
#[derive(Debug, Clone, PartialEq)]
pub struct Deploy {
    /// File holding the webhook's shared secret; `None`: the webhook answers 404.
    pub secret_file: Option<PathBuf>,
    /// The ref whose pushes deploy (`refs/heads/main`); other refs are answered 204.
    pub branch: String,
    /// The program and its arguments (no shell unless you name one); empty: the webhook answers 404.
    pub command: Vec<String>,
    /// Where the command runs (default: the data folder).
    pub workdir: Option<PathBuf>,
    /// One log file per run (default: `DATA_DIR/deploy`).
    pub log_dir: Option<PathBuf>,
    /// A run is stopped after this long.
    pub timeout: Duration,
    /// The public `https://` address (NGINX in front), for `vesper doctor`'s outside checks.
    pub public_url: Option<String>,
}

impl Default for Deploy {
    fn default() -> Self {
        Self {
            secret_file: None,
            branch: "refs/heads/main".into(),
            command: Vec::new(),
            workdir: None,
            log_dir: None,
            timeout: Duration::from_secs(1800),
            public_url: None,
        }
    }
}

impl Deploy {
    /// Whether the webhook is on (a secret and a command).
    pub fn enabled(&self) -> bool {
        self.secret_file.is_some() && !self.command.is_empty()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeploy {
    secret_file: Option<PathBuf>,
    branch: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    workdir: Option<PathBuf>,
    log_dir: Option<PathBuf>,
    timeout: Option<u64>,
    public_url: Option<String>,
    /// Refused with a pointer to `secret_file`.
    secret: Option<toml::Value>,
}

type Invalid = (String, String);

fn bad(key: &str, message: impl Into<String>) -> Invalid {
    (format!("deploy.{key}"), message.into())
}

pub(super) fn validate_deploy(raw: RawDeploy, base: &Path) -> Result<Deploy, Invalid> {
    let defaults = Deploy::default();
    if raw.secret.is_some() {
        return Err(bad(
            "secret",
            "secrets are not kept in the config; put the webhook secret in a file named by secret_file (mode 0600)",
        ));
    }
    let branch = raw.branch.unwrap_or(defaults.branch);
    if !branch.starts_with("refs/") || branch.len() > 255 {
        return Err(bad(
            "branch",
            format!("`{branch}` is not a full ref such as refs/heads/main"),
        ));
    }
    if raw.command.first().is_some_and(|c| c.trim().is_empty()) {
        return Err(bad("command", "the program name must not be empty"));
    }
    if raw.secret_file.is_some() == raw.command.is_empty() {
        return Err(bad(
            if raw.secret_file.is_some() {
                "command"
            } else {
                "secret_file"
            },
            "the webhook needs both secret_file and command",
        ));
    }
    let timeout = raw.timeout.unwrap_or(defaults.timeout.as_secs());
    if !(1..=86_400).contains(&timeout) {
        return Err(bad("timeout", "must be 1 to 86400 seconds"));
    }
    let public_url = match raw.public_url {
        Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
            return Err(bad(
                "public_url",
                format!("`{url}` must start with https://"),
            ));
        }
        other => other.map(|u| u.trim_end_matches('/').to_owned()),
    };
    Ok(Deploy {
        secret_file: raw.secret_file.map(|p| base.join(p)),
        branch,
        command: raw.command,
        workdir: raw.workdir.map(|p| base.join(p)),
        log_dir: raw.log_dir.map(|p| base.join(p)),
        timeout: Duration::from_secs(timeout),
        public_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Deploy, Invalid> {
        validate_deploy(toml::from_str(text).unwrap(), Path::new("/etc/vesper"))
    }

    #[test]
    fn off_by_default_and_on_with_a_secret_and_a_command() {
        assert!(!parse("").unwrap().enabled());
        let on = parse(
            "secret_file = \"hook.secret\"\ncommand = [\"/usr/local/bin/deploy\", \"--quiet\"]",
        )
        .unwrap();
        assert!(on.enabled());
        assert_eq!(
            on.secret_file.unwrap(),
            Path::new("/etc/vesper/hook.secret")
        );
        assert_eq!(on.branch, "refs/heads/main");
    }

    /// The example configuration's commented `[deploy]` block is valid once uncommented.
    #[test]
    fn the_documented_deploy_block_parses() {
        let text = crate::config::documented_block("deploy");
        #[derive(Deserialize)]
        struct Doc {
            deploy: RawDeploy,
        }
        let doc: Doc = toml::from_str(&text).unwrap();
        let deploy = validate_deploy(doc.deploy, Path::new("/etc/vesper")).unwrap();
        assert!(deploy.enabled());
        assert_eq!(
            deploy.public_url.as_deref(),
            Some("https://vesper.example.com")
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("secret = \"x\"", "deploy.secret"),
            ("branch = \"main\"", "deploy.branch"),
            ("secret_file = \"s\"", "deploy.command"),
            ("command = [\"x\"]", "deploy.secret_file"),
            ("secret_file = \"s\"\ncommand = [\"\"]", "deploy.command"),
            ("public_url = \"vesper.example.com\"", "deploy.public_url"),
            ("timeout = 0", "deploy.timeout"),
        ] {
            assert_eq!(parse(text).unwrap_err().0, key, "{text}");
        }
    }
}
