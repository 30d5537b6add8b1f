//! Request bodies in JSON, YAML and protobuf, decoded and decided as a create.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: cairn_testkit::mutate::seed_corpus(&cairn_kube::registry::fuzz::body_seeds()),
    |data: &[u8]| {
        cairn_kube::registry::fuzz::object_bodies(data);
    }
);
