//! Probes and lifecycle hooks of a container as the manifest writes them, and their conversion
//! into the container layer's `Probe` and `Action`.

use serde::Deserialize;
use serde_json::Value;
use crate::pod::PodError;
use crate::container::probe::{Action, Probe};

use super::*;

/// A probe's or hook's action: exactly one of exec, httpGet, tcpSocket.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct HandlerDoc {
    #[serde(default)]
    pub(super) exec: Option<ExecDoc>,
    #[serde(default)]
    pub(super) http_get: Option<HttpGetDoc>,
    #[serde(default)]
    pub(super) tcp_socket: Option<TcpDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecDoc {
    #[serde(default)]
    pub(super) command: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpGetDoc {
    #[serde(default)]
    pub(super) path: Option<String>,
    pub(super) port: Value,
    #[serde(default)]
    pub(super) host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TcpDoc {
    pub(super) port: Value,
    #[serde(default)]
    pub(super) host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProbeDoc {
    #[serde(flatten)]
    pub(super) handler: HandlerDoc,
    #[serde(default)]
    pub(super) initial_delay_seconds: Option<u32>,
    #[serde(default)]
    pub(super) period_seconds: Option<u32>,
    #[serde(default)]
    pub(super) timeout_seconds: Option<u32>,
    #[serde(default)]
    pub(super) success_threshold: Option<u32>,
    #[serde(default)]
    pub(super) failure_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct LifecycleDoc {
    #[serde(default)]
    pub(super) post_start: Option<HandlerDoc>,
    #[serde(default)]
    pub(super) pre_stop: Option<HandlerDoc>,
}

/// A probe's or hook's action (`field`: its path).
pub(super) fn action(field: &str, h: HandlerDoc) -> Result<Action, PodError> {
    let port = |f: &str, v: &Value| -> Result<u16, PodError> {
        match v.as_u64() {
            Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
            _ => Err(invalid(&format!("{field}.{f}.port"), format!("{v}: a port number 1-65535 (named ports are not supported)"))),
        }
    };
    match (h.exec, h.http_get, h.tcp_socket) {
        (Some(e), None, None) if !e.command.is_empty() => Ok(Action::Exec(e.command)),
        (Some(_), None, None) => Err(invalid(&format!("{field}.exec.command"), "a command is required")),
        (None, Some(g), None) => {
            let path = g.path.unwrap_or_else(|| "/".into());
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                return Err(invalid(&format!("{field}.httpGet.path"), format!("{path:?}: an absolute path without spaces")));
            }
            Ok(Action::Http { host: g.host.filter(|h| !h.is_empty()), port: port("httpGet", &g.port)?, path })
        }
        (None, None, Some(t)) => Ok(Action::Tcp { host: t.host.filter(|h| !h.is_empty()), port: port("tcpSocket", &t.port)? }),
        _ => Err(invalid(field, "give exactly one of exec, httpGet, tcpSocket")),
    }
}

pub(super) fn probe(field: &str, p: ProbeDoc, one_success: bool) -> Result<Probe, PodError> {
    let success_threshold = p.success_threshold.unwrap_or(1);
    if one_success && success_threshold != 1 {
        return Err(invalid(&format!("{field}.successThreshold"), "must be 1 for liveness and startup probes"));
    }
    let positive = |name: &str, v: Option<u32>, default: u32| -> Result<u32, PodError> {
        match v {
            Some(0) => Err(invalid(&format!("{field}.{name}"), "must be at least 1")),
            Some(v) => Ok(v),
            None => Ok(default),
        }
    };
    Ok(Probe {
        action: action(field, p.handler)?,
        initial_delay: p.initial_delay_seconds.unwrap_or(0),
        period: positive("periodSeconds", p.period_seconds, 10)?,
        timeout: positive("timeoutSeconds", p.timeout_seconds, 1)?,
        success_threshold: positive("successThreshold", Some(success_threshold), 1)?,
        failure_threshold: positive("failureThreshold", p.failure_threshold, 3)?,
    })
}
