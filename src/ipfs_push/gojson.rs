//! JSON bytes exactly as Go's `encoding/json` `Marshal` writes them, for the handful of
//! shapes nerdctl's `ipfs://` format needs. The CID nerdctl prints is the hash of such
//! bytes, so "equivalent JSON" is not enough: field order, omitted empties, `null` for nil
//! slices and Go's string escaping (HTML characters, U+2028/9) must all match.

/// An output buffer with Go's encoding of scalars and the punctuation of objects.
#[derive(Default)]
pub struct GoJson {
    out: Vec<u8>,
    /// Whether the object being written already has a field (so the next needs a comma).
    has_field: Vec<bool>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl GoJson {
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    pub fn begin_object(&mut self) {
        self.out.push(b'{');
        self.has_field.push(false);
    }

    pub fn end_object(&mut self) {
        self.has_field.pop();
        self.out.push(b'}');
    }

    /// Starts the next field of the current object: a comma if needed, the quoted key, a colon.
    pub fn key(&mut self, k: &str) {
        if let Some(has) = self.has_field.last_mut() {
            if *has {
                self.out.push(b',');
            }
            *has = true;
        }
        self.string(k);
        self.out.push(b':');
    }

    pub fn int(&mut self, n: i64) {
        self.out.extend_from_slice(n.to_string().as_bytes());
    }

    pub fn null(&mut self) {
        self.out.extend_from_slice(b"null");
    }

    /// A JSON array of `items`, each written by `f`.
    pub fn array<T>(&mut self, items: &[T], mut f: impl FnMut(&mut GoJson, &T)) {
        self.out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            f(self, item);
        }
        self.out.push(b']');
    }

    /// A string as Go's `appendString` with `escapeHTML` writes it: `<`, `>`, `&` and
    /// control characters as `\u00xx` (except `\b \f \n \r \t`), U+2028 and U+2029 escaped.
    /// (Rust strings are valid UTF-8, so Go's `\ufffd` replacement never applies.)
    pub fn string(&mut self, s: &str) {
        self.out.push(b'"');
        for c in s.chars() {
            match c {
                '\\' => self.out.extend_from_slice(b"\\\\"),
                '"' => self.out.extend_from_slice(b"\\\""),
                '\u{8}' => self.out.extend_from_slice(b"\\b"),
                '\u{c}' => self.out.extend_from_slice(b"\\f"),
                '\n' => self.out.extend_from_slice(b"\\n"),
                '\r' => self.out.extend_from_slice(b"\\r"),
                '\t' => self.out.extend_from_slice(b"\\t"),
                '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                    let b = c as u8;
                    self.out.extend_from_slice(b"\\u00");
                    self.out.push(HEX[(b >> 4) as usize]);
                    self.out.push(HEX[(b & 0xf) as usize]);
                }
                '\u{2028}' => self.out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => self.out.extend_from_slice(b"\\u2029"),
                _ => {
                    let mut buf = [0u8; 4];
                    self.out
                        .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        self.out.push(b'"');
    }

    /// A `map[string]string`: keys in byte order, as Go sorts them.
    pub fn string_map(&mut self, m: &std::collections::BTreeMap<String, String>) {
        self.begin_object();
        for (k, v) in m {
            self.key(k);
            self.string(v);
        }
        self.end_object();
    }
}

#[cfg(test)]
mod tests {
    use super::GoJson;
    use std::collections::BTreeMap;

    fn s(x: &str) -> String {
        let mut j = GoJson::default();
        j.string(x);
        String::from_utf8(j.into_bytes()).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_go_does() {
        assert_eq!(s("plain/text+json"), r#""plain/text+json""#);
        assert_eq!(s(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(s("<a&b>"), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(s("\u{8}\u{c}\n\r\t"), r#""\b\f\n\r\t""#);
        assert_eq!(s("\u{0}\u{1f}\u{7f}"), "\"\\u0000\\u001f\u{7f}\"");
        assert_eq!(s("x\u{2028}y\u{2029}"), r#""x\u2028y\u2029""#);
        assert_eq!(s("é✓😀"), "\"é✓😀\"");
    }

    #[test]
    fn objects_maps_and_arrays() {
        let mut j = GoJson::default();
        j.begin_object();
        j.key("n");
        j.int(-3);
        j.key("m");
        let mut m = BTreeMap::new();
        m.insert("b".to_string(), "2".to_string());
        m.insert("a".to_string(), "1".to_string());
        m.insert("B".to_string(), "0".to_string());
        j.string_map(&m);
        j.key("l");
        j.array(&["x", "y"], |j, v| j.string(v));
        j.key("z");
        j.null();
        j.end_object();
        assert_eq!(
            String::from_utf8(j.into_bytes()).unwrap(),
            r#"{"n":-3,"m":{"B":"0","a":"1","b":"2"},"l":["x","y"],"z":null}"#
        );
    }
}
