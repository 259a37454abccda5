//! Generates containerd's content and diff services, the images client, and ipcs's admin service (client and
//! server) from proto/.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[
                "proto/containerd/services/content/v1/content.proto",
                "proto/containerd/services/diff/v1/diff.proto",
                "proto/containerd/services/images/v1/images.proto",
                "proto/ipcs/admin/v1/admin.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
