//! Accept and Content-Type negotiation, as kube-apiserver does it for custom resources:
//! JSON and YAML, the Table and PartialObjectMetadata transformations, and aggregated
//! discovery. Protobuf is not served for custom resources, by kube either; only the
//! `/openapi/v2` document has a protobuf form.

use crate::k8s::status::ApiError;

/// One media range from an Accept header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange {
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaRange {
    fn param(&self, k: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

pub fn parse_accept(header: Option<&str>) -> Vec<MediaRange> {
    let Some(h) = header.filter(|h| !h.trim().is_empty()) else {
        return vec![MediaRange {
            essence: "*/*".into(),
            params: vec![],
        }];
    };
    h.split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let essence = pieces.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let params = pieces
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some(MediaRange { essence, params })
        })
        .collect()
}

/// How a response body is serialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Yaml,
}

/// What shape the client asked the object (or list) to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Plain,
    /// `meta.k8s.io` Table, at version v1 or v1beta1.
    Table(&'static str),
    /// PartialObjectMetadata (for a get) or PartialObjectMetadataList (for a list).
    PartialMetadata(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub encoding: Encoding,
    pub shape: Shape,
}

impl Output {
    pub fn content_type(&self) -> String {
        let base = match self.encoding {
            Encoding::Json => "application/json",
            Encoding::Yaml => "application/yaml",
        };
        match self.shape {
            Shape::Plain => base.to_string(),
            Shape::Table(v) => format!("{base};as=Table;v={v};g=meta.k8s.io"),
            Shape::PartialMetadata(v) => {
                format!("{base};as=PartialObjectMetadata;v={v};g=meta.k8s.io")
            }
        }
    }
}

fn encoding_of(essence: &str) -> Option<Encoding> {
    match essence {
        "application/json"
        | "application/*"
        | "*/*"
        | "application/json-patch+json"
        | "application/merge-patch+json" => Some(Encoding::Json),
        "application/yaml" => Some(Encoding::Yaml),
        _ => None,
    }
}

/// Picks the first acceptable representation in the client's order. `list` says whether
/// the response is a list, which decides the PartialObjectMetadata form that applies.
pub fn negotiate(accept: Option<&str>, list: bool) -> Result<Output, ApiError> {
    negotiate_for(accept, if list { Target::List } else { Target::Object })
}

/// A watch streams single objects, and metadata-only clients ask for it with either form.
pub fn negotiate_watch(accept: Option<&str>) -> Result<Output, ApiError> {
    negotiate_for(accept, Target::Watch)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Object,
    List,
    Watch,
}

fn negotiate_for(accept: Option<&str>, target: Target) -> Result<Output, ApiError> {
    let list = target == Target::List;
    let watch = target == Target::Watch;
    for r in parse_accept(accept) {
        let Some(encoding) = encoding_of(&r.essence) else {
            continue;
        };
        let version = match r.param("v") {
            Some("v1") => "v1",
            Some("v1beta1") => "v1beta1",
            _ => "",
        };
        match (r.param("as"), r.param("g")) {
            (None, _) => {
                return Ok(Output {
                    encoding,
                    shape: Shape::Plain,
                })
            }
            (Some("Table"), Some("meta.k8s.io")) if !version.is_empty() => {
                return Ok(Output {
                    encoding,
                    shape: Shape::Table(version),
                });
            }
            (Some("PartialObjectMetadata"), Some("meta.k8s.io"))
                if !version.is_empty() && (!list || watch) =>
            {
                return Ok(Output {
                    encoding,
                    shape: Shape::PartialMetadata(version),
                });
            }
            (Some("PartialObjectMetadataList"), Some("meta.k8s.io"))
                if !version.is_empty() && (list || watch) =>
            {
                return Ok(Output {
                    encoding,
                    shape: Shape::PartialMetadata(version),
                });
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io, \
         application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io",
    ))
}

/// The aggregated discovery version the client asked for, if any.
pub fn aggregated_discovery(accept: Option<&str>) -> Option<&'static str> {
    for r in parse_accept(accept) {
        if r.essence != "application/json" {
            continue;
        }
        if r.param("g") == Some("apidiscovery.k8s.io")
            && r.param("as") == Some("APIGroupDiscoveryList")
        {
            match r.param("v") {
                Some("v2") => return Some("v2"),
                Some("v2beta1") => return Some("v2beta1"),
                _ => {}
            }
        }
        if r.params.is_empty() {
            // Plain JSON listed before any aggregated form: the client prefers the legacy document.
            return None;
        }
    }
    None
}

/// The forms of the `/openapi/v2` document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenApiV2Form {
    Json,
    Protobuf,
}

/// The Content-Type of the protobuf form. kube-openapi answers with it for both spellings it
/// accepts, the deprecated `...spec.v2@v1.0+protobuf` (which kubectl sends) and this one.
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The form of `/openapi/v2` to serve, as kube-openapi's handler picks it: media ranges by
/// quality, then the more specific first, and the first range that matches a served form
/// wins, JSON before protobuf for a wildcard. `None` is 406.
pub fn openapi_v2_form(accept: Option<&str>) -> Option<OpenApiV2Form> {
    let mut ranges: Vec<(f32, MediaRange)> = parse_accept(accept)
        .into_iter()
        .map(|r| {
            let q = r.param("q").and_then(|q| q.parse().ok()).unwrap_or(1.0);
            (q, r)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    let wildcards = |r: &MediaRange| {
        let (ty, sub) = r.essence.split_once('/').unwrap_or((&r.essence, ""));
        (ty == "*", sub == "*")
    };
    // Stable: among equals the client's order stands.
    ranges.sort_by(|(qa, a), (qb, b)| {
        qb.total_cmp(qa)
            .then_with(|| wildcards(a).cmp(&wildcards(b)))
    });
    ranges.iter().find_map(|(_, r)| match r.essence.as_str() {
        "application/json" | "application/*" | "*/*" => Some(OpenApiV2Form::Json),
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        | "application/com.github.proto-openapi.spec.v2.v1.0+protobuf" => {
            Some(OpenApiV2Form::Protobuf)
        }
        _ => None,
    })
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    Json,
    Yaml,
    JsonPatch,
    MergePatch,
    StrategicMergePatch,
    ApplyPatch,
    Other,
}

pub fn body_type(content_type: Option<&str>) -> BodyType {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match essence.as_str() {
        "" | "application/json" => BodyType::Json,
        "application/yaml" => BodyType::Yaml,
        "application/json-patch+json" => BodyType::JsonPatch,
        "application/merge-patch+json" => BodyType::MergePatch,
        "application/strategic-merge-patch+json" => BodyType::StrategicMergePatch,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => BodyType::ApplyPatch,
        _ => BodyType::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_gets_a_v1_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(a), true).unwrap().shape, Shape::Table("v1"));
    }

    #[test]
    fn metadata_informers_get_partial_object_metadata_lists() {
        let a = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(
            negotiate(Some(a), true).unwrap().shape,
            Shape::PartialMetadata("v1")
        );
        // The list form is not what a single get returns; plain JSON is the fallback.
        assert_eq!(negotiate(Some(a), false).unwrap().shape, Shape::Plain);
    }

    #[test]
    fn protobuf_only_is_not_acceptable() {
        let e = negotiate(Some("application/vnd.kubernetes.protobuf"), false).unwrap_err();
        assert_eq!(e.code, 406);
    }

    #[test]
    fn openapi_v2_is_protobuf_when_kubectl_asks_for_it_and_json_for_wildcards() {
        use OpenApiV2Form::{Json, Protobuf};
        let kubectl = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
        assert_eq!(openapi_v2_form(Some(kubectl)), Some(Protobuf));
        assert_eq!(openapi_v2_form(Some(OPENAPI_V2_PROTOBUF)), Some(Protobuf));
        assert_eq!(openapi_v2_form(Some("application/json")), Some(Json));
        assert_eq!(openapi_v2_form(None), Some(Json));
        assert_eq!(openapi_v2_form(Some("*/*")), Some(Json));
        // The more specific range wins at equal quality, then quality decides.
        let both = format!("*/*, {kubectl}");
        assert_eq!(openapi_v2_form(Some(&both)), Some(Protobuf));
        let ranked = format!("{kubectl};q=0.5, application/json");
        assert_eq!(openapi_v2_form(Some(&ranked)), Some(Json));
        assert_eq!(openapi_v2_form(Some("text/html")), None);
        assert_eq!(openapi_v2_form(Some("application/json;q=0")), None);
    }

    #[test]
    fn aggregated_discovery_is_chosen_by_accept() {
        let a = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_discovery(Some(a)), Some("v2"));
        assert_eq!(aggregated_discovery(Some("application/json")), None);
        assert_eq!(aggregated_discovery(None), None);
    }
}
