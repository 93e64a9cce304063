import type http from 'node:http';
import { HttpError } from './http-util.js';

export type Handler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  params: string[],
) => Promise<void>;

export interface Route {
  /** Matched against the whole path; capture groups become the handler's params. */
  path: RegExp;
  methods: Partial<Record<'GET' | 'POST' | 'DELETE', Handler>>;
}

/** Runs the handler for a request: 404 for a path no route matches, 405 with Allow for a wrong method. */
export function dispatch(
  routes: readonly Route[],
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  const { pathname } = new URL(req.url ?? '/', 'http://host');
  const method = req.method ?? 'GET';
  for (const route of routes) {
    const match = route.path.exec(pathname);
    if (!match) continue;
    const handler = Object.hasOwn(route.methods, method)
      ? route.methods[method as keyof Route['methods']]
      : undefined;
    if (handler) return handler(req, res, match.slice(1));
    const allow = Object.keys(route.methods).join(', ');
    throw new HttpError(405, `${method} is not allowed on ${pathname} (allowed: ${allow})`, { allow });
  }
  throw new HttpError(404, `no such endpoint: ${pathname}`);
}
