//! Runs `iptables`/`ip6tables`: `-C` to check, `-I` to insert at the top (as node-cache does),
//! `-S` + `-D` to sweep our tagged rules. Every call waits for the xtables lock with `-w` and is
//! bounded by a timeout, so lock contention delays a pass instead of crashing anything.

use std::process::Stdio;
use std::time::Duration;

use super::SetupError;
use super::rules::{self, Family, Rule};

/// The programs and their limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iptables {
    /// Program for IPv4 rules (default `iptables`).
    pub v4: String,
    /// Program for IPv6 rules (default `ip6tables`).
    pub v6: String,
    /// Seconds to wait for the xtables lock (`-w N`).
    pub lock_wait_secs: u32,
    /// Upper bound on one invocation.
    pub timeout: Duration,
}

impl Default for Iptables {
    fn default() -> Self {
        Self {
            v4: "iptables".to_owned(),
            v6: "ip6tables".to_owned(),
            lock_wait_secs: 5,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Exit status and output of one invocation.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Iptables {
    fn program(&self, family: Family) -> &str {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    async fn run(&self, family: Family, args: &[&str]) -> Result<Run, SetupError> {
        let program = self.program(family);
        let wait = self.lock_wait_secs.to_string();
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg("-w")
            .arg(&wait)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(self.timeout, cmd.output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(source)) => {
                return Err(SetupError::Spawn {
                    program: program.to_owned(),
                    source,
                });
            }
            Err(_) => {
                return Err(SetupError::Timeout {
                    program: program.to_owned(),
                    args: args.join(" "),
                });
            }
        };
        Ok(Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }

    /// Runs and requires exit status 0.
    async fn run_ok(&self, family: Family, args: &[&str]) -> Result<String, SetupError> {
        let run = self.run(family, args).await?;
        if run.code == Some(0) {
            return Ok(run.stdout);
        }
        Err(self.failed(family, args, &run))
    }

    fn failed(&self, family: Family, args: &[&str], run: &Run) -> SetupError {
        SetupError::Command {
            program: self.program(family).to_owned(),
            args: args.join(" "),
            status: run
                .code
                .map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit {c}")),
            stderr: run.stderr.clone(),
        }
    }

    /// Whether the rule is present (`-C`: exit 0 present, 1 absent, anything else an error).
    pub async fn check(&self, rule: &Rule) -> Result<bool, SetupError> {
        let args = rule_args(rule, "-C");
        let run = self.run(rule.family, &args).await?;
        match run.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(self.failed(rule.family, &args, &run)),
        }
    }

    /// Inserts the rule at the top of its chain unless present; true when it was inserted.
    pub async fn ensure(&self, rule: &Rule) -> Result<bool, SetupError> {
        if self.check(rule).await? {
            return Ok(false);
        }
        self.run_ok(rule.family, &rule_args(rule, "-I")).await?;
        Ok(true)
    }

    /// Deletes every rule tagged with our comment from the chains we use; returns how many.
    pub async fn sweep(&self, family: Family) -> Result<usize, Vec<SetupError>> {
        let mut deleted = 0;
        let mut errors = Vec::new();
        for (table, chain) in rules::CHAINS {
            let listing = match self.run_ok(family, &["-t", table, "-S", chain]).await {
                Ok(listing) => listing,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for delete in rules::ours_in_listing(&listing, chain) {
                let args: Vec<&str> = ["-t", table]
                    .into_iter()
                    .chain(delete.iter().map(String::as_str))
                    .collect();
                match self.run_ok(family, &args).await {
                    Ok(_) => deleted += 1,
                    Err(e) => errors.push(e),
                }
            }
        }
        if errors.is_empty() {
            Ok(deleted)
        } else {
            Err(errors)
        }
    }
}

fn rule_args<'a>(rule: &'a Rule, op: &'a str) -> Vec<&'a str> {
    ["-t", rule.table, op, rule.chain]
        .into_iter()
        .chain(rule.spec.iter().map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_carry_table_op_chain_spec() {
        let rule = Rule {
            family: Family::V4,
            table: "raw",
            chain: "OUTPUT",
            spec: vec!["-j".into(), "NOTRACK".into()],
        };
        let cases = [
            ("-C", "-t raw -C OUTPUT -j NOTRACK"),
            ("-I", "-t raw -I OUTPUT -j NOTRACK"),
        ];
        for (op, want) in cases {
            assert_eq!(rule_args(&rule, op).join(" "), want);
        }
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let ipt = Iptables {
            v4: "/nonexistent/zonegate-iptables".into(),
            ..Iptables::default()
        };
        let rule = &rules::rules_for(&["10.0.0.1".parse().unwrap()], &[53])[0];
        let err = ipt.ensure(rule).await.unwrap_err();
        assert!(matches!(err, SetupError::Spawn { .. }), "{err}");
        assert_eq!(err.kind(), "iptables");
    }

    #[tokio::test]
    async fn failing_program_is_a_command_error() {
        // `false` exits 1, which `-C` reads as "absent"; the insert then fails.
        let ipt = Iptables {
            v4: "false".into(),
            ..Iptables::default()
        };
        let rule = &rules::rules_for(&["10.0.0.1".parse().unwrap()], &[53])[0];
        let err = ipt.ensure(rule).await.unwrap_err();
        assert!(matches!(err, SetupError::Command { .. }), "{err}");
        assert_eq!(ipt.sweep(Family::V4).await.unwrap_err().len(), 4);
    }
}
