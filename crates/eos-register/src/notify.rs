//! The recovery notification hook: a command run with the event on
//! standard input, or a webhook the event is POSTed to. Called after the
//! recovery has committed; its outcome is logged and audited, and a failed
//! notification never undoes the recovery.

use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::config::NotifyHook;

/// How long a hook may take.
const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the hook is told. Ids and addresses only: no code.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryEvent {
    /// Always `admin-recovery`.
    pub event: &'static str,
    /// The space.
    pub space: String,
    /// The administrator.
    pub user: String,
    /// The new address (rule network).
    pub cidr: String,
    /// The recovery address it replaced.
    pub replaced: Option<String>,
    /// The recovery code's id (public half).
    pub code_id: String,
    /// RFC 3339 UTC.
    pub at: String,
}

/// Deliver `event` to `hook`. `Ok(false)`: no hook configured.
pub async fn notify(hook: &NotifyHook, event: &RecoveryEvent) -> Result<bool, String> {
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    match hook {
        NotifyHook::None => Ok(false),
        NotifyHook::Command(argv) => {
            let Some((program, args)) = argv.split_first() else {
                return Err("empty command".to_owned());
            };
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
            run_bounded(cmd, program, Some(&body), HOOK_TIMEOUT).await?;
            Ok(true)
        }
        NotifyHook::Webhook(url) => {
            let client = reqwest::Client::builder()
                .timeout(HOOK_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| e.to_string())?;
            let resp = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| format!("webhook: {e}"))?;
            if resp.status().is_success() {
                Ok(true)
            } else {
                Err(format!("webhook answered {}", resp.status()))
            }
        }
    }
}

/// Run `cmd` (`name` in errors), `stdin` written to its standard input,
/// and wait at most `timeout` for it to exit successfully; killed if it
/// does not.
pub(crate) async fn run_bounded(
    mut cmd: tokio::process::Command,
    name: &str,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<(), String> {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{name}: {e}"))?;
    if let (Some(body), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(body)
            .await
            .map_err(|e| format!("{name}: writing the event: {e}"))?;
    }
    let status = tokio::time::timeout(timeout, child.wait())
        .await
        .map_err(|_| {
            format!(
                "{name}: no exit within {}",
                eos_codes::format_duration(timeout)
            )
        })?
        .map_err(|e| format!("{name}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name}: {status}"))
    }
}
