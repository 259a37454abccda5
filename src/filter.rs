//! containerd's filter grammar for List and ListStatuses.
//!
//! ```text
//! selectors := selector ("," selector)*
//! selector  := fieldpath (operator value)?
//! fieldpath := field ("." field)*
//! field     := quoted | [A-Za-z0-9_]+
//! operator  := "==" | "!=" | "~="
//! value     := quoted | [^\s,]+
//! quoted    := "…" (Go escapes), or /…/ and |…| after ~=
//! ```
//! Several filter strings are OR'ed; an empty list or an empty string matches everything.
//! Matching follows containerd: `!=` is true when the field is absent, `~=` matches the
//! regexp against the empty string when the field is absent.
use regex::Regex;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("filters: parse error: [{input}] at byte {pos}: {msg}")]
pub struct FilterError {
    input: String,
    pos: usize,
    msg: String,
}

/// Something a filter can look into: returns the value at a field path, if present.
pub trait Fields {
    fn field(&self, path: &[String]) -> Option<String>;
}

#[derive(Debug, Clone)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug, Clone)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

impl Selector {
    fn matches(&self, target: &dyn Fields) -> bool {
        let value = target.field(&self.path);
        match &self.op {
            Op::Present => value.is_some(),
            Op::Equal(v) => value.as_deref() == Some(v.as_str()),
            Op::NotEqual(v) => value.as_deref().unwrap_or("") != v,
            Op::Matches(re) => re.is_match(value.as_deref().unwrap_or("")),
        }
    }
}

/// A parsed set of filter strings: OR over strings, AND within one.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    any: Vec<Vec<Selector>>,
}

impl Filter {
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Filter, FilterError> {
        let mut any = Vec::new();
        for f in filters {
            let f = f.as_ref();
            if f.is_empty() {
                // An empty string is containerd's "always".
                any.push(Vec::new());
                continue;
            }
            any.push(Parser::new(f).selectors()?);
        }
        Ok(Filter { any })
    }

    pub fn matches(&self, target: &dyn Fields) -> bool {
        self.any.is_empty()
            || self
                .any
                .iter()
                .any(|all| all.iter().all(|s| s.matches(target)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Eof,
    Quoted(String),
    Value(String),
    Field(String),
    Separator(char),
    Operator(String),
    Illegal(String),
    Other(char),
}

struct Scanner<'a> {
    input: &'a str,
    pos: usize,
    /// True right after an operator: the next bare word is a value, not a field.
    expect_value: bool,
}

fn is_field_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn is_value_char(c: char) -> bool {
    c != ',' && !c.is_whitespace() && !c.is_control()
}

impl<'a> Scanner<'a> {
    fn peek_char(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) {
        while let Some(c) = self.peek_char() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    /// Returns the token and the byte position where it starts.
    fn scan(&mut self) -> (usize, Token) {
        loop {
            let start = self.pos;
            let Some(c) = self.bump() else {
                return (start, Token::Eof);
            };
            let tok = match c {
                '\0' => Token::Illegal("unexpected null".into()),
                '"' | '/' | '|' => match self.scan_quoted(c) {
                    Ok(()) => Token::Quoted(self.input[start..self.pos].to_string()),
                    Err(msg) => Token::Illegal(msg),
                },
                ',' | '.' => {
                    self.expect_value = false;
                    Token::Separator(c)
                }
                '=' | '!' | '~' => {
                    self.take_while(|c| matches!(c, '=' | '!' | '~'));
                    self.expect_value = true;
                    Token::Operator(self.input[start..self.pos].to_string())
                }
                c if c.is_whitespace() => continue,
                c if self.expect_value && is_value_char(c) => {
                    self.take_while(is_value_char);
                    self.expect_value = false;
                    Token::Value(self.input[start..self.pos].to_string())
                }
                c if is_field_char(c) => {
                    self.take_while(is_field_char);
                    Token::Field(self.input[start..self.pos].to_string())
                }
                c => Token::Other(c),
            };
            return (start, tok);
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.peek_char()
    }

    fn scan_quoted(&mut self, quote: char) -> Result<(), String> {
        loop {
            match self.bump() {
                None | Some('\n') => return Err("quoted literal not terminated".into()),
                Some('\\') => match self.bump() {
                    Some(c) if c == quote || "abfnrtv\\".contains(c) => {}
                    Some(c @ '0'..='7') => self.scan_digits(c, 8, 3)?,
                    Some('x') => self.scan_next_digits(16, 2)?,
                    Some('u') => self.scan_next_digits(16, 4)?,
                    Some('U') => self.scan_next_digits(16, 8)?,
                    _ => return Err("illegal escape sequence".into()),
                },
                Some(c) if c == quote => return Ok(()),
                Some(_) => {}
            }
        }
    }

    fn scan_next_digits(&mut self, radix: u32, n: usize) -> Result<(), String> {
        match self.bump() {
            Some(c) => self.scan_digits(c, radix, n),
            None => Err("illegal numeric escape sequence".into()),
        }
    }

    fn scan_digits(&mut self, first: char, radix: u32, n: usize) -> Result<(), String> {
        if !first.is_digit(radix) {
            return Err("illegal numeric escape sequence".into());
        }
        for _ in 1..n {
            match self.bump() {
                Some(c) if c.is_digit(radix) => {}
                _ => return Err("illegal numeric escape sequence".into()),
            }
        }
        Ok(())
    }
}

struct Parser<'a> {
    scanner: Scanner<'a>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            scanner: Scanner {
                input,
                pos: 0,
                expect_value: false,
            },
        }
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> FilterError {
        FilterError {
            input: self.scanner.input.to_string(),
            pos,
            msg: msg.into(),
        }
    }

    fn selectors(&mut self) -> Result<Vec<Selector>, FilterError> {
        let mut all = vec![self.selector()?];
        loop {
            match self.scanner.peek() {
                Some(',') => {
                    self.scanner.scan();
                    all.push(self.selector()?);
                }
                None => return Ok(all),
                Some(c) => return Err(self.err(self.scanner.pos, format!("unexpected input: {c}"))),
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, FilterError> {
        let path = self.fieldpath()?;
        if matches!(self.scanner.peek(), None | Some(',') | Some('.')) {
            return Ok(Selector {
                path,
                op: Op::Present,
            });
        }
        let (pos, tok) = self.scanner.scan();
        let op = match tok {
            Token::Operator(op) => op,
            Token::Illegal(msg) => return Err(self.err(pos, msg)),
            _ => return Err(self.err(pos, r#"expected an operator ("=="|"!="|"~=")"#)),
        };
        let value = self.value(op == "~=")?;
        let op = match op.as_str() {
            "==" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            "~=" => Op::Matches(
                Regex::new(&value).map_err(|e| self.err(pos, format!("bad regexp: {e}")))?,
            ),
            other => return Err(self.err(pos, format!("unsupported operator {other:?}"))),
        };
        Ok(Selector { path, op })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>, FilterError> {
        let mut path = vec![self.field()?];
        while self.scanner.peek() == Some('.') {
            self.scanner.scan();
            path.push(self.field()?);
        }
        Ok(path)
    }

    fn field(&mut self) -> Result<String, FilterError> {
        let (pos, tok) = self.scanner.scan();
        match tok {
            Token::Field(f) => Ok(f),
            Token::Quoted(q) => self.unquote(pos, &q, false),
            Token::Illegal(msg) => Err(self.err(pos, msg)),
            _ => Err(self.err(pos, "expected field or quoted")),
        }
    }

    fn value(&mut self, allow_alt_quotes: bool) -> Result<String, FilterError> {
        let (pos, tok) = self.scanner.scan();
        match tok {
            Token::Value(v) | Token::Field(v) => Ok(v),
            Token::Quoted(q) => self.unquote(pos, &q, allow_alt_quotes),
            Token::Illegal(msg) => Err(self.err(pos, msg)),
            _ => Err(self.err(pos, "expected value or quoted")),
        }
    }

    fn unquote(&self, pos: usize, quoted: &str, allow_alt: bool) -> Result<String, FilterError> {
        let quote = quoted.chars().next().unwrap_or('"');
        if !allow_alt && quote != '"' {
            return Err(self.err(pos, "invalid quote encountered"));
        }
        unquote(&quoted[1..quoted.len() - 1], quote)
            .ok_or_else(|| self.err(pos, "unquoting failed: quote syntax error"))
    }
}

/// Go-style unescaping of a quoted literal's body.
fn unquote(body: &str, quote: char) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == quote {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' => Some('\\'),
            c if c == quote => Some(c),
            _ => None,
        };
        if let Some(s) = simple {
            out.push(s);
            continue;
        }
        let (radix, n, first) = match e {
            'x' => (16, 2, None),
            'u' => (16, 4, None),
            'U' => (16, 8, None),
            '0'..='7' => (8, 3, Some(e)),
            _ => return None,
        };
        let mut digits: String = first.into_iter().collect();
        while digits.len() < n {
            digits.push(chars.next()?);
        }
        let v = u32::from_str_radix(&digits, radix).ok()?;
        if e == 'x' || first.is_some() {
            // \x and octal escapes are single bytes in Go; only ASCII survives as a char.
            if v > 0x7f {
                return None;
            }
        }
        out.push(char::from_u32(v)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    struct Obj(HashMap<&'static str, &'static str>);

    impl Fields for Obj {
        fn field(&self, path: &[String]) -> Option<String> {
            self.0.get(path.join(".").as_str()).map(|s| s.to_string())
        }
    }

    fn obj() -> Obj {
        Obj(HashMap::from([
            ("digest", "sha256:abc"),
            ("labels.a", "1"),
            ("labels.a.b", "x/y"),
            ("ref", "default/1/layer-sha256:ff"),
        ]))
    }

    fn check(filters: &[&str]) -> bool {
        Filter::parse_all(filters).unwrap().matches(&obj())
    }

    #[test]
    fn empty_filters_match_everything() {
        assert!(check(&[]));
        assert!(check(&[""]));
    }

    #[test]
    fn operators_follow_containerd() {
        assert!(check(&["labels.a==1"]));
        assert!(!check(&["labels.a==2"]));
        assert!(check(&["labels.a!=2"]));
        assert!(check(&["labels.missing!=2"]));
        assert!(check(&["labels.a"]));
        assert!(!check(&["labels.missing"]));
        assert!(check(&["digest~=^sha256:"]));
        assert!(check(&[r#"ref~=/layer-sha256:[a-f]+$/"#]));
        assert!(check(&[r#"ref~=|default/1|"#]));
        assert!(check(&[r#"labels."a.b"==x/y"#]));
        assert!(check(&[r#"labels."a.b"=="x/y""#]));
        assert!(check(&["labels.a == 1"]));
    }

    #[test]
    fn comma_is_and_strings_are_or() {
        assert!(!check(&["labels.a==1,labels.a==2"]));
        assert!(check(&["labels.a==1,digest==sha256:abc"]));
        assert!(check(&["labels.a==2", "digest==sha256:abc"]));
        assert!(!check(&["labels.a==2", "digest==x"]));
    }

    #[test]
    fn malformed_filters_are_errors() {
        for bad in [
            "labels.a==",
            "==1",
            "labels.a=1",
            "labels.a<>1",
            r#"labels."a==1"#,
            "labels.a==1 trailing",
            "labels.a~=(",
            "labels.a==/1/",
            ",",
            "labels.",
            "labels.a==1,",
            "a\0b",
        ] {
            assert!(Filter::parse_all(&[bad]).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn quoted_escapes_are_decoded() {
        assert_eq!(unquote(r"a\tb\x41\u00e9\101", '"').unwrap(), "a\tbAéA");
        assert!(unquote(r"\q", '"').is_none());
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in ".{0,64}") {
            let _ = Filter::parse_all(&[s]);
        }

        #[test]
        fn parser_never_panics_on_grammar_soup(s in "[a-z\\.,=!~\"/| \\\\]{0,32}") {
            if let Ok(f) = Filter::parse_all(&[s]) {
                let _ = f.matches(&obj());
            }
        }
    }
}
