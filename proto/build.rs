fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/mvccpb/kv.proto",
        "proto/authpb/auth.proto",
        "proto/etcdserverpb/rpc.proto",
        "proto/v3lockpb/v3lock.proto",
        "proto/v3electionpb/v3election.proto",
        "proto/cairnpb/peer.proto",
        "proto/cairnpb/snapshot.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // Raft payloads are cloned for a resend and sliced on receipt: share, do not copy.
    tonic_prost_build::configure().bytes(".cairnpb.RaftPayload.data").compile_protos(&protos, &["proto"])?;
    Ok(())
}
