/**
 * A CRI client on grpc-go, the stack of kubelet and cri-tools: builds
 * test/helpers/go-cri-client/main.go with Debian's Go and grpc-go (GOPATH
 * mode, no network) and drives it over JSON lines. The Go side only moves
 * bytes; requests are encoded and responses decoded here with our proto.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import * as protoLoader from '@grpc/proto-loader';
import { REPO_ROOT } from './daemon.js';

const run = promisify(execFile);
/** Where Debian's golang-*-dev packages put their source (GOPATH layout). */
const DEBIAN_GOPATH = '/usr/share/gocode';
const SETUP_HINT = 'run `bash scripts/setup.sh` (it installs golang-go and golang-google-grpc-dev)';

export interface GoBuild {
  binary: string;
  cleanup(): Promise<void>;
}

/**
 * Builds the client into a temp dir. Go's build cache lives in the checkout's
 * git-ignored .cache/, so a rerun links in a second or two instead of
 * compiling grpc-go again. `go` and `gopath` are for tests of the failures.
 */
export function buildGoCriClient(o: { go?: string; gopath?: string } = {}): Promise<GoBuild> {
  return buildGrpcGoCommand(join(REPO_ROOT, 'test/helpers/go-cri-client'), 'go-cri-client', o);
}

/**
 * Builds the single-file command `sourceDir`/main.go, which may import
 * grpc-go, with Debian's Go and packages (GOPATH mode, nothing fetched):
 * this client and the bench's relist client.
 */
export async function buildGrpcGoCommand(sourceDir: string, name: string, o: { go?: string; gopath?: string } = {}): Promise<GoBuild> {
  const go = o.go ?? 'go';
  const gopath = o.gopath ?? DEBIAN_GOPATH;
  try {
    await run(go, ['version']);
  } catch (err) {
    throw new Error(`${name}: no Go toolchain (\`${go} version\` failed: ${(err as Error).message}); ${SETUP_HINT}`);
  }
  try {
    await access(join(gopath, 'src/google.golang.org/grpc/clientconn.go'));
  } catch {
    throw new Error(`${name}: grpc-go is not in ${gopath}; ${SETUP_HINT}`);
  }
  const out = await mkdtemp(join(tmpdir(), `gvcri-${name}-`));
  const cache = join(REPO_ROOT, '.cache/go-build');
  await mkdir(cache, { recursive: true });
  const binary = join(out, name);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: out,
    // Debian's packages, not modules: nothing may be fetched.
    GO111MODULE: 'off',
    // The clients' shared package (rawcodec) lives in the checkout's own GOPATH tree.
    GOPATH: `${gopath}:${join(REPO_ROOT, 'test/helpers/gopath')}:${out}`,
    GOCACHE: cache,
    GOTMPDIR: out,
    GOTOOLCHAIN: 'local',
    GOPROXY: 'off',
    GOFLAGS: '',
    CGO_ENABLED: '0',
  };
  try {
    await run(go, ['build', '-o', binary, 'main.go'], { cwd: sourceDir, env, timeout: 300_000 });
  } catch (err) {
    await rm(out, { recursive: true, force: true });
    const e = err as Error & { stderr?: string };
    throw new Error(`${name}: go build failed (${SETUP_HINT} if a package is missing):\n${e.stderr ?? e.message}`);
  }
  return { binary, cleanup: () => rm(out, { recursive: true, force: true }) };
}

/** gRPC status codes as grpc-go reports them. */
export const Code = { OK: 0, CANCELLED: 1, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, UNIMPLEMENTED: 12 } as const;

export interface GoAnswer {
  code: number;
  message: string;
  /** Unary: the response message; absent when the call failed or the message is empty. */
  response?: Buffer;
  /** Server stream: every message received. */
  responses?: Buffer[];
}

interface WireAnswer {
  id: string;
  code: number;
  message: string;
  response?: string;
  responses?: string[];
}

export type Service = 'runtime' | 'image';
export type Authority = 'path' | 'localhost';

/**
 * Our proto, read from its file with the options the daemon's generated
 * types assume, and nothing of cri-api's server code: this client must stay
 * an outside check of whatever serves the socket.
 */
const definition = protoLoader.loadSync(join(REPO_ROOT, 'cri-api/proto/api.proto'), { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });

function method(service: Service, rpc: string): protoLoader.MethodDefinition<object, unknown> {
  const m = (definition[service === 'runtime' ? 'runtime.v1.RuntimeService' : 'runtime.v1.ImageService'] as protoLoader.ServiceDefinition)[rpc];
  if (!m) throw new Error(`no RPC ${rpc} in the ${service} service of our proto`);
  return m as protoLoader.MethodDefinition<object, unknown>;
}

/** The serialized request of a CRI RPC, as our proto encodes it. */
export const encodeRequest = (service: Service, rpc: string, req: object): Buffer => method(service, rpc).requestSerialize(req);

/** One grpc-go connection to the CRI socket; every call runs at once on it. */
export class GoCriClient {
  private readonly proc: ChildProcess;
  private readonly pending = new Map<string, { resolve(a: GoAnswer): void; reject(e: Error): void }>();
  private nextId = 1;
  private stderr = '';
  /** Why the process is no longer there to answer. */
  private gone: string | undefined;
  private readonly exited: Promise<number | null>;
  /** Each :authority grpc-go wrote on the wire, read from its own frames; known before the answer of the call that sent it. */
  readonly sentAuthorities: string[] = [];

  constructor(binary: string, socket: string, readonly authority: Authority, o: { dialTimeoutMs?: number } = {}) {
    const args = ['-socket', socket, '-authority', authority, '-dial-timeout', `${o.dialTimeoutMs ?? 30_000}ms`];
    this.proc = spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    // A client that died (it could not dial) closes its stdin: the exit below reports why.
    this.proc.stdin!.on('error', () => undefined);
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      const a = JSON.parse(line) as WireAnswer | { authority: string };
      if ('authority' in a) {
        this.sentAuthorities.push(a.authority);
        return;
      }
      const p = this.pending.get(a.id);
      this.pending.delete(a.id);
      p?.resolve({
        code: a.code,
        message: a.message,
        ...(a.response !== undefined ? { response: Buffer.from(a.response, 'base64') } : {}),
        ...(a.responses !== undefined ? { responses: a.responses.map((r) => Buffer.from(r, 'base64')) } : {}),
      });
    });
    this.exited = new Promise((resolve) => {
      const gone = (code: number | null, why: string): void => {
        this.gone = `go-cri-client (${authority}) ${why}:\n${this.stderr}`;
        for (const p of this.pending.values()) p.reject(new Error(this.gone));
        this.pending.clear();
        resolve(code);
      };
      this.proc.once('error', (err) => gone(null, `could not start: ${err.message}`));
      // 'close', not 'exit': every answer on stdout has been read by then.
      this.proc.once('close', (code, signal) => gone(code, `exited (${signal ?? code})`));
    });
  }

  /** Any method path, with the request's bytes as they are. */
  raw(method: string, request: Buffer, o: { timeoutMs?: number; streamMax?: number } = {}): Promise<GoAnswer> {
    const id = String(this.nextId++);
    const line = JSON.stringify({ id, method, request: request.toString('base64'), timeoutMs: o.timeoutMs ?? 120_000, ...(o.streamMax !== undefined ? { stream: { max: o.streamMax } } : {}) });
    return new Promise((resolve, reject) => {
      if (this.gone) return reject(new Error(this.gone));
      this.pending.set(id, { resolve, reject });
      this.proc.stdin!.write(`${line}\n`);
    });
  }

  /** A unary CRI call; its decoded response, or the status grpc-go saw. */
  async call<Res>(service: Service, rpc: string, req: object, timeoutMs?: number): Promise<{ code: number; message: string; res?: Res }> {
    const m = method(service, rpc);
    const a = await this.raw(m.path, m.requestSerialize(req), timeoutMs !== undefined ? { timeoutMs } : {});
    // An empty response message (StartContainer's) comes back as no bytes at all.
    return { code: a.code, message: a.message, ...(a.code === Code.OK ? { res: m.responseDeserialize(a.response ?? Buffer.alloc(0)) as Res } : {}) };
  }

  /** Like call, but a status other than OK is an error naming it. */
  async ok<Res>(service: Service, rpc: string, req: object, timeoutMs?: number): Promise<Res> {
    const r = await this.call<Res>(service, rpc, req, timeoutMs);
    if (r.code !== Code.OK || !r.res) throw new Error(`${rpc} via grpc-go (${this.authority} authority): code ${r.code}: ${r.message}`);
    return r.res;
  }

  /** A server-streaming call; grpc-go cancels it after `max` messages. */
  async stream<Res>(service: Service, rpc: string, req: object, max: number, timeoutMs?: number): Promise<{ code: number; message: string; responses: Res[] }> {
    const m = method(service, rpc);
    const a = await this.raw(m.path, m.requestSerialize(req), { streamMax: max, ...(timeoutMs !== undefined ? { timeoutMs } : {}) });
    return { code: a.code, message: a.message, responses: (a.responses ?? []).map((r) => m.responseDeserialize(r) as Res) };
  }

  /** Ends stdin: the client finishes its calls, closes the connection and exits. */
  async close(): Promise<number | null> {
    this.proc.stdin!.end();
    return this.exited;
  }
}
