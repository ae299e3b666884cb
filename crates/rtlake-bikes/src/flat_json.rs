//! A fast path for the one JSON shape the producer writes: a compact object of string values.
//!
//! serde_json spent about a quarter of a drain's CPU on the station events (its struct visitor,
//! a key match and a UTF-8 check per field, `bench/README.md`), on a shape that never varies.
//! [`flat_strings`] reads that shape by hand and gives up on anything else (whitespace, escapes,
//! other keys, repeated or missing keys, a value that is not a string), so that serde_json, its
//! errors and its rules, still decide every message the fast path does not take. What it does
//! take, serde_json would have read to the same strings.

/// The string values of `keys` in `value`, in the order of `keys`, when `value` is exactly a
/// compact JSON object holding each key once with a string value free of escapes and control
/// characters, and nothing else; `None` for anything else, valid JSON or not.
pub(crate) fn flat_strings<'a, const N: usize>(
    value: &'a [u8],
    keys: &[&str; N],
) -> Option<[&'a str; N]> {
    // One check of the whole message: a `"` is never inside a multi-byte character, so every
    // slice between quotes below is on a character boundary.
    let text = std::str::from_utf8(value).ok()?;
    let bytes = text.as_bytes();
    // One pass for what the fast path never takes, an escape or a control character anywhere,
    // without an early exit so that it runs on whole vectors; the strings below then only
    // look for their closing quote.
    let refused = bytes
        .iter()
        .fold(false, |seen, &b| seen | (b == b'\\') | (b < 0x20));
    if refused {
        return None;
    }
    let mut found: [Option<&'a str>; N] = [None; N];
    // Keys usually come in the contract's order: the one after the last is tried first.
    let mut next_key = 0;
    if *bytes.first()? != b'{' {
        return None;
    }
    let mut at = 1;
    loop {
        let (key_start, key_end) = string_at(bytes, at)?;
        if *bytes.get(key_end + 1)? != b':' {
            return None;
        }
        let (value_start, value_end) = string_at(bytes, key_end + 2)?;
        let key = &bytes[key_start..key_end];
        let k = if keys.get(next_key).is_some_and(|k| k.as_bytes() == key) {
            next_key
        } else {
            keys.iter().position(|k| k.as_bytes() == key)?
        };
        if found[k].is_some() {
            return None;
        }
        found[k] = Some(&text[value_start..value_end]);
        next_key = k + 1;
        at = value_end + 1;
        match *bytes.get(at)? {
            b',' => at += 1,
            b'}' if at + 1 == bytes.len() => break,
            _ => return None,
        }
    }
    let mut out = [""; N];
    for (slot, value) in out.iter_mut().zip(found) {
        *slot = value?;
    }
    Some(out)
}

/// The bounds of the contents of the string whose opening quote is at `at` (the caller has
/// already refused escapes and control characters).
fn string_at(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    if *bytes.get(at)? != b'"' {
        return None;
    }
    let start = at + 1;
    let len = bytes.get(start..)?.iter().position(|&b| b == b'"')?;
    Some((start, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEYS: [&str; 3] = ["a", "name", "z"];

    /// What serde_json reads from `value`, as the three keys' strings, if it is an object of
    /// strings holding them all.
    fn serde(value: &[u8]) -> Option<[String; 3]> {
        let map: HashMap<String, String> = serde_json::from_slice(value).ok()?;
        Some(KEYS.map(|k| map.get(k).cloned().unwrap_or_default()))
    }

    #[test]
    fn takes_the_compact_shape_in_any_order() {
        for value in [
            r#"{"a":"1","name":"102. 망원역 1번출구 앞","z":""}"#,
            r#"{"z":"","a":"1","name":"102. 망원역 1번출구 앞"}"#,
        ] {
            let fast = flat_strings(value.as_bytes(), &KEYS).expect("the compact shape is taken");
            assert_eq!(fast, ["1", "102. 망원역 1번출구 앞", ""]);
            assert_eq!(serde(value.as_bytes()).unwrap(), fast.map(String::from));
        }
    }

    #[test]
    fn leaves_every_other_shape_to_serde() {
        let others: [&[u8]; 16] = [
            br#"{"a":"1","name":"x","z":"3"} "#,
            br#"{ "a":"1","name":"x","z":"3"}"#,
            br#"{"a": "1","name":"x","z":"3"}"#,
            br#"{"a":"1","name":"x\"y","z":"3"}"#,
            br#"{"a":"1","name":"\u0041","z":"3"}"#,
            b"{\"a\":\"1\",\"name\":\"x\ty\",\"z\":\"3\"}",
            br#"{"a":"1","name":"x","z":"3","extra":"4"}"#,
            br#"{"a":"1","name":"x"}"#,
            br#"{"a":"1","name":"x","z":"3","a":"2"}"#,
            br#"{"a":1,"name":"x","z":"3"}"#,
            br#"{"a":"1","name":null,"z":"3"}"#,
            br#"{"a":"1","name":"x","z":"3"}}"#,
            b"{\"a\":\"1\",\"name\":\"\xff\",\"z\":\"3\"}",
            br#"{"a":"1","name":"x","z":"3""#,
            br#"{}"#,
            br#"["a","1"]"#,
        ];
        for value in others {
            assert_eq!(
                flat_strings(value, &KEYS),
                None,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        // An escape is why: serde reads it to another string than the raw bytes.
        assert_eq!(
            serde(br#"{"a":"1","name":"\u0041","z":"3"}"#).unwrap()[1],
            "A"
        );
    }
}
