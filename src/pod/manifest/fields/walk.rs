//! Walking a Pod document against `FIELDS`: each field looked up by its path pattern, honoured
//! ones kept, accepted ones dropped with a note, refused or unknown ones an error naming the
//! path (and the nearest known name).

use serde_json::{Map, Value};
use crate::pod::manifest::invalid_at;
use crate::pod::PodError;
use Class::*;

use super::*;

pub(super) fn note(notes: &mut Notes, pattern: &str, reason: &str) {
    let line = format!("{pattern}: {reason}");
    if !notes.contains(&line) {
        notes.push(line);
    }
}

/// An init container has the fields of a container: its patterns are looked up as theirs.
/// The same for the readiness and startup probes (the liveness probe's fields) and the preStop
/// hook (postStart's).
pub(super) fn canonical(pattern: &str) -> String {
    let p = match pattern.strip_prefix("spec.initContainers[]") {
        Some(rest) => format!("spec.containers[]{rest}"),
        None => pattern.to_string(),
    };
    for (alias, of) in [
        ("spec.containers[].readinessProbe", "spec.containers[].livenessProbe"),
        ("spec.containers[].startupProbe", "spec.containers[].livenessProbe"),
        ("spec.containers[].lifecycle.preStop", "spec.containers[].lifecycle.postStart"),
    ] {
        if let Some(rest) = p.strip_prefix(alias).filter(|r| r.is_empty() || r.starts_with('.')) {
            return format!("{of}{rest}");
        }
    }
    p
}

pub(super) fn lookup(pattern: &str) -> Option<&'static Field> {
    let pattern = canonical(pattern);
    FIELDS.iter().find(|f| f.path == pattern)
}

/// Direct children of `parent` in the table (`parent` "" is the top).
pub(super) fn children(parent: &str) -> impl Iterator<Item = &'static Field> + '_ {
    let parent = canonical(parent);
    FIELDS.iter().filter(move |f| match f.path.rsplit_once('.') {
        Some((p, _)) => p == parent,
        None => parent.is_empty(),
    })
}

pub(super) fn last_segment(path: &str) -> &str {
    path.rsplit_once('.').map(|(_, n)| n).unwrap_or(path)
}

pub(super) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() { name.to_string() } else { format!("{parent}.{name}") }
}

/// Levenshtein distance, ignoring case (so `ContainerPort` finds `containerPort`).
pub(super) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known field under `parent` nearest to `name`, if it is near enough to be a typo.
pub fn suggest(parent: &str, name: &str) -> Option<&'static str> {
    children(parent)
        .map(|f| (distance(name, last_segment(f.path)), last_segment(f.path)))
        .filter(|(d, known)| *d <= (known.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// Check `doc` (one Pod document) against the table: remove what is accepted and ignored (noting
/// it), fail on what is refused or unknown. What is left is the honoured subset.
pub fn walk(doc_label: &str, doc: &mut Value, notes: &mut Notes) -> Result<(), PodError> {
    if let Some(spec) = doc.get_mut("spec").and_then(Value::as_object_mut) {
        drop_service_account_volume(spec, notes);
    }
    walk_object(doc_label, "", "", doc, notes)
}

pub(super) fn walk_object(doc: &str, pattern: &str, concrete: &str, v: &mut Value, notes: &mut Notes) -> Result<(), PodError> {
    let Some(obj) = v.as_object_mut() else { return Ok(()) }; // a wrong type is the typed parse's to report
    for key in obj.keys() {
        if lookup(&join(pattern, key)).is_none() {
            let msg = match suggest(pattern, key) {
                Some(s) => format!("unknown field; did you mean `{s}`?"),
                None => "unknown field".to_string(),
            };
            return Err(invalid_at(doc, &join(concrete, key), msg));
        }
    }
    for field in children(pattern) {
        let name = last_segment(field.path);
        let Some(value) = obj.get_mut(name) else { continue };
        let here = join(concrete, name);
        match field.class {
            Honoured => descend(doc, field.path, &here, value, notes)?,
            Ignored(reason) => {
                note(notes, field.path, reason);
                obj.remove(name);
            }
            Refused(reason) => return Err(invalid_at(doc, &here, format!("not supported: {reason}"))),
            OnlyIf { accept, note: why, refused } => {
                if !accept.accepts(value) {
                    return Err(invalid_at(doc, &here, format!("{value} is not supported (only {}): {refused}", accept.describe())));
                }
                if let Some(why) = why {
                    note(notes, field.path, why);
                }
                obj.remove(name);
            }
        }
    }
    Ok(())
}

pub(super) fn descend(doc: &str, pattern: &str, concrete: &str, v: &mut Value, notes: &mut Notes) -> Result<(), PodError> {
    let elements = format!("{pattern}[]");
    match v {
        Value::Array(items) if children(&elements).next().is_some() => {
            for (i, item) in items.iter_mut().enumerate() {
                walk_object(doc, &elements, &format!("{concrete}[{i}]"), item, notes)?;
            }
            Ok(())
        }
        Value::Object(_) if children(pattern).next().is_some() => walk_object(doc, pattern, concrete, v, notes),
        // A leaf (labels, command, ...): the typed parse checks it.
        _ => Ok(()),
    }
}

/// The service-account token volume that the API server adds to every pod
/// (`kube-api-access-xxxxx`: a projected token, the cluster's CA and the namespace) and its
/// mount in each container. Accepted and ignored, not refused: every `kubectl get pod -o yaml`
/// has it, and on a node without an API server the token would have nothing to talk to.
pub(super) fn drop_service_account_volume(spec: &mut Map<String, Value>, notes: &mut Notes) {
    // Kubernetes 1.22 on: a projected volume `kube-api-access-*`; before: a secret volume of the
    // service account's token secret, `<account>-token-*`.
    let is_sa = |v: &Value| {
        let Some(o) = v.as_object() else { return false };
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        let only = |kind: &str| o.contains_key(kind) && o.keys().all(|k| k == "name" || k == kind);
        (name.starts_with("kube-api-access-") && only("projected"))
            || (only("secret") && v.pointer("/secret/secretName").and_then(Value::as_str).is_some_and(|s| s.contains("-token-")))
    };
    let Some(Value::Array(volumes)) = spec.get_mut("volumes") else { return };
    let names: Vec<String> = volumes.iter().filter(|v| is_sa(v)).filter_map(|v| v["name"].as_str().map(String::from)).collect();
    if names.is_empty() {
        return;
    }
    volumes.retain(|v| !is_sa(v));
    if volumes.is_empty() {
        spec.remove("volumes");
    }
    for list in ["containers", "initContainers"] {
        let Some(Value::Array(cs)) = spec.get_mut(list) else { continue };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let Some(Value::Array(mounts)) = c.get_mut("volumeMounts") else { continue };
            mounts.retain(|m| !m.get("name").and_then(Value::as_str).is_some_and(|n| names.iter().any(|x| x == n)));
            if mounts.is_empty() {
                c.remove("volumeMounts");
            }
        }
    }
    for n in &names {
        let pattern = if n.starts_with("kube-api-access-") { "kube-api-access-*" } else { "*-token-*" };
        note(notes, &format!("spec.volumes[{pattern}] and its volumeMounts"), "the service-account token volume; no API server on a podbox node");
    }
}
