use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
        "proto/v3lockpb/v3lock.proto",
        "proto/v3electionpb/v3election.proto",
        "proto/cairnpb/peer.proto",
        "proto/cairnpb/snapshot.proto",
        "proto/grpc/health/v1/health.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = PathBuf::from(std::env::var("OUT_DIR")?).join("descriptors.bin");
    // Raft payloads are cloned for a resend and sliced on receipt: share, do not copy.
    tonic_prost_build::configure()
        .bytes(".cairnpb.RaftPayload.data")
        .file_descriptor_set_path(&descriptors)
        .compile_protos(&protos, &["proto"])?;
    // The JSON gateway's mapping, as etcd's grpc-gateway marshals: proto field
    // names out, either spelling in, unknown fields ignored.
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".mvccpb", ".authpb", ".etcdserverpb", ".v3lockpb", ".v3electionpb"])?;
    Ok(())
}
