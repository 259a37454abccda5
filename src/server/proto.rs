//! Generated types and service traits of containerd.services.content.v1.
#![allow(clippy::all, missing_docs)]
tonic::include_proto!("containerd.services.content.v1");

/// ipcs's own admin service (proto/ipcs/admin/v1/admin.proto).
pub mod admin {
    tonic::include_proto!("ipcs.admin.v1");
}
