//! Lexical path functions with the semantics of Go's `path/filepath` on Unix (Clean,
//! Split, Join, Dir, Base), on bytes: tar names need not be UTF-8, and the applier must
//! resolve every name exactly as containerd's does.

/// Go's `filepath.Clean`: the shortest equivalent path by purely lexical processing.
pub fn clean(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let n = path.len();
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let mut r = 0;
    // `dotdot` is the index in `out` where `..` can no longer backtrack.
    let mut dotdot = 0;
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        if path[r] == b'/' || (path[r] == b'.' && (r + 1 == n || path[r + 1] == b'/')) {
            // An empty or `.` element.
            r += 1;
        } else if path[r] == b'.' && path[r + 1] == b'.' && (r + 2 == n || path[r + 2] == b'/') {
            r += 2;
            if out.len() > dotdot {
                // Backtrack to the previous separator.
                let mut w = out.len() - 1;
                while w > dotdot && out[w] != b'/' {
                    w -= 1;
                }
                out.truncate(w);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && path[r] != b'/' {
                out.push(path[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Go's `filepath.Split`: everything up to and including the last `/`, and the rest.
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&c| c == b'/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

/// Go's `filepath.Join`: the non-empty elements joined by `/`, cleaned; "" if all are empty.
pub fn join(elems: &[&[u8]]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut first = true;
    for e in elems.iter().filter(|e| !e.is_empty()) {
        if !first {
            buf.push(b'/');
        }
        buf.extend_from_slice(e);
        first = false;
    }
    if first {
        return Vec::new();
    }
    clean(&buf)
}

/// `join(&[a, b])`.
pub fn join2(a: &[u8], b: &[u8]) -> Vec<u8> {
    join(&[a, b])
}

/// Go's `filepath.Dir`: all but the last element, cleaned.
pub fn dir(path: &[u8]) -> Vec<u8> {
    let end = path
        .iter()
        .rposition(|&c| c == b'/')
        .map(|i| i + 1)
        .unwrap_or(0);
    clean(&path[..end])
}

/// Go's `filepath.Base`: the last element, trailing slashes removed; "." for "", "/" for
/// a path of slashes only.
pub fn base(path: &[u8]) -> &[u8] {
    if path.is_empty() {
        return b".";
    }
    let mut end = path.len();
    while end > 0 && path[end - 1] == b'/' {
        end -= 1;
    }
    if end == 0 {
        return b"/";
    }
    let p = &path[..end];
    match p.iter().rposition(|&c| c == b'/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[u8]) -> &str {
        std::str::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_matches_go() {
        // Cases from Go's path/filepath tests.
        let cases = [
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("", "."),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("/abc/", "/abc"),
            ("//abc", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("/../abc", "/abc"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
            ("./", "."),
            ("./.wh..wh..opq", ".wh..wh..opq"),
        ];
        for (input, want) in cases {
            assert_eq!(s(&clean(input.as_bytes())), want, "clean({input:?})");
        }
    }

    #[test]
    fn split_join_dir_base() {
        assert_eq!(split(b"a/b/c"), (&b"a/b/"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        assert_eq!(split(b"/"), (&b"/"[..], &b""[..]));
        assert_eq!(s(&join(&[b"/root", b"/"])), "/root");
        assert_eq!(s(&join(&[b"", b""])), "");
        assert_eq!(s(&join(&[b"/r/a", b".."])), "/r");
        assert_eq!(s(&join(&[b"/", b".."])), "/");
        assert_eq!(s(&dir(b"/r/a/b")), "/r/a");
        assert_eq!(s(&dir(b"b")), ".");
        assert_eq!(s(&dir(b"/b")), "/");
        assert_eq!(s(base(b"/r/a/")), "a");
        assert_eq!(s(base(b"//")), "/");
        assert_eq!(s(base(b"")), ".");
    }
}
