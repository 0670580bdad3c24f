// Webhook sources mounted on a host HTTP server (`sluice serve`) instead of listening on a port of their own. The
// control plane installs itself as the host; a webhook source of a pipeline it runs registers its request handler here
// under the pipeline's name, and the control plane routes `/v1/webhooks/<pipeline>/<path>` to it. One process has one
// host at most, and pipeline names are unique within it.

import type { IncomingMessage, ServerResponse } from 'node:http';

/** Handles one request; `path` is the part of the URL path after the pipeline's prefix (`/` at least). */
export type MountHandler = (req: IncomingMessage, res: ServerResponse, path: string) => void;

export interface MountHost {
  /** The URL (or path) a mounted pipeline's webhook answers on, for the log line. */
  urlFor(pipeline: string, path: string): string;
}

let host: MountHost | undefined;
const handlers = new Map<string, MountHandler>();

/** Make this process's HTTP server the mount host; returns the function that removes it. */
export function installMountHost(h: MountHost): () => void {
  host = h;
  return () => {
    if (host === h) host = undefined;
  };
}

export function mountHost(): MountHost | undefined {
  return host;
}

/** Registers a pipeline's handler; returns the function that unregisters it. */
export function mountWebhook(pipeline: string, handler: MountHandler): () => void {
  if (!host) throw new Error('no mount host in this process');
  if (handlers.has(pipeline)) throw new Error(`a webhook is already mounted for pipeline '${pipeline}'`);
  handlers.set(pipeline, handler);
  return () => {
    if (handlers.get(pipeline) === handler) handlers.delete(pipeline);
  };
}

export function findMount(pipeline: string): MountHandler | undefined {
  return handlers.get(pipeline);
}
