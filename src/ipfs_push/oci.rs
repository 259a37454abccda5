//! The OCI image-spec (v1.1) types that nerdctl's conversion decodes and re-encodes,
//! with Go's semantics on both sides: unknown fields are dropped, `null` and absent
//! scalars read as zero values, a missing or `null` list stays nil and is written as
//! `null`, and fields are written in the Go structs' order with their `omitempty` rules.
use super::gojson::GoJson;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// Go's zero value for `null` as well as for an absent field.
fn zero_if_null<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default, deserialize_with = "zero_if_null")]
    pub architecture: String,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub os: String,
    #[serde(rename = "os.version", default, deserialize_with = "zero_if_null")]
    pub os_version: String,
    #[serde(rename = "os.features", default, deserialize_with = "zero_if_null")]
    pub os_features: Vec<String>,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub variant: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default, deserialize_with = "zero_if_null")]
    pub media_type: String,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub digest: String,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub size: i64,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub urls: Vec<String>,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub annotations: BTreeMap<String, String>,
    /// Go's `[]byte`: base64 in JSON, kept decoded so it is re-encoded canonically.
    #[serde(default, deserialize_with = "base64_bytes")]
    pub data: Vec<u8>,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(rename = "artifactType", default, deserialize_with = "zero_if_null")]
    pub artifact_type: String,
}

fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(Vec::new());
    };
    // Go's decoder skips CR and LF inside base64 text.
    let clean: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| serde::de::Error::custom(format!("descriptor data: {e}")))
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion", default, deserialize_with = "zero_if_null")]
    pub schema_version: i64,
    #[serde(rename = "mediaType", default, deserialize_with = "zero_if_null")]
    pub media_type: String,
    #[serde(rename = "artifactType", default, deserialize_with = "zero_if_null")]
    pub artifact_type: String,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub subject: Option<Descriptor>,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion", default, deserialize_with = "zero_if_null")]
    pub schema_version: i64,
    #[serde(rename = "mediaType", default, deserialize_with = "zero_if_null")]
    pub media_type: String,
    #[serde(rename = "artifactType", default, deserialize_with = "zero_if_null")]
    pub artifact_type: String,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub subject: Option<Descriptor>,
    #[serde(default, deserialize_with = "zero_if_null")]
    pub annotations: BTreeMap<String, String>,
}

impl Platform {
    fn write(&self, j: &mut GoJson) {
        j.begin_object();
        j.key("architecture");
        j.string(&self.architecture);
        j.key("os");
        j.string(&self.os);
        if !self.os_version.is_empty() {
            j.key("os.version");
            j.string(&self.os_version);
        }
        if !self.os_features.is_empty() {
            j.key("os.features");
            j.array(&self.os_features, |j, s| j.string(s));
        }
        if !self.variant.is_empty() {
            j.key("variant");
            j.string(&self.variant);
        }
        j.end_object();
    }
}

impl Descriptor {
    pub fn write(&self, j: &mut GoJson) {
        j.begin_object();
        j.key("mediaType");
        j.string(&self.media_type);
        j.key("digest");
        j.string(&self.digest);
        j.key("size");
        j.int(self.size);
        if !self.urls.is_empty() {
            j.key("urls");
            j.array(&self.urls, |j, s| j.string(s));
        }
        if !self.annotations.is_empty() {
            j.key("annotations");
            j.string_map(&self.annotations);
        }
        if !self.data.is_empty() {
            j.key("data");
            j.string(&base64::engine::general_purpose::STANDARD.encode(&self.data));
        }
        if let Some(p) = &self.platform {
            j.key("platform");
            p.write(j);
        }
        if !self.artifact_type.is_empty() {
            j.key("artifactType");
            j.string(&self.artifact_type);
        }
        j.end_object();
    }

    /// `json.Marshal(desc)`.
    pub fn to_go_json(&self) -> Vec<u8> {
        let mut j = GoJson::default();
        self.write(&mut j);
        j.into_bytes()
    }
}

/// The fields every manifest and index start with, in Go's order.
fn write_head(j: &mut GoJson, schema_version: i64, media_type: &str, artifact_type: &str) {
    j.begin_object();
    j.key("schemaVersion");
    j.int(schema_version);
    if !media_type.is_empty() {
        j.key("mediaType");
        j.string(media_type);
    }
    if !artifact_type.is_empty() {
        j.key("artifactType");
        j.string(artifact_type);
    }
}

/// A nil slice is `null` in Go; an empty one `[]`.
fn write_list(j: &mut GoJson, list: &Option<Vec<Descriptor>>) {
    match list {
        None => j.null(),
        Some(l) => j.array(l, |j, d| d.write(j)),
    }
}

fn write_tail(
    j: &mut GoJson,
    subject: &Option<Descriptor>,
    annotations: &BTreeMap<String, String>,
) {
    if let Some(s) = subject {
        j.key("subject");
        s.write(j);
    }
    if !annotations.is_empty() {
        j.key("annotations");
        j.string_map(annotations);
    }
    j.end_object();
}

impl Manifest {
    pub fn to_go_json(&self) -> Vec<u8> {
        let mut j = GoJson::default();
        write_head(
            &mut j,
            self.schema_version,
            &self.media_type,
            &self.artifact_type,
        );
        j.key("config");
        self.config.write(&mut j);
        j.key("layers");
        write_list(&mut j, &self.layers);
        write_tail(&mut j, &self.subject, &self.annotations);
        j.into_bytes()
    }
}

impl Index {
    pub fn to_go_json(&self) -> Vec<u8> {
        let mut j = GoJson::default();
        write_head(
            &mut j,
            self.schema_version,
            &self.media_type,
            &self.artifact_type,
        );
        j.key("manifests");
        write_list(&mut j, &self.manifests);
        write_tail(&mut j, &self.subject, &self.annotations);
        j.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_in_gos_field_order_dropping_unknown_fields() {
        let input = br#"{"layers":[{"size":3,"digest":"sha256:aa","mediaType":"t/l","urls":[]}],
            "config":{"mediaType":"t/c","digest":"sha256:cc","size":2,"annotations":{}},
            "schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "unknown":{"x":1},"annotations":{"z":"1","a":"<b>"}}"#;
        let m: Manifest = serde_json::from_slice(input).unwrap();
        assert_eq!(
            String::from_utf8(m.to_go_json()).unwrap(),
            concat!(
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""config":{"mediaType":"t/c","digest":"sha256:cc","size":2},"#,
                r#""layers":[{"mediaType":"t/l","digest":"sha256:aa","size":3}],"#,
                r#""annotations":{"a":"\u003cb\u003e","z":"1"}}"#
            )
        );
    }

    #[test]
    fn nil_lists_are_null_empty_lists_are_empty() {
        let m: Manifest = serde_json::from_slice(br#"{"schemaVersion":2,"config":null}"#).unwrap();
        assert_eq!(
            String::from_utf8(m.to_go_json()).unwrap(),
            r#"{"schemaVersion":2,"config":{"mediaType":"","digest":"","size":0},"layers":null}"#
        );
        let i: Index = serde_json::from_slice(br#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert_eq!(
            String::from_utf8(i.to_go_json()).unwrap(),
            r#"{"schemaVersion":2,"manifests":[]}"#
        );
    }

    #[test]
    fn descriptor_fields_platform_data_and_subject() {
        let input = br#"{"mediaType":"m","digest":"d","size":1,"data":"aGk=",
            "platform":{"variant":"v8","os":"linux","architecture":"arm64","os.features":["f"]},
            "artifactType":"a"}"#;
        let d: Descriptor = serde_json::from_slice(input).unwrap();
        assert_eq!(d.data, b"hi");
        assert_eq!(
            String::from_utf8(d.to_go_json()).unwrap(),
            concat!(
                r#"{"mediaType":"m","digest":"d","size":1,"data":"aGk=","#,
                r#""platform":{"architecture":"arm64","os":"linux","os.features":["f"],"variant":"v8"},"#,
                r#""artifactType":"a"}"#
            )
        );
        let i: Index = serde_json::from_slice(
            br#"{"schemaVersion":2,"manifests":null,"subject":{"mediaType":"s","digest":"x","size":9}}"#,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(i.to_go_json()).unwrap(),
            r#"{"schemaVersion":2,"manifests":null,"subject":{"mediaType":"s","digest":"x","size":9}}"#
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            &b"not json"[..],
            br#"{"schemaVersion":"two"}"#,
            br#"{"layers":[{"size":1.5}]}"#,
            br#"{"layers":[{"data":"***"}]}"#,
            b"",
        ] {
            assert!(serde_json::from_slice::<Manifest>(bad).is_err(), "{bad:?}");
        }
    }
}
