import http from 'node:http';
import { errorMessage, UserError } from '../util/errors.js';

/** Normalises "127.0.0.1:7401" or "http://127.0.0.1:7401/" to "http://127.0.0.1:7401". */
export function normaliseHostUrl(text: string): string {
  const withScheme = /^[a-z]+:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UserError(`malformed host URL '${text}': expected e.g. http://127.0.0.1:7401`);
  }
  if (url.protocol !== 'http:') throw new UserError(`unsupported host URL '${text}': only http:// is served`);
  if (!url.port) throw new UserError(`host URL '${text}' needs a port, e.g. http://127.0.0.1:7401`);
  return `${url.protocol}//${url.host}`;
}

function explainFailure(url: string, err: unknown): UserError {
  const code = (err as { code?: string }).code;
  const reason =
    code === 'ECONNREFUSED'
      ? 'connection refused (is `constmig host` running there?)'
      : code === 'ETIMEDOUT'
        ? 'connection timed out'
        : errorMessage(err);
  return new UserError(`cannot reach host ${url}: ${reason}`);
}

/** A response whose body has not been read yet. */
interface HostResponse {
  status: number;
  body: http.IncomingMessage;
}

/**
 * One request over node:http. Not fetch: its client gives up on a response whose headers take more
 * than 300 s (undici's headersTimeout), and some calls legitimately take longer (creating an enclave
 * with an 8 GiB fill took 9-15 min; the benchmark died of it). A host that stops answering is still
 * found out: a broken connection fails the request.
 */
function send(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: string,
): Promise<HostResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) =>
      resolve({ status: res.statusCode ?? 0, body: res }),
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function readText(res: HostResponse): Promise<string> {
  res.body.setEncoding('utf8');
  let text = '';
  for await (const chunk of res.body) text += chunk as string;
  return text;
}

/** A host answered with an error status; `status` lets callers tell "not yet" from "never". */
export class HostApiError extends UserError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A small client for a host daemon's control API, used by the CLI and by a host calling its peer. */
export class HostClient {
  readonly url: string;

  /**
   * @param unauthorizedHint appended to the error when the host answers 401, to tell the caller
   *   where its token should have come from
   */
  constructor(
    url: string,
    private readonly token?: string,
    private readonly unauthorizedHint?: string,
  ) {
    this.url = normaliseHostUrl(url);
  }

  private headers(): Record<string, string> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    return headers;
  }

  private async request(method: string, path: string, body?: unknown): Promise<HostResponse> {
    let res: HostResponse;
    try {
      res = await send(
        `${this.url}${path}`,
        method,
        this.headers(),
        body === undefined ? undefined : JSON.stringify(body),
      );
    } catch (err) {
      throw explainFailure(this.url, err);
    }
    if (res.status < 200 || res.status > 299) {
      const text = await readText(res);
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: the text itself is the message
      }
      const hint = res.status === 401 && this.unauthorizedHint ? `; ${this.unauthorizedHint}` : '';
      const oneLine = message.replace(/\s+/g, ' ').trim();
      throw new HostApiError(res.status, `${this.url}: ${oneLine || `HTTP ${res.status}`}${hint}`);
    }
    return res;
  }

  async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, body);
    return JSON.parse(await readText(res)) as T;
  }

  /** POSTs and yields each line of an NDJSON response as it arrives. */
  async *stream<T>(path: string, body: unknown): AsyncGenerator<T> {
    const res = await this.request('POST', path, body);
    res.body.setEncoding('utf8');
    let buffered = '';
    for await (const chunk of res.body) {
      buffered += chunk as string;
      let newline = buffered.indexOf('\n');
      while (newline !== -1) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        if (line) yield JSON.parse(line) as T;
        newline = buffered.indexOf('\n');
      }
    }
  }
}
