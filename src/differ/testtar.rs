//! A tar writer for tests that writes whatever it is told, including what no well-behaved
//! writer would (`../` names, absolute links, absurd sizes, broken PAX records).
pub struct Tar {
    pub out: Vec<u8>,
    format: Format,
}

#[derive(Clone, Copy)]
pub enum Format {
    Ustar,
    Gnu,
}

#[derive(Clone)]
pub struct Entry<'a> {
    pub typeflag: u8,
    pub name: &'a [u8],
    pub linkname: &'a [u8],
    pub mode: i64,
    pub uid: i64,
    pub gid: i64,
    pub size: i64,
    pub mtime: i64,
    pub major: i64,
    pub minor: i64,
}

impl Default for Entry<'_> {
    fn default() -> Self {
        Entry {
            typeflag: b'0',
            name: b"",
            linkname: b"",
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 1_600_000_000,
            major: 0,
            minor: 0,
        }
    }
}

fn octal(field: &mut [u8], v: i64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    let s = s.as_bytes();
    if s.len() < field.len() {
        field[..s.len()].copy_from_slice(s);
        field[s.len()] = 0;
    } else {
        // base-256
        let mut x = v;
        for i in (0..field.len()).rev() {
            field[i] = x as u8;
            x >>= 8;
        }
        field[0] |= 0x80;
    }
}

pub fn pax_record(k: &str, v: &[u8]) -> Vec<u8> {
    let body_len = 1 + k.len() + 1 + v.len() + 1;
    let mut n = body_len + 1;
    while format!("{n}").len() + body_len != n {
        n += 1;
    }
    let mut r = format!("{n} {k}=").into_bytes();
    r.extend_from_slice(v);
    r.push(b'\n');
    r
}

impl Tar {
    pub fn new() -> Tar {
        Tar {
            out: Vec::new(),
            format: Format::Ustar,
        }
    }

    pub fn gnu() -> Tar {
        Tar {
            out: Vec::new(),
            format: Format::Gnu,
        }
    }

    pub fn block(e: &Entry, format: Format) -> [u8; 512] {
        let mut b = [0u8; 512];
        let n = e.name.len().min(100);
        b[..n].copy_from_slice(&e.name[..n]);
        octal(&mut b[100..108], e.mode);
        octal(&mut b[108..116], e.uid);
        octal(&mut b[116..124], e.gid);
        octal(&mut b[124..136], e.size);
        octal(&mut b[136..148], e.mtime);
        b[156] = e.typeflag;
        let l = e.linkname.len().min(100);
        b[157..157 + l].copy_from_slice(&e.linkname[..l]);
        match format {
            Format::Ustar => {
                b[257..263].copy_from_slice(b"ustar\x00");
                b[263..265].copy_from_slice(b"00");
            }
            Format::Gnu => {
                b[257..263].copy_from_slice(b"ustar ");
                b[263..265].copy_from_slice(b" \x00");
            }
        }
        octal(&mut b[329..337], e.major);
        octal(&mut b[337..345], e.minor);
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&c| c as u32).sum();
        let s = format!("{sum:06o}\x00 ");
        b[148..156].copy_from_slice(s.as_bytes());
        b
    }

    /// A header and `data`, padded to a block.
    pub fn entry(&mut self, e: Entry, data: &[u8]) -> &mut Tar {
        let b = Tar::block(&e, self.format);
        self.out.extend_from_slice(&b);
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(&mut self, name: &str, mode: i64, data: &[u8]) -> &mut Tar {
        self.entry(
            Entry {
                name: name.as_bytes(),
                mode,
                size: data.len() as i64,
                ..Default::default()
            },
            data,
        )
    }

    pub fn dir(&mut self, name: &str, mode: i64) -> &mut Tar {
        self.entry(
            Entry {
                typeflag: b'5',
                name: name.as_bytes(),
                mode,
                ..Default::default()
            },
            b"",
        )
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.entry(
            Entry {
                typeflag: b'2',
                name: name.as_bytes(),
                linkname: target.as_bytes(),
                mode: 0o777,
                ..Default::default()
            },
            b"",
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.entry(
            Entry {
                typeflag: b'1',
                name: name.as_bytes(),
                linkname: target.as_bytes(),
                ..Default::default()
            },
            b"",
        )
    }

    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.pax_raw(b'x', &data)
    }

    /// A PAX header (`typeflag` `x`, or `g` for a global one) whose body is `data` as
    /// given, well-formed records or not.
    pub fn pax_raw(&mut self, typeflag: u8, data: &[u8]) -> &mut Tar {
        let name: &[u8] = if typeflag == b'g' {
            b"pax_global_header"
        } else {
            b"PaxHeaders/x"
        };
        self.entry(
            Entry {
                typeflag,
                name,
                size: data.len() as i64,
                ..Default::default()
            },
            data,
        )
    }

    pub fn gnu_long(&mut self, typeflag: u8, value: &[u8]) -> &mut Tar {
        let mut data = value.to_vec();
        data.push(0);
        self.entry(
            Entry {
                typeflag,
                name: b"././@LongLink",
                size: data.len() as i64,
                ..Default::default()
            },
            &data,
        )
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}
