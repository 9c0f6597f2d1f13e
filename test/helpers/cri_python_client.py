"""A CRI client on an independent gRPC stack: python3-grpcio (gRPC C core).

Usage: cri_python_client.py STUB_DIR SOCKET LOG_DIR
STUB_DIR holds api_pb2.py and api_pb2_grpc.py generated from our proto by
grpc_tools.protoc. Prints one JSON object with what each call answered. Calls
go on two channels: C core's own authority for unix sockets, and the socket
path as :authority (grpc.default_authority), as grpc-go clients send it.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import api_pb2  # noqa: E402
import api_pb2_grpc  # noqa: E402

socket_path, log_dir = sys.argv[2], sys.argv[3]
target = "unix://" + socket_path
out = {}

for label, options in (("default", []), ("path", [("grpc.default_authority", socket_path)])):
    with grpc.insecure_channel(target, options=options) as channel:
        runtime = api_pb2_grpc.RuntimeServiceStub(channel)
        v = runtime.Version(api_pb2.VersionRequest(version="v1"), timeout=30)
        out["version_" + label] = {"runtime_name": v.runtime_name, "runtime_api_version": v.runtime_api_version}

with grpc.insecure_channel(target, options=[("grpc.default_authority", socket_path)]) as channel:
    runtime = api_pb2_grpc.RuntimeServiceStub(channel)
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="py-pod", uid="uid-py-pod", namespace="python", attempt=0),
        hostname="py-pod",
        log_directory=log_dir,
        labels={"client": "python3-grpcio"},
    )
    pod_id = runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config), timeout=120).pod_sandbox_id
    out["pod_id"] = pod_id
    status = runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=30).status
    out["pod_state"] = api_pb2.PodSandboxState.Name(status.state)
    out["pod_ip"] = status.network.ip
    containers = runtime.ListContainers(api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=pod_id)), timeout=30)
    out["containers"] = [c.id for c in containers.containers]
    try:
        runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id="no-such-container"), timeout=30)
        out["missing_container"] = "OK"
    except grpc.RpcError as err:
        out["missing_container"] = err.code().name
    runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    out["pods_after"] = [p.id for p in runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=30).items]

print(json.dumps(out))
