import type { StreamServer } from '../../stream/index.js';

/** What the streaming RPCs (Exec, Attach, PortForward) need of the streaming server: a URL per request. */
export type StreamUrls = Pick<StreamServer, 'getExecUrl' | 'getAttachUrl' | 'getPortForwardUrl'>;
