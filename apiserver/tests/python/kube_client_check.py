"""The Python `kubernetes` client against cairn-kube: create, list, patch,
watch and delete, through a kubeconfig. Prints 'all checks passed'."""
import sys
import threading

from kubernetes import client, config, watch


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    namespace = "python"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))

    seen = []
    ready = threading.Event()

    def watcher():
        w = watch.Watch()
        ready.set()
        for event in w.stream(core.list_namespaced_config_map, namespace, timeout_seconds=20):
            name = event["object"].metadata.name
            seen.append((event["type"], name, (event["object"].data or {}).get("k")))
            if event["type"] == "DELETED" and name == "py":
                w.stop()

    thread = threading.Thread(target=watcher)
    thread.start()
    ready.wait()

    created = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}), data={"k": "1"}))
    assert created.metadata.uid, "a uid"
    listed = core.list_namespaced_config_map(namespace, label_selector="app=py")
    assert [c.metadata.name for c in listed.items] == ["py"], listed.items
    patched = core.patch_namespaced_config_map("py", namespace, {"data": {"k": "2"}})
    assert patched.data["k"] == "2", patched.data
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="nginx", image="nginx:1.25")]))))
    made = apps.create_namespaced_deployment(namespace, deployment)
    assert made.spec.strategy.type == "RollingUpdate", made.spec.strategy
    scaled = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 4}})
    assert scaled.spec.replicas == 4, scaled

    try:
        core.read_namespaced_config_map("missing", namespace)
        raise AssertionError("a missing object was found")
    except client.exceptions.ApiException as err:
        assert err.status == 404 and '"reason":"NotFound"' in err.body.replace(" ", ""), err.body

    core.delete_namespaced_config_map("py", namespace)
    thread.join(30)
    mine = [s for s in seen if s[1] == "py"]
    assert mine == [("ADDED", "py", "1"), ("MODIFIED", "py", "2"), ("DELETED", "py", "2")], seen
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
