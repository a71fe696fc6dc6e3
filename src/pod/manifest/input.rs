//! Reading manifests: the size and nesting caps, YAML or JSON into documents (`---`, `kind: List`),
//! the apiVersion check, and each document into a `PodSpec`.

use std::io::Read;
use std::path::Path;
use serde_json::Value;
use crate::pod::PodError;
use crate::pod::model::PodSpec;

use super::*;

/// The largest manifest podbox reads: a pod is a few KiB; this stops `-f /dev/zero` at once.
pub const MAX_BYTES: usize = 1 << 20;

/// The deepest nesting of `[`/`{` a manifest may have (a Pod needs fewer than 10 levels). Checked
/// by a linear scan before parsing, so a hostile flow nesting costs no parser time.
pub const MAX_DEPTH: usize = 100;

/// Read a manifest (`-` is stdin), at most `MAX_BYTES`.
pub fn read(path: &Path) -> Result<String, PodError> {
    let name = path.display();
    let file: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| PodError::Invalid(format!("reading {name}: {e}")))?)
    };
    let mut buf = Vec::new();
    file.take(MAX_BYTES as u64 + 1).read_to_end(&mut buf).map_err(|e| PodError::Invalid(format!("reading {name}: {e}")))?;
    if buf.len() > MAX_BYTES {
        return Err(PodError::Invalid(format!("{name}: a manifest may have at most {MAX_BYTES} bytes")));
    }
    String::from_utf8(buf).map_err(|e| PodError::Invalid(format!("{name}: not UTF-8 text (byte {})", e.utf8_error().valid_up_to())))
}

/// Refuse nesting deeper than `MAX_DEPTH` before a parser sees it. Counts `[`/`{` that open a
/// flow collection (at the start of a value) and their closers, skipping quoted scalars and
/// comments; YAML's block nesting needs indentation, so the size cap bounds it.
pub(super) fn check_depth(text: &str) -> Result<(), PodError> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    // The character before, outside quotes: an opener counts only where a value can start.
    let mut prev = '\n';
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        if let Some(q) = quote {
            if c == '\\' && q == '"' {
                chars.next();
            } else if c == q {
                quote = None;
            }
            prev = c;
            continue;
        }
        let value_starts = matches!(prev, '\n' | ' ' | '\t' | ':' | ',' | '[' | '{' | '-');
        match c {
            '"' | '\'' if value_starts => quote = Some(c),
            '#' if matches!(prev, '\n' | ' ' | '\t') => {
                while chars.next_if(|&n| n != '\n').is_some() {}
            }
            '[' | '{' if value_starts => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(PodError::Invalid(format!("manifest line {line}: nested deeper than {MAX_DEPTH} levels")));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
    }
    Ok(())
}

/// The documents of a manifest: one JSON value, or each YAML document (empty ones skipped).
pub(super) fn documents(text: &str) -> Result<Vec<Value>, PodError> {
    if text.len() > MAX_BYTES {
        return Err(PodError::Invalid(format!("a manifest may have at most {MAX_BYTES} bytes")));
    }
    check_depth(text)?;
    if text.trim_start().starts_with('{') {
        let de = &mut serde_json::Deserializer::from_str(text);
        let v: Value = serde_path_to_error::deserialize(de).map_err(|e| invalid(&e.path().to_string(), e.inner().to_string()))?;
        return Ok(vec![v]);
    }
    let mut out = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v: Value = serde_path_to_error::deserialize(de).map_err(|e| invalid_at(&format!("document {}", i + 1), &e.path().to_string(), e.inner().to_string()))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Parse and validate a manifest: every Pod it holds (documents, and the items of `kind: List`).
pub fn parse_all(text: &str) -> Result<Vec<PodSpec>, PodError> {
    let docs = documents(text)?;
    if docs.is_empty() {
        return Err(invalid("", "the manifest holds no document"));
    }
    let several = docs.len() > 1;
    let mut pods: Vec<(String, Value)> = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let label = if several { format!("document {}", i + 1) } else { String::new() };
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            check_api_version(&label, &doc)?;
            let Some(Value::Array(items)) = doc.get("items") else {
                return Err(invalid_at(&label, "items", "a List needs a list of items"));
            };
            for (j, item) in items.iter().enumerate() {
                let l = if label.is_empty() { format!("items[{j}]") } else { format!("{label} items[{j}]") };
                pods.push((l, item.clone()));
            }
        } else {
            pods.push((label, doc));
        }
    }
    // ConfigMaps and Secrets first: a Pod may come before the objects its volumes name.
    let mut objects = objects::Objects::default();
    let mut rest = Vec::new();
    for (label, doc) in pods {
        // The document's name helps find it in an error.
        let label = match doc.pointer("/metadata/name").and_then(Value::as_str) {
            Some(n) if !label.is_empty() => format!("{label} ({n})"),
            _ => label,
        };
        match doc.get("kind").and_then(Value::as_str) {
            Some("ConfigMap" | "Secret") => {
                check_api_version(&label, &doc)?;
                objects.add(&label, doc)?;
            }
            _ => rest.push((label, doc)),
        }
    }
    if rest.is_empty() {
        return Err(invalid("", "the manifest holds no Pod"));
    }
    let mut out: Vec<PodSpec> = Vec::new();
    for (label, mut doc) in rest {
        let pod = parse_doc(&label, &mut doc, &objects)?;
        if out.iter().any(|p| p.name == pod.name) {
            return Err(invalid_at(&label, "metadata.name", format!("{:?}: two pods of this manifest have this name", pod.name)));
        }
        out.push(pod);
    }
    Ok(out)
}

/// Parse a manifest that holds exactly one Pod.
pub fn parse(text: &str) -> Result<PodSpec, PodError> {
    let mut pods = parse_all(text)?;
    if pods.len() != 1 {
        return Err(invalid("", format!("{} pods where one was expected", pods.len())));
    }
    Ok(pods.remove(0))
}

pub(super) fn check_api_version(label: &str, doc: &Value) -> Result<(), PodError> {
    match doc.get("apiVersion") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(v)) if v == "v1" => Ok(()),
        Some(v) => Err(invalid_at(label, "apiVersion", format!("{v}: only v1 is supported"))),
    }
}

pub(super) fn parse_doc(label: &str, doc: &mut Value, objects: &objects::Objects) -> Result<PodSpec, PodError> {
    if !doc.is_object() {
        return Err(invalid_at(label, "", "a document must be a mapping (a Kubernetes object)"));
    }
    check_api_version(label, doc)?;
    match doc.get("kind") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) if k == "Pod" => {}
        Some(k) => return Err(invalid_at(label, "kind", format!("{k}: only Pod, ConfigMap and Secret (and a List of them) are supported"))),
    }
    let mut ignored = Vec::new();
    fields::walk(label, doc, &mut ignored)?;
    let m: Manifest = serde_path_to_error::deserialize(doc.take()).map_err(|e| invalid_at(label, &e.path().to_string(), e.inner().to_string()))?;
    let mut pod = to_pod_spec(m, objects, &mut ignored).map_err(|e| match e {
        PodError::Manifest { field, msg, .. } => invalid_at(label, &field, msg),
        e => e,
    })?;
    pod.ignored = ignored;
    Ok(pod)
}
