//! `keel queue work`'s command per task: the payload on stdin, the task in the environment,
//! stdout as the result and the end of stderr as the error, killed if the claim is lost.

use std::process::Stdio;

use keel_client::WorkerTask;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::result_value;

/// Most of a command's stdout kept as its task's result, in bytes.
const MAX_OUTPUT: usize = 60 << 10;
/// Most of a command's stderr kept as its task's error (the end of it), in bytes.
const MAX_ERROR: usize = 4 << 10;

/// Reads all of `from`, keeping its first `keep` bytes (`head`) or its last (`!head`).
async fn read_bounded(mut from: impl AsyncRead + Unpin, keep: usize, head: bool) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > keep {
                    if head {
                        kept.truncate(keep);
                    } else {
                        kept.drain(..kept.len() - keep);
                    }
                }
            }
        }
    }
}

/// Runs the command for one task: the payload on stdin, the task in the environment.
pub(super) async fn run_command(
    command: Vec<String>,
    t: WorkerTask,
) -> Result<Option<serde_json::Value>, String> {
    let Some((program, args)) = command.split_first() else {
        return Err("no command to run".into());
    };
    let payload = t
        .task
        .payload_bytes()
        .map_err(|e| format!("payload: {e}"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("KEEL_TASK_ID", t.task.id.to_string())
        .env("KEEL_TASK_ATTEMPT", t.task.attempt.to_string())
        .env("KEEL_QUEUE", &t.queue)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let stdin = child.stdin.take();
    let feed = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its stdin closes it: not an error.
            let _ = stdin.write_all(&payload).await;
        }
    };
    let stdout = child
        .stdout
        .take()
        .map(|o| read_bounded(o, MAX_OUTPUT, true));
    let stderr = child
        .stderr
        .take()
        .map(|e| read_bounded(e, MAX_ERROR, false));
    let output = async {
        let (_, out, err) = tokio::join!(
            feed,
            async {
                match stdout {
                    Some(f) => f.await,
                    None => Vec::new(),
                }
            },
            async {
                match stderr {
                    Some(f) => f.await,
                    None => Vec::new(),
                }
            }
        );
        (out, err)
    };
    let mut lost = t.lost.clone();
    let ((out, err), status) = tokio::select! {
        r = async { let o = output.await; (o, child.wait().await) } => r,
        // (The guard wait_for returns is dropped at once: it must not live across an await.)
        () = async { let _ = lost.wait_for(|l| *l).await; } => {
            let _ = child.kill().await;
            eprintln!("task {}: claim lost; command stopped", t.task.id);
            return Err("claim lost".into());
        }
    };
    let status = status.map_err(|e| format!("waiting for {program:?}: {e}"))?;
    if status.success() {
        eprintln!("task {} (attempt {}): done", t.task.id, t.task.attempt);
        let text = String::from_utf8_lossy(&out);
        let text = text.trim_end();
        Ok((!text.is_empty()).then(|| result_value(text)))
    } else {
        let tail = String::from_utf8_lossy(&err).trim_end().to_owned();
        eprintln!(
            "task {} (attempt {}): failed ({status})",
            t.task.id, t.task.attempt
        );
        Err(if tail.is_empty() {
            format!("{program} exited with {status}")
        } else {
            tail
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_json_or_text() {
        assert_eq!(result_value("{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(result_value("42"), serde_json::json!(42));
        assert_eq!(result_value("hello"), serde_json::json!("hello"));
    }

    #[tokio::test]
    async fn bounded_reads_keep_the_head_or_the_tail() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let head = read_bounded(&data[..], 1000, true).await;
        assert_eq!(head, data[..1000]);
        let tail = read_bounded(&data[..], 1000, false).await;
        assert_eq!(tail, data[data.len() - 1000..]);
    }
}
