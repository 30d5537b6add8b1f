//! Compiles Kubernetes' protobuf schema (fetched by `.ci/setup.sh` from the Go
//! module proxy into `$CAIRN_K8S_PROTO_DIR`) into a descriptor set, with which
//! the API server decodes protobuf request bodies. Without the schema the
//! server is built without protobuf, and says so.
//!
//! It also compiles the CRI's `runtime.v1` API (fetched the same way) into
//! the gRPC client and server the hollow kubelets and their simulated runtime
//! speak; without it, kubelets call the simulated runtime in-process.

use std::path::PathBuf;
use std::process::Command;

const FILES: &[&str] = &[
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/discovery/v1/generated.proto",
    "k8s.io/api/scheduling/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/authorization/v1/generated.proto",
    "k8s.io/api/certificates/v1/generated.proto",
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
];

const CRI: &str = "k8s.io/cri-api/pkg/apis/runtime/v1/api.proto";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(k8s_protobuf)");
    println!("cargo::rustc-check-cfg=cfg(cri_grpc)");
    println!("cargo::rerun-if-env-changed=CAIRN_K8S_PROTO_DIR");
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let dir = std::env::var("CAIRN_K8S_PROTO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(home).join(".cache/cairn/k8s-proto-v0.33.7"));
    println!("cargo::rerun-if-changed={}", dir.join(".complete").display());
    println!("cargo::rerun-if-changed={}", dir.join(".cri-complete").display());
    if dir.join(CRI).is_file() {
        match tonic_prost_build::configure().compile_protos(&[dir.join(CRI)], std::slice::from_ref(&dir)) {
            Ok(()) => println!("cargo::rustc-cfg=cri_grpc"),
            Err(error) => println!(
                "cargo::warning=compiling the CRI API failed ({error}); kubelets call their runtime in-process"
            ),
        }
    } else {
        println!(
            "cargo::warning=the CRI's api.proto is not in {}; kubelets call their runtime in-process",
            dir.display()
        );
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("k8s.descriptors");
    if !FILES.iter().all(|f| dir.join(f).is_file()) {
        println!(
            "cargo::warning=Kubernetes' .proto files are not in {}; building without protobuf request bodies (`.ci/setup.sh` fetches them)",
            dir.display()
        );
        return;
    }
    let protoc = std::env::var("PROTOC").unwrap_or_else(|_| "protoc".into());
    let status = Command::new(protoc)
        .arg(format!("--proto_path={}", dir.display()))
        .arg("--include_imports")
        .arg(format!("--descriptor_set_out={}", out.display()))
        .args(FILES)
        .status();
    match status {
        Ok(status) if status.success() => println!("cargo::rustc-cfg=k8s_protobuf"),
        other => {
            println!("cargo::warning=protoc failed on Kubernetes' .proto files ({other:?}); building without protobuf")
        }
    }
}
