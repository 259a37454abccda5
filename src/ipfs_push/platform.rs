//! Which manifests of an index are kept, as nerdctl chooses them: with no `--platform`,
//! only the host's own platform (containerd's `platforms.DefaultStrict`); with
//! `--platform`, those; with `--all-platforms`, every one. A manifest without a platform is
//! always kept. Platforms are compared after containerd's normalisation (`x86_64` is
//! `amd64`, `aarch64` is `arm64`, amd64's `v1` and arm64's `v8` variants are the default).
use super::oci::Platform;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normal {
    os: String,
    arch: String,
    variant: String,
}

fn normalize(os: &str, arch: &str, variant: &str) -> Normal {
    let os = os.to_ascii_lowercase();
    let (arch, variant) = match (arch.to_ascii_lowercase().as_str(), variant) {
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64".to_string(), String::new()),
        ("x86_64" | "x86-64", v) => ("amd64".to_string(), v.to_string()),
        ("aarch64" | "arm64", "8" | "v8") => ("arm64".to_string(), String::new()),
        ("aarch64", v) => ("arm64".to_string(), v.to_string()),
        ("armhf", _) => ("arm".to_string(), "v7".to_string()),
        ("armel", _) => ("arm".to_string(), "v6".to_string()),
        ("arm", "") => ("arm".to_string(), "v7".to_string()),
        ("arm", v) if v.len() == 1 && v.as_bytes()[0].is_ascii_digit() => {
            ("arm".to_string(), format!("v{v}"))
        }
        ("i386", v) => ("386".to_string(), v.to_string()),
        (a, v) => (a.to_string(), v.to_string()),
    };
    Normal { os, arch, variant }
}

/// The platforms an export keeps.
#[derive(Debug, Clone)]
pub enum PlatformMatch {
    All,
    Only(Vec<Normal>),
}

impl PlatformMatch {
    /// `all` wins; otherwise the given `os/arch[/variant]` strings, or the host's platform.
    pub fn new(all: bool, wanted: &[String]) -> Result<PlatformMatch, String> {
        if all {
            return Ok(PlatformMatch::All);
        }
        if wanted.is_empty() {
            return Ok(PlatformMatch::Only(vec![host()]));
        }
        wanted
            .iter()
            .map(|s| parse(s))
            .collect::<Result<_, _>>()
            .map(PlatformMatch::Only)
    }

    pub fn matches(&self, p: &Platform) -> bool {
        match self {
            PlatformMatch::All => true,
            PlatformMatch::Only(list) => {
                let n = normalize(&p.os, &p.architecture, &p.variant);
                list.contains(&n)
            }
        }
    }
}

fn parse(s: &str) -> Result<Normal, String> {
    let parts: Vec<&str> = s.split('/').collect();
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    };
    match parts.as_slice() {
        [os, arch] if ok(os) && ok(arch) => Ok(normalize(os, arch, "")),
        [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => {
            Ok(normalize(os, arch, variant))
        }
        _ => Err(format!(
            "platform {s:?} is not os/arch[/variant], e.g. linux/arm64"
        )),
    }
}

fn host() -> Normal {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    normalize(std::env::consts::OS, arch, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: &str) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.into(),
            ..Platform::default()
        }
    }

    #[test]
    fn normalised_platforms_match() {
        let m =
            PlatformMatch::new(false, &["linux/amd64".into(), "linux/arm64/v8".into()]).unwrap();
        assert!(m.matches(&p("linux", "amd64", "")));
        assert!(m.matches(&p("linux", "amd64", "v1")));
        assert!(m.matches(&p("linux", "x86_64", "")));
        assert!(m.matches(&p("linux", "arm64", "")));
        assert!(m.matches(&p("Linux", "aarch64", "v8")));
        assert!(!m.matches(&p("linux", "arm", "v7")));
        assert!(!m.matches(&p("linux", "amd64", "v3")));
        assert!(!m.matches(&p("windows", "amd64", "")));
        assert!(!m.matches(&p("unknown", "unknown", "")));
    }

    #[test]
    fn the_default_is_the_host_and_all_keeps_everything() {
        let m = PlatformMatch::new(false, &[]).unwrap();
        assert!(m.matches(&p("linux", "amd64", "")) || std::env::consts::ARCH != "x86_64");
        assert!(!m.matches(&p("linux", "s390x", "")));
        assert!(PlatformMatch::new(true, &["bad".into()])
            .unwrap()
            .matches(&p("linux", "s390x", "")));
    }

    #[test]
    fn bad_platform_strings_are_refused() {
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(PlatformMatch::new(false, &[bad.into()]).is_err(), "{bad}");
        }
    }
}
