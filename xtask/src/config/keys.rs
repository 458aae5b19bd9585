//! The maps of dist.yaml (`targets`, `services`, `envs`) refuse a key given twice: serde's own
//! map impls keep the last entry and drop the first without a word. serde_yaml places these
//! errors at the start of the mapping; `located` moves them to the second key.

use std::{collections::BTreeMap, fmt, marker::PhantomData};

use serde::{
    Deserialize, Deserializer,
    de::{Error, MapAccess, Visitor},
};

use crate::arch::Arch;

/// `duplicate key `NAME``, as serde words a struct field given twice (`duplicate field`).
pub(super) fn duplicate_key(name: &str) -> String {
    format!("duplicate key `{name}`")
}

/// Two spellings of one arch (`arm64:` and `aarch64:`): `second` is the later key.
pub(super) fn same_arch(second: &str, first: &str, arch: &dyn fmt::Display) -> String {
    format!("`{second}` and `{first}` name the same arch, {arch}")
}

/// The keys of a [`same_arch`] message: (second, first).
pub(super) fn parse_same_arch(msg: &str) -> Option<(&str, &str)> {
    let rest = msg.strip_prefix('`')?;
    let (second, rest) = rest.split_once("` and `")?;
    let (first, rest) = rest.split_once('`')?;
    rest.starts_with(" name the same arch, ").then_some((second, first))
}

/// `services:`, `envs:`: string keys, each once.
pub(super) fn unique<'de, D: Deserializer<'de>, V: Deserialize<'de>>(d: D) -> Result<BTreeMap<String, V>, D::Error> {
    d.deserialize_map(Unique { key: |s: &str| Ok(s.to_string()), value: PhantomData })
}

/// `targets:`: arch names or aliases, each arch once.
pub(super) fn arches<'de, D: Deserializer<'de>, V: Deserialize<'de>>(d: D) -> Result<BTreeMap<Arch, V>, D::Error> {
    d.deserialize_map(Unique { key: |s: &str| s.parse::<Arch>().map_err(|e| e.to_string()), value: PhantomData })
}

struct Unique<F, V> {
    /// The key as written → the map's key, or why it is not one.
    key: F,
    value: PhantomData<V>,
}

impl<'de, K, V, F> Visitor<'de> for Unique<F, V>
where
    K: Ord + Clone + fmt::Display,
    V: Deserialize<'de>,
    F: Fn(&str) -> Result<K, String>,
{
    type Value = BTreeMap<K, V>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        // Each key as written, to name both spellings of a repeated one.
        let mut written: BTreeMap<K, String> = BTreeMap::new();
        while let Some(raw) = map.next_key::<String>()? {
            let key = (self.key)(&raw).map_err(A::Error::custom)?;
            if let Some(first) = written.get(&key) {
                // String keys are equal only as written: two spellings happen to arches alone.
                return Err(A::Error::custom(if *first == raw {
                    duplicate_key(&raw)
                } else {
                    same_arch(&raw, first, &key)
                }));
            }
            written.insert(key.clone(), raw);
            out.insert(key, map.next_value()?);
        }
        Ok(out)
    }
}
