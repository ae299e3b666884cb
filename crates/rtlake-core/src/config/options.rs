//! Pass-through options (`kafka.options`, `lake.storage-options`): string keys and values handed
//! to librdkafka or the object store as they are. Some of their values are credentials
//! (`sasl.password`, `aws_secret_access_key`), so `Debug` and serialization mask those the way
//! [`super::Secret`] is masked, while the code that needs them reads them through `Deref`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Words that make a key's value a credential, matched in the lower-cased key.
const SECRET_WORDS: &[&str] = &[
    "password",
    "secret",
    "token",
    "credential",
    "jaas",
    "private",
    "ssl.key.pem",
    "account_key",
    "service_account_key",
    "sas_key",
];

/// Whether an option key holds a credential, whose value is never shown.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| k.contains(w))
}

/// String options passed through to a client, credentials masked when shown.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Options(BTreeMap<String, String>);

impl Options {
    /// The options, with values shown as they will be printed: credentials as `***`.
    fn shown(&self) -> BTreeMap<&str, &str> {
        self.0
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_key(k) { "***" } else { v.as_str() };
                (k.as_str(), v)
            })
            .collect()
    }
}

impl std::ops::Deref for Options {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Options {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl From<BTreeMap<String, String>> for Options {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }
}

impl FromIterator<(String, String)> for Options {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl IntoIterator for Options {
    type Item = (String, String);
    type IntoIter = std::collections::btree_map::IntoIter<String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Options {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shown().fmt(f)
    }
}

impl Serialize for Options {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shown().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_masked_and_the_rest_shown() {
        let o: Options = [
            ("sasl.password", "pw-1"),
            ("sasl.username", "alice"),
            ("sasl.jaas.config", "x password=pw-2"),
            ("ssl.key.password", "pw-3"),
            ("aws_secret_access_key", "pw-4"),
            ("AWS_SESSION_TOKEN", "pw-5"),
            ("azure_storage_account_key", "pw-6"),
            ("aws_endpoint", "http://127.0.0.1:8333"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let shown = format!("{o:?} {}", serde_json::to_string(&o).unwrap());
        for n in 1..=6 {
            assert!(!shown.contains(&format!("pw-{n}")), "pw-{n}: {shown}");
        }
        assert!(shown.contains("alice") && shown.contains("http://127.0.0.1:8333"));
        // The code that hands them on sees them as they are.
        assert_eq!(o["sasl.password"], "pw-1");
    }
}
