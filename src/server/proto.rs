//! Generated types and service traits of containerd.services.content.v1.
#![allow(clippy::all, missing_docs)]
tonic::include_proto!("containerd.services.content.v1");
