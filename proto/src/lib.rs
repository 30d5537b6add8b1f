//! Wire types generated from `proto/`: etcd's v3 API (`etcdserverpb`, `mvccpb`,
//! `authpb`, `v3lockpb`, `v3electionpb`) and cairn's peer protocol (`cairnpb`). This crate holds no logic.
#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

pub mod cairnpb {
    tonic::include_proto!("cairnpb");
}
