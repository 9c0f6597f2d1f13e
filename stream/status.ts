// What the error stream carries at the end of an exec/attach: a JSON
// metav1.Status for v4+ clients, plain text (nothing on success) before v4.

export type SessionOutcome =
  | { kind: 'success' }
  | { kind: 'exit'; exitCode: number; cmd: string[] }
  | { kind: 'error'; message: string };

function exitMessage(exitCode: number, cmd: string[]): string {
  // Same wording as containerd's CodeExitError inside kubelet's message, so users see familiar text.
  return `command terminated with non-zero exit code: error executing command [${cmd.join(' ')}], exit code ${exitCode}`;
}

/** The v4 status document (field order as Go's metav1.Status marshals it). */
export function v4Status(outcome: SessionOutcome): Buffer {
  switch (outcome.kind) {
    case 'success':
      return Buffer.from(JSON.stringify({ metadata: {}, status: 'Success' }));
    case 'exit':
      return Buffer.from(JSON.stringify({
        metadata: {},
        status: 'Failure',
        message: exitMessage(outcome.exitCode, outcome.cmd),
        reason: 'NonZeroExitCode',
        details: { causes: [{ reason: 'ExitCode', message: String(outcome.exitCode) }] },
      }));
    case 'error':
      return Buffer.from(JSON.stringify({
        metadata: {},
        status: 'Failure',
        message: `Internal error occurred: ${outcome.message}`,
        reason: 'InternalError',
        details: { causes: [{ message: outcome.message }] },
        code: 500,
      }));
  }
}

/** The pre-v4 error text, or undefined on success (v1-v3 send nothing then). */
export function legacyStatus(outcome: SessionOutcome): Buffer | undefined {
  switch (outcome.kind) {
    case 'success':
      return undefined;
    case 'exit':
      return Buffer.from(exitMessage(outcome.exitCode, outcome.cmd));
    case 'error':
      return Buffer.from(outcome.message);
  }
}
