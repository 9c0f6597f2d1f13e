"""Drives the CRI server of test/cri-api/server.test.ts (test handlers) with
python3-grpcio (gRPC C core), an HTTP/2 and gRPC stack independent of ours.

Usage: python_wire_client.py STUB_DIR SOCKET
Prints one JSON object with what each scenario saw.
"""
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import api_pb2  # noqa: E402
import api_pb2_grpc  # noqa: E402

socket_path = sys.argv[2]
out = {}
options = [
    ("grpc.default_authority", socket_path),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def code(fn):
    try:
        fn()
        return ["OK", ""]
    except grpc.RpcError as err:
        return [err.code().name, err.details()]


with grpc.insecure_channel("unix://" + socket_path, options=options) as channel:
    runtime = api_pb2_grpc.RuntimeServiceStub(channel)
    out["version"] = runtime.Version(api_pb2.VersionRequest(version="v1"), timeout=10).runtime_name
    out["status"] = code(lambda: runtime.Status(api_pb2.StatusRequest(), timeout=10))
    out["deadline"] = code(lambda: runtime.StopContainer(api_pb2.StopContainerRequest(container_id="deadline"), timeout=0.5))

    future = runtime.StopContainer.future(api_pb2.StopContainerRequest(container_id="cancel"), timeout=60)
    # Frames of one connection are read in order: once this answer is back, the call above is running.
    runtime.Version(api_pb2.VersionRequest(version="sync"), timeout=10)
    future.cancel()
    try:
        future.result()
        out["cancel"] = "OK"
    except grpc.FutureCancelledError:
        out["cancel"] = "CANCELLED"

    big = "b" * (5 << 20) + "end"
    r = runtime.ExecSync(api_pb2.ExecSyncRequest(container_id="echo", cmd=[big]), timeout=120)
    out["big"] = [len(r.stdout), r.stdout == big.encode()]

    events = 0
    total = 0
    in_order = True
    for event in runtime.GetContainerEvents(api_pb2.GetEventsRequest(), timeout=120):
        in_order = in_order and event.container_id.startswith("%d:" % events)
        events += 1
        total += len(event.container_id)
        if events % 25 == 0:
            # A reader slower than the server: its windows fill and the server must wait.
            time.sleep(0.02)
    out["events"] = [events, total, in_order]

    futures = [runtime.Version.future(api_pb2.VersionRequest(version=str(i)), timeout=60) for i in range(100)]
    out["concurrent"] = sum(1 for i, f in enumerate(futures) if f.result().version == str(i))

print(json.dumps(out))
