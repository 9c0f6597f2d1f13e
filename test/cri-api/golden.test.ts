// Checks cri-api/proto/api.proto against wire-format vectors made from the
// upstream k8s.io/cri-api v0.36.3 definition (test/fixtures/cri-golden/).
//
// For each of the 170 messages: decoding the upstream bytes must give the
// sample's proto3 JSON, and encoding the JSON must give the upstream bytes
// exactly. Any mismatch means a field name, number, type or enum value that
// differs from what kubelet sends or expects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

// Compiled to dist/test/cri-api/, so the repo root is three levels up.
const repoRoot = new URL('../../../', import.meta.url);
const protoPath = fileURLToPath(new URL('cri-api/proto/api.proto', repoRoot));
const fixtureDir = new URL('test/fixtures/cri-golden/', repoRoot);

interface Vector {
  message: string;
  json: Record<string, unknown>;
  hex: string;
}

interface Rpc {
  service: string;
  method: string;
  request: string;
  response: string;
  client_streaming: boolean;
  server_streaming: boolean;
  path: string;
}

interface Services {
  rpcs: Rpc[];
  enums: Record<string, Record<string, number>>;
}

function readJson<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(name, fixtureDir), 'utf8')) as T;
}

const vectors = readJson<{ vectors: Vector[] }>('vectors.json').vectors;
const services = readJson<Services>('services.json');

const root = new protobuf.Root();
root.loadSync(protoPath, { keepCase: true });
root.resolveAll();

const pkg = root.lookup('runtime.v1');
assert.ok(pkg instanceof protobuf.Namespace, 'package runtime.v1 missing');

/** Every reflection object of a kind under a namespace, keyed by full name without the leading dot. */
function collect<T extends protobuf.ReflectionObject>(
  ns: protobuf.NamespaceBase,
  kind: abstract new (...args: never[]) => T,
  out = new Map<string, T>(),
): Map<string, T> {
  for (const obj of ns.nestedArray) {
    if (obj instanceof kind) out.set(obj.fullName.replace(/^\./, ''), obj);
    if (obj instanceof protobuf.Namespace || obj instanceof protobuf.Type) collect(obj, kind, out);
  }
  return out;
}

const types = collect(pkg, protobuf.Type);
const enums = collect(pkg, protobuf.Enum);

/** Decoded message -> proto3 JSON with proto field names (unset fields absent). */
function toProto3Json(type: protobuf.Type, msg: protobuf.Message): unknown {
  const obj = type.toObject(msg, {
    longs: String,
    enums: String,
    bytes: String,
    defaults: false,
    arrays: false,
    objects: false,
    oneofs: false,
  });
  // Plain JSON round trip: drops undefined members and class prototypes.
  return JSON.parse(JSON.stringify(obj));
}

function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

test('vectors cover exactly the messages of runtime.v1', () => {
  assert.equal(vectors.length, 170);
  const vectorNames = vectors.map((v) => v.message).sort();
  assert.equal(new Set(vectorNames).size, vectorNames.length, 'duplicate vector');
  assert.deepEqual([...types.keys()].sort(), vectorNames);
});

test('every vector decodes to its JSON and its JSON encodes to its bytes', async (t) => {
  let decodeOk = 0;
  let encodeOk = 0;
  for (const v of vectors) {
    await t.test(v.message, () => {
      const type = types.get(v.message);
      assert.ok(type, `no message ${v.message} in our proto`);
      const expected = v.json as Record<string, unknown>;

      // upstream bytes -> our decoder -> JSON
      const decoded = type.decode(Buffer.from(v.hex, 'hex'));
      assert.deepEqual(toProto3Json(type, decoded), expected, `${v.message}: decode(hex) != json`);
      decodeOk++;

      // JSON -> our encoder -> upstream bytes
      const message = type.fromObject(expected);
      const verifyError = type.verify(message);
      assert.equal(verifyError, null, `${v.message}: ${verifyError}`);
      const encoded = type.encode(message).finish();
      assert.equal(hexOf(encoded), v.hex, `${v.message}: encode(json) != hex`);
      encodeOk++;
    });
  }
  t.diagnostic(`decode: ${decodeOk}/${vectors.length} vectors pass`);
  t.diagnostic(`encode: ${encodeOk}/${vectors.length} vectors pass`);
  assert.equal(decodeOk, vectors.length);
  assert.equal(encodeOk, vectors.length);
});

test('services have every upstream RPC with the same types and streaming', () => {
  assert.equal(services.rpcs.length, 41);
  const ours = new Set<string>();
  for (const name of ['runtime.v1.RuntimeService', 'runtime.v1.ImageService']) {
    for (const m of root.lookupService(name).methodsArray) ours.add(`${name}/${m.name}`);
  }
  for (const rpc of services.rpcs) {
    const svc = root.lookupService(rpc.service);
    const method = svc.methods[rpc.method];
    assert.ok(method, `missing rpc ${rpc.service}/${rpc.method}`);
    method.resolve();
    assert.equal(method.resolvedRequestType?.fullName, `.${rpc.request}`, `${rpc.method} request`);
    assert.equal(method.resolvedResponseType?.fullName, `.${rpc.response}`, `${rpc.method} response`);
    assert.equal(Boolean(method.requestStream), rpc.client_streaming, `${rpc.method} client streaming`);
    assert.equal(Boolean(method.responseStream), rpc.server_streaming, `${rpc.method} server streaming`);
    assert.equal(`/${svc.fullName.replace(/^\./, '')}/${method.name}`, rpc.path);
    ours.delete(`${rpc.service}/${rpc.method}`);
  }
  assert.deepEqual([...ours], [], 'RPCs not in upstream');
});

test('enums match upstream names and numbers exactly', () => {
  const mine: Record<string, Record<string, number>> = {};
  for (const [name, e] of enums) mine[name] = { ...e.values };
  assert.deepEqual(mine, services.enums);
});
