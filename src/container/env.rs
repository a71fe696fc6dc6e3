//! A process environment as OCI spells it (`KEY=VALUE` strings), and the one way podbox sets
//! variables over another environment (image config, pod spec, `exec -e`): an entry replaces
//! every earlier one with the same name, the name being what stands before the first `=`.

/// The variable name of an entry: what stands before its first `=` (all of it when none).
pub fn key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// `base` with each of `set` appended in order, after removing the entries of the same name.
pub fn merge(base: &mut Vec<String>, set: impl IntoIterator<Item = String>) {
    for entry in set {
        base.retain(|e| key(e) != key(&entry));
        base.push(entry);
    }
}

/// `(name, value)` pairs as `KEY=VALUE` entries.
pub fn entries<'a>(pairs: impl IntoIterator<Item = &'a (String, String)>) -> impl Iterator<Item = String> {
    pairs.into_iter().map(|(k, v)| format!("{k}={v}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_entry_replaces_every_one_of_the_same_name() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".into(), "AB=2".into(), "A=3".into(), "FLAG".into()];
        merge(&mut env, ["A=x=y".to_string(), "FLAG=on".into(), "NEW=".into()]);
        assert_eq!(env, vec!["PATH=/bin", "AB=2", "A=x=y", "FLAG=on", "NEW="]);
        assert_eq!((key("A=x=y"), key("FLAG"), key("=v")), ("A", "FLAG", ""));
        let pairs = [("K".to_string(), "v".to_string())];
        assert_eq!(entries(&pairs).collect::<Vec<_>>(), vec!["K=v"]);
    }
}
