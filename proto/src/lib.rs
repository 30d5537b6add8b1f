//! Wire types generated from `proto/`: etcd's v3 API (`etcdserverpb`, `mvccpb`,
//! `authpb`) and cairn's peer protocol (`cairnpb`). This crate holds no logic.
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

pub mod cairnpb {
    tonic::include_proto!("cairnpb");
}
