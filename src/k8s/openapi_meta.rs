//! The `meta/v1` definitions the published documents reference: ObjectMeta and what it
//! refers to, ListMeta, and the Status, DeleteOptions and Patch types the paths use.
//!
//! Field names, types, formats and list/map extensions match apimachinery's types, so that
//! clients resolve and merge them as they do against kube-apiserver; descriptions are short
//! summaries. Written in Swagger 2.0 form (`#/definitions/...`); `openapi.rs` rewrites them
//! for OpenAPI 3.

use serde_json::{json, Value};

pub(super) const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/definitions/{META}.{name}") })
}

fn with(mut v: Value, description: &str) -> Value {
    v["description"] = json!(description);
    v
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn int64(description: &str) -> Value {
    json!({"type": "integer", "format": "int64", "description": description})
}

fn string_map(description: &str) -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": description})
}

fn strings(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string", "default": ""}, "description": description})
}

const API_VERSION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// `apiVersion` and `kind` as `metav1.TypeMeta` documents them.
pub(super) fn type_meta() -> (Value, Value) {
    (string(API_VERSION), string(KIND))
}

/// Every definition, by full name, in v2 form.
pub(super) fn definitions() -> Vec<(String, Value)> {
    let (api_version, kind) = type_meta();
    let defs = vec![
        (
            "ObjectMeta",
            json!({
                "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
                "type": "object",
                "properties": {
                    "annotations": string_map("Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata. They are not queryable and should be preserved when modifying objects."),
                    "creationTimestamp": with(r("Time"), "CreationTimestamp is the time the object was created, set by the server. Read-only."),
                    "deletionGracePeriodSeconds": int64("Number of seconds allowed for this object to gracefully terminate before it will be removed from the system. Only set when deletionTimestamp is also set. Read-only."),
                    "deletionTimestamp": with(r("Time"), "DeletionTimestamp is the time after which this resource will be deleted, set by the server when a graceful deletion is requested. Read-only."),
                    "finalizers": {
                        "type": "array", "items": {"type": "string", "default": ""},
                        "description": "Must be empty before the object is deleted from the registry. Each entry is an identifier for the responsible component that will remove the entry from the list.",
                        "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"
                    },
                    "generateName": string("GenerateName is an optional prefix, used by the server to generate a unique name only if the name field has not been provided."),
                    "generation": int64("A sequence number representing a specific generation of the desired state. Populated by the system. Read-only."),
                    "labels": string_map("Map of string keys and values that can be used to organize and categorize (scope and select) objects."),
                    "managedFields": {
                        "type": "array", "items": r("ManagedFieldsEntry"),
                        "description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow. This is mostly for internal housekeeping.",
                        "x-kubernetes-list-type": "atomic"
                    },
                    "name": string("Name must be unique within a namespace. Cannot be updated."),
                    "namespace": string("Namespace defines the space within which each name must be unique. Cannot be updated."),
                    "ownerReferences": {
                        "type": "array", "items": r("OwnerReference"),
                        "description": "List of objects depended by this object. If ALL objects in the list have been deleted, this object will be garbage collected.",
                        "x-kubernetes-list-map-keys": ["uid"], "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"
                    },
                    "resourceVersion": string("An opaque value that represents the internal version of this object, used for optimistic concurrency, change detection, and watches. Read-only."),
                    "selfLink": string("Deprecated: selfLink is a legacy read-only field that is no longer populated by the system."),
                    "uid": string("UID is the unique in time and space value for this object, generated by the server on successful creation. Read-only.")
                }
            }),
        ),
        (
            "ListMeta",
            json!({
                "description": "ListMeta describes metadata that synthetic resources must have, including lists and various status objects.",
                "type": "object",
                "properties": {
                    "continue": string("continue may be set if the user set a limit on the number of items returned; pass it back to retrieve the next set of results."),
                    "remainingItemCount": int64("remainingItemCount is the number of subsequent items in the list which are not included in this list response."),
                    "resourceVersion": string("String that identifies the server's internal version of this list. Read-only."),
                    "selfLink": string("Deprecated: selfLink is a legacy read-only field that is no longer populated by the system.")
                }
            }),
        ),
        (
            "Time",
            json!({
                "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON, in RFC 3339 form.",
                "type": "string", "format": "date-time"
            }),
        ),
        (
            "FieldsV1",
            json!({
                "description": "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format.",
                "type": "object"
            }),
        ),
        (
            "ManagedFieldsEntry",
            json!({
                "description": "ManagedFieldsEntry is a workflow-id, a FieldSet and the group version of the resource that the fieldset applies to.",
                "type": "object",
                "properties": {
                    "apiVersion": string("APIVersion defines the version of this resource that this field set applies to."),
                    "fieldsType": string("FieldsType is the discriminator for the different fields format and version."),
                    "fieldsV1": with(r("FieldsV1"), "FieldsV1 holds the first JSON version format as described in the \"FieldsV1\" type."),
                    "manager": string("Manager is an identifier of the workflow managing these fields."),
                    "operation": string("Operation is the type of operation which lead to this entry being created: 'Apply' or 'Update'."),
                    "subresource": string("Subresource is the name of the subresource used to update that object, or empty for the main resource."),
                    "time": with(r("Time"), "Time is the timestamp of when the entry was added or last changed.")
                }
            }),
        ),
        (
            "OwnerReference",
            json!({
                "description": "OwnerReference contains enough information to let you identify an owning object. An owning object must be in the same namespace as the dependent, or be cluster-scoped.",
                "type": "object",
                "required": ["apiVersion", "kind", "name", "uid"],
                "properties": {
                    "apiVersion": {"type": "string", "default": "", "description": "API version of the referent."},
                    "blockOwnerDeletion": {"type": "boolean", "description": "If true, and the owner has the \"foregroundDeletion\" finalizer, the owner cannot be deleted from the key-value store until this reference is removed."},
                    "controller": {"type": "boolean", "description": "If true, this reference points to the managing controller."},
                    "kind": {"type": "string", "default": "", "description": "Kind of the referent."},
                    "name": {"type": "string", "default": "", "description": "Name of the referent."},
                    "uid": {"type": "string", "default": "", "description": "UID of the referent."}
                },
                "x-kubernetes-map-type": "atomic"
            }),
        ),
        (
            "Status",
            json!({
                "description": "Status is a return value for calls that don't return other objects.",
                "type": "object",
                "properties": {
                    "apiVersion": api_version.clone(),
                    "code": {"type": "integer", "format": "int32", "description": "Suggested HTTP return code for this status, 0 if not set."},
                    "details": with(r("StatusDetails"), "Extended data associated with the reason."),
                    "kind": kind.clone(),
                    "message": string("A human-readable description of the status of this operation."),
                    "metadata": with(r("ListMeta"), "Standard list metadata."),
                    "reason": string("A machine-readable description of why this operation is in the \"Failure\" status."),
                    "status": string("Status of the operation. One of: \"Success\" or \"Failure\".")
                },
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}]
            }),
        ),
        (
            "StatusDetails",
            json!({
                "description": "StatusDetails is a set of additional properties that MAY be set by the server to provide additional information about a response.",
                "type": "object",
                "properties": {
                    "causes": {"type": "array", "items": r("StatusCause"), "description": "The Causes array includes more details associated with the StatusReason failure.", "x-kubernetes-list-type": "atomic"},
                    "group": string("The group attribute of the resource associated with the status StatusReason."),
                    "kind": string("The kind attribute of the resource associated with the status StatusReason."),
                    "name": string("The name attribute of the resource associated with the status StatusReason."),
                    "retryAfterSeconds": {"type": "integer", "format": "int32", "description": "If specified, the time in seconds before the operation should be retried."},
                    "uid": string("UID of the resource.")
                }
            }),
        ),
        (
            "StatusCause",
            json!({
                "description": "StatusCause provides more information about an api.Status failure, including cases when multiple errors are encountered.",
                "type": "object",
                "properties": {
                    "field": string("The field of the resource that has caused this error, as named by its JSON serialization."),
                    "message": string("A human-readable description of the cause of the error."),
                    "reason": string("A machine-readable description of the cause of the error.")
                }
            }),
        ),
        (
            "DeleteOptions",
            json!({
                "description": "DeleteOptions may be provided when deleting an API object.",
                "type": "object",
                "properties": {
                    "apiVersion": api_version,
                    "dryRun": with(strings(""), "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
                    "gracePeriodSeconds": int64("The duration in seconds before the object should be deleted."),
                    "ignoreStoreReadErrorWithClusterBreakingPotential": {"type": "boolean", "description": "If set to true, it will trigger an unsafe deletion of the resource in case the normal deletion flow fails with a corrupt object error."},
                    "kind": kind,
                    "orphanDependents": {"type": "boolean", "description": "Deprecated: please use the PropagationPolicy."},
                    "preconditions": with(r("Preconditions"), "Must be fulfilled before a deletion is carried out. If not possible, a 409 Conflict status will be returned."),
                    "propagationPolicy": string("Whether and how garbage collection will be performed: 'Orphan', 'Background' or 'Foreground'.")
                },
                "x-kubernetes-group-version-kind": [{"group": "", "kind": "DeleteOptions", "version": "v1"}]
            }),
        ),
        (
            "Preconditions",
            json!({
                "description": "Preconditions must be fulfilled before an operation (update, delete, etc.) is carried out.",
                "type": "object",
                "properties": {
                    "resourceVersion": string("Specifies the target ResourceVersion"),
                    "uid": string("Specifies the target UID.")
                }
            }),
        ),
        (
            "Patch",
            json!({
                "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
                "type": "object"
            }),
        ),
    ];
    defs.into_iter()
        .map(|(name, def)| (format!("{META}.{name}"), def))
        .collect()
}
