//! Generates containerd's content service types (client and server) from proto/.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &["proto/containerd/services/content/v1/content.proto"],
            &["proto"],
        )?;
    Ok(())
}
