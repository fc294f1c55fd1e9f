//! The object model and API conventions of Kubernetes, as a custom-resource server needs
//! them: resource definitions, metadata rules, selectors, schemas, Status, discovery,
//! OpenAPI and the Table format. Pure: no HTTP, no SQL, no I/O beyond reading definitions.

pub mod discovery;
pub mod object;
pub mod openapi;
pub mod openapi_proto;
pub mod query;
pub mod request_info;
pub mod resource;
pub mod schema;
pub mod selector;
pub mod status;
pub mod table;
pub mod validation;
