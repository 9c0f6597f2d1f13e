// The CRI streaming server: what the URLs returned by Exec, Attach and
// PortForward lead to. The runtime implements StreamBackend; the CRI handlers
// call StreamServer.get*Url.

export { StreamServer, SPDY_EXEC_PROTOCOLS, SPDY_PORTFORWARD_PROTOCOLS } from './server.js';
export type {
  AttachRequest, ExecRequest, ExecResult, PortForwardRequest, StreamBackend, StreamIO, StreamServerOptions, TerminalSize,
} from './types.js';
export { WS_EXEC_PROTOCOLS, WS_PORTFORWARD_PROTOCOLS, WS_PORTFORWARD_TUNNEL } from './websocket.js';
export { SpdyConnection, type SpdyStream } from './spdy/connection.js';
