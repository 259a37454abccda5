//! Generated types and service traits of containerd.services.content.v1 (at the root),
//! containerd.services.diff.v1 and containerd.types (in `containerd`, nested like their
//! packages so that the generated cross-package paths resolve).
#![allow(clippy::all, missing_docs)]
tonic::include_proto!("containerd.services.content.v1");

/// ipcs's own admin service (proto/ipcs/admin/v1/admin.proto).
pub mod admin {
    tonic::include_proto!("ipcs.admin.v1");
}

pub mod containerd {
    /// containerd.types: Descriptor and Mount.
    pub mod types {
        tonic::include_proto!("containerd.types");
    }
    pub mod services {
        pub mod diff {
            /// containerd.services.diff.v1: Apply and Diff.
            pub mod v1 {
                tonic::include_proto!("containerd.services.diff.v1");
            }
        }
        pub mod images {
            /// containerd.services.images.v1: the CLI's client for image records.
            pub mod v1 {
                tonic::include_proto!("containerd.services.images.v1");
            }
        }
    }
}
