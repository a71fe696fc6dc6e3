//! What the runtime tells its caller besides its output: error and warning records in runc's
//! formats, because supervisors parse them. Every record goes to stderr as one logfmt line
//! (`time="…" level=error msg="…"`, as runc's logger writes it), and with `--log` also to that
//! file in `--log-format` (`text` the same line, `json` `{"level","msg","time"}`, which conmon
//! reads back to report why a runtime call failed).

use std::io::Write;
use std::path::PathBuf;

/// `--log` and `--log-format` of the command line.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub file: Option<PathBuf>,
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

impl Log {
    pub fn error(&self, msg: &str) {
        self.emit(Level::Error, msg);
    }

    pub fn warn(&self, msg: &str) {
        self.emit(Level::Warning, msg);
    }

    /// One record to stderr and, with `--log`, to the log file. Write errors are ignored: the
    /// record is the report of a failure, there is nobody left to report its own failure to.
    pub fn emit(&self, level: Level, msg: &str) {
        let time = crate::state::now_rfc3339();
        let text = text_line(level, msg, &time);
        eprintln!("{text}");
        if let Some(path) = &self.file {
            let line = if self.json { serde_json::json!({ "level": level.as_str(), "msg": msg, "time": time }).to_string() } else { text };
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{line}");
            }
        }
    }
}

/// A logfmt line as runc's logger prints it: values quoted, so that a message stays on one line.
pub fn text_line(level: Level, msg: &str, time: &str) -> String {
    format!("time={} level={} msg={}", quote(time), level.as_str(), quote(msg))
}

/// `s` in double quotes with `"`, `\` and control characters escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_line_with_its_level() {
        let l = text_line(Level::Error, "container \"x\" failed:\nbad\\thing", "2026-01-01T00:00:00Z");
        assert_eq!(l, r#"time="2026-01-01T00:00:00Z" level=error msg="container \"x\" failed:\nbad\\thing""#);
        assert!(!l.contains('\n'));
    }
}
