import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { freePortOnBoth, LocalCluster } from '../../src/bench/local-cluster.js';
import { requestMigration } from '../../src/cli/commands/migrate.js';
import { MigrationProgressView } from '../../src/cli/migrate-progress.js';
import type { EnclaveInfo, IncomingReply } from '../../src/host/api-schema.js';
import { HostDaemon } from '../../src/host/daemon.js';
import { peerAuth } from '../../src/host/peer-auth.js';
import { encodePreamble, PREAMBLE_BYTES, TICKET_BYTES } from '../../src/wire/preamble.js';

const MiB = 2 ** 20;
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Reply {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
  text: string;
}

/** One control call with the headers given; a body is labelled JSON unless they say otherwise. */
async function call(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Reply> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: JSON.parse(text) as Record<string, unknown>,
    text,
  };
}

describe('control API', () => {
  let cluster: LocalCluster;
  let enclave: EnclaveInfo;
  let appPort: number;
  const bearer = () => ({ authorization: `Bearer ${cluster.token}` });
  const src = () => cluster.source.controlUrl;

  /** What both hosts run, as (host, id, state): the "nothing changed" witness. */
  async function snapshot(): Promise<string[][]> {
    const list = async (host: HostDaemon) =>
      (await cluster.client(host).call<EnclaveInfo[]>('GET', '/v1/enclaves')).map((e) => [
        host.options.bind,
        e.id,
        e.state,
      ]);
    return [...(await list(cluster.source)), ...(await list(cluster.destination))];
  }

  before(async () => {
    cluster = await LocalCluster.start('constmig-api-test-');
    appPort = await freePortOnBoth();
    enclave = await cluster
      .client(cluster.source)
      .call<EnclaveInfo>('POST', '/v1/enclaves', { app: 'kv', heapBytes: 16 * MiB, port: appPort });
  });
  after(async () => {
    await cluster.close();
  });

  describe('authentication', () => {
    /** Every endpoint, each with a body that would change something if the call got through. */
    const endpoints = (): { method: string; path: string; body?: unknown }[] => [
      { method: 'GET', path: '/v1/info' },
      { method: 'GET', path: '/v1/enclaves' },
      {
        method: 'POST',
        path: '/v1/enclaves',
        body: { app: 'kv', heapBytes: 2 * MiB, port: appPort + 1 },
      },
      { method: 'GET', path: `/v1/enclaves/${enclave.id}` },
      { method: 'DELETE', path: `/v1/enclaves/${enclave.id}` },
      {
        method: 'POST',
        path: `/v1/enclaves/${enclave.id}/migrate`,
        body: { to: cluster.destination.controlUrl },
      },
      {
        method: 'POST',
        path: '/v1/incoming',
        body: { id: '0badc0de', name: 'x', app: 'kv', heapBytes: 2 * MiB, port: appPort + 2 },
      },
      { method: 'GET', path: '/v1/no-such-endpoint' },
    ];
    const attempts = (): { name: string; headers: Record<string, string>; query?: string }[] => [
      { name: 'no token', headers: {} },
      { name: 'wrong token of the right length', headers: { authorization: `Bearer ${'0'.repeat(64)}` } },
      { name: 'a prefix of the token', headers: { authorization: `Bearer ${cluster.token.slice(0, 8)}` } },
      { name: 'the token and one more byte', headers: { authorization: `Bearer ${cluster.token}0` } },
      { name: 'empty bearer', headers: { authorization: 'Bearer ' } },
      { name: 'lower-case scheme', headers: { authorization: `bearer ${cluster.token}` } },
      {
        name: 'Basic scheme',
        headers: { authorization: `Basic ${Buffer.from(`constmig:${cluster.token}`).toString('base64')}` },
      },
      { name: 'Basic scheme, raw token', headers: { authorization: `Basic ${cluster.token}` } },
      { name: 'token in the query string', headers: {}, query: `?token=${cluster.token}` },
      { name: 'access_token in the query string', headers: {}, query: `?access_token=${cluster.token}` },
    ];

    test('every endpoint refuses every wrong credential with 401 and changes nothing', async () => {
      const before = await snapshot();
      for (const endpoint of endpoints()) {
        for (const attempt of attempts()) {
          const what = `${endpoint.method} ${endpoint.path} with ${attempt.name}`;
          const reply = await call(
            `${src()}${endpoint.path}${attempt.query ?? ''}`,
            endpoint.method,
            attempt.headers,
            endpoint.body === undefined ? undefined : JSON.stringify(endpoint.body),
          );
          assert.equal(reply.status, 401, what);
          assert.equal(reply.headers.get('www-authenticate'), 'Bearer realm="constmig"', what);
          assert.deepEqual(reply.body, { error: 'missing or wrong control token' }, what);
          assert.ok(!reply.text.includes('\n'), 'one line');
        }
      }
      assert.deepEqual(await snapshot(), before);
      assert.deepEqual(
        before.filter(([, id]) => id === enclave.id),
        [['127.0.0.1', enclave.id, 'running']],
      );
    });

    test('the right token in exactly `Bearer <token>` is accepted', async () => {
      const reply = await call(`${src()}/v1/info`, 'GET', bearer());
      assert.equal(reply.status, 200);
      assert.equal(reply.body.control, src());
    });

    test('a 10 MiB body without the token is refused without being read', async () => {
      const reply = await rawExchange(cluster.source, [
        'POST /v1/enclaves HTTP/1.1',
        'host: x',
        'content-type: application/json',
        `content-length: ${10 * MiB}`,
      ]);
      assert.match(reply.head, /^HTTP\/1\.1 401 /);
      assert.match(reply.head, /\r\nconnection: close\r\n/i);
      assert.ok(reply.closedByServer, 'the host closed the connection instead of reading the body');
    });
  });

  describe('invalid input gets a clear 4xx and changes nothing', () => {
    interface Case {
      name: string;
      method: string;
      path: string;
      body?: string;
      headers?: Record<string, string>;
      status: number;
      error: RegExp;
      allow?: string;
    }
    const run = (fields: Record<string, unknown>) =>
      JSON.stringify({ app: 'kv', heapBytes: 16 * MiB, port: appPort + 3, ...fields });
    /** POST /v1/enclaves: [name, body, status, error, request headers]. */
    const runCases = (): [string, string | undefined, number, RegExp, Record<string, string>?][] => [
      ['malformed JSON', '{"app":', 400, /^request body is not valid JSON$/],
      ['body is an array', '[]', 400, /^request body must be a JSON object$/],
      ['body is null', 'null', 400, /^request body must be a JSON object$/],
      ['body is a string', '"kv"', 400, /^request body must be a JSON object$/],
      ['unknown field', run({ admin: true }), 400, /^invalid request: Unrecognized key: "admin"$/],
      ['prototype key', run({}).replace('{', '{"__proto__":{"x":1},'), 400, /Unrecognized key: "__proto__"/],
      ['missing fields', '{}', 400, /^invalid request: app: /],
      ['no body at all', undefined, 400, /^invalid request: app: /],
      [
        'heap as a string',
        run({ heapBytes: '16MiB' }),
        400,
        /^invalid request: heapBytes: .*received string$/,
      ],
      ['heap of 1 PiB', run({ heapBytes: 2 ** 50 }), 400, /heapBytes: heap must be at most 16 GiB$/],
      ['negative heap', run({ heapBytes: -16 * MiB }), 400, /heapBytes: heap must be at least 1 MiB$/],
      ['fractional heap', run({ heapBytes: 16 * MiB + 0.5 }), 400, /heapBytes: heap must be a whole number/],
      ['heap "NaN"', run({ heapBytes: 'NaN' }), 400, /heapBytes: .*expected number, received string$/],
      ['heap 1e400', run({}).replace(String(16 * MiB), '1e400'), 400, /heapBytes: .*received Infinity$/],
      ['port 0', run({ port: 0 }), 400, /port: port must be 1-65535$/],
      ['port 70000', run({ port: 70000 }), 400, /port: port must be 1-65535$/],
      ['port 80.5', run({ port: 80.5 }), 400, /port: port must be 1-65535$/],
      ['fill larger than the heap', run({ fillBytes: 17 * MiB }), 400, /^fill size is larger than the heap$/],
      ['negative fill', run({ fillBytes: -1 }), 400, /fillBytes: fill must not be negative$/],
      ['name with slashes', run({ name: '../../etc/passwd' }), 400, /name: names are 1-64 of/],
      ['unknown application', run({ app: 'redis' }), 400, /^invalid request: app: /],
      ['port used by another enclave', run({ port: appPort }), 409, /already used by enclave/],
      [
        'text/plain body',
        run({}),
        415,
        /^request body must be application\/json, not 'text\/plain'$/,
        { 'content-type': 'text/plain' },
      ],
      [
        'form body',
        'app=kv',
        415,
        /must be application\/json/,
        { 'content-type': 'application/x-www-form-urlencoded' },
      ],
      [
        'JSON with a charset',
        run({ port: 70000 }),
        400,
        /port must be/,
        { 'content-type': 'application/json; charset=utf-8' },
      ],
    ];
    /** No body: [name, method, path, status, error, Allow]. */
    const pathCases = (): [string, string, string, number, RegExp, string?][] => [
      [
        'unknown enclave id',
        'GET',
        '/v1/enclaves/deadbeef',
        404,
        /^no enclave with id 'deadbeef' on this host$/,
      ],
      ['unknown enclave id, DELETE', 'DELETE', '/v1/enclaves/deadbeef', 404, /no enclave with id 'deadbeef'/],
      [
        'unknown enclave, migrate',
        'POST',
        '/v1/enclaves/deadbeef/migrate',
        404,
        /no enclave with id 'deadbeef'/,
      ],
      [
        'malformed enclave id',
        'GET',
        '/v1/enclaves/DEADBEEF',
        400,
        /^malformed enclave id: ids are 8 hex digits$/,
      ],
      ['malformed id, encoded slashes', 'DELETE', '/v1/enclaves/..%2F..%2Fx', 400, /^malformed enclave id/],
      [
        'PUT on the list',
        'PUT',
        '/v1/enclaves',
        405,
        /^PUT is not allowed on \/v1\/enclaves \(allowed: GET, POST\)$/,
        'GET, POST',
      ],
      ['DELETE on info', 'DELETE', '/v1/info', 405, /^DELETE is not allowed/, 'GET'],
      ['PATCH on an enclave', 'PATCH', '/v1/enclaves/deadbeef', 405, /^PATCH is not allowed/, 'GET, DELETE'],
      ['GET on migrate', 'GET', '/v1/enclaves/deadbeef/migrate', 405, /^GET is not allowed/, 'POST'],
      ['GET on incoming', 'GET', '/v1/incoming', 405, /^GET is not allowed/, 'POST'],
      ['unknown path', 'GET', '/v2/enclaves', 404, /^no such endpoint: \/v2\/enclaves$/],
      ['root', 'GET', '/', 404, /^no such endpoint: \/$/],
      ['too deep a path', 'GET', '/v1/enclaves/deadbeef/migrate/now', 404, /^no such endpoint/],
      ['trailing slash', 'GET', '/v1/enclaves/', 404, /^no such endpoint/],
    ];
    /** POST /v1/enclaves/<running enclave>/migrate: [name, body, status, error]. */
    const migrateCases = (): [string, string, number, RegExp][] => [
      ['malformed destination', '{"to":"not a url::"}', 400, /^invalid request: to: malformed host URL/],
      ['destination not http', '{"to":"ftp://127.0.0.2:7401"}', 400, /to: unsupported host URL .*only http/],
      ['destination without a port', '{"to":"127.0.0.2"}', 400, /to: host URL '127.0.0.2' needs a port/],
      ['malformed data address', '{"to":"127.0.0.2:1","dataAddress":"x"}', 400, /dataAddress: malformed/],
      ['data port 0', '{"to":"127.0.0.2:1","dataAddress":"127.0.0.2:0"}', 400, /needs a port 1-65535$/],
      ['unknown mode', '{"to":"127.0.0.2:1","mode":"teleport"}', 400, /^invalid request: mode: /],
      ['verify as a string', '{"to":"127.0.0.2:1","verify":"yes"}', 400, /verify: .*expected boolean/],
      ['unknown field', '{"to":"127.0.0.2:1","force":true}', 400, /Unrecognized key: "force"/],
      ['to itself', '{"to":"{source}"}', 400, /^source and destination are the same host$/],
    ];
    const incoming = (id: string) =>
      JSON.stringify({ id, name: 'x', app: 'kv', heapBytes: 2 * MiB, port: appPort + 4 });
    const cases = (): Case[] => [
      ...runCases().map(([name, body, status, error, headers]) => ({
        name,
        method: 'POST',
        path: '/v1/enclaves',
        body,
        headers,
        status,
        error,
      })),
      ...pathCases().map(([name, method, path, status, error, allow]) => ({
        name,
        method,
        path,
        status,
        error,
        allow,
      })),
      ...migrateCases().map(([name, body, status, error]) => ({
        name: `migrate: ${name}`,
        method: 'POST',
        path: `/v1/enclaves/${enclave.id}/migrate`,
        body: body.replace('{source}', src()),
        status,
        error,
      })),
      {
        name: 'incoming: malformed id',
        method: 'POST',
        path: '/v1/incoming',
        body: incoming('../x'),
        status: 400,
        error: /^invalid request: id: enclave ids are 8 hex digits$/,
      },
      {
        name: 'incoming: an enclave with this id runs here',
        method: 'POST',
        path: '/v1/incoming',
        body: incoming(enclave.id),
        status: 409,
        error: /already runs here$/,
      },
    ];

    test('each case: the expected status and message, one line', async () => {
      const before = await snapshot();
      for (const c of cases()) {
        const reply = await call(`${src()}${c.path}`, c.method, { ...bearer(), ...c.headers }, c.body);
        assert.equal(reply.status, c.status, `${c.name}: ${reply.text}`);
        assert.match(String(reply.body.error), c.error, c.name);
        assert.ok(!reply.text.includes('\n'), `${c.name}: one line`);
        if (c.allow) assert.equal(reply.headers.get('allow'), c.allow, c.name);
      }
      assert.deepEqual(await snapshot(), before);
    });

    test('a 10 MiB body announced by Content-Length gets 413 at once, unread', async () => {
      const reply = await rawExchange(cluster.source, [
        'POST /v1/enclaves HTTP/1.1',
        'host: x',
        `authorization: Bearer ${cluster.token}`,
        'content-type: application/json',
        `content-length: ${10 * MiB}`,
      ]);
      assert.match(reply.head, /^HTTP\/1\.1 413 /);
      assert.match(reply.body, /request body larger than 65536 bytes/);
      assert.ok(reply.closedByServer, 'closed without waiting for the 10 MiB');
    });

    test('a 10 MiB chunked body gets 413 after 64 KiB, before the rest is sent', async () => {
      const before = await snapshot();
      const reply = await rawExchange(
        cluster.source,
        [
          'POST /v1/enclaves HTTP/1.1',
          'host: x',
          `authorization: Bearer ${cluster.token}`,
          'content-type: application/json',
          'transfer-encoding: chunked',
        ],
        10 * MiB,
      );
      assert.match(reply.head, /^HTTP\/1\.1 413 /);
      assert.ok(reply.closedByServer);
      assert.ok(reply.bodyBytesSent < 10 * MiB, `answered after ${reply.bodyBytesSent} bytes of 10 MiB`);
      const info = await call(`${src()}/v1/info`, 'GET', bearer());
      assert.equal(info.status, 200, 'the host still serves');
      assert.deepEqual(await snapshot(), before);
    });

    test('a destination with another token: PREPARE fails with a 502 naming the cause', async () => {
      const stranger = new HostDaemon({
        listen: { host: '127.0.0.2', port: 0 },
        bind: '127.0.0.2',
        peerPort: null,
        stateDir: path.join(cluster.dir, 'stranger'),
        logFile: path.join(cluster.dir, 'stranger', 'host.log'),
        token: randomBytes(32).toString('hex'),
        simRootKeyFile: path.join(cluster.dir, 'sim-root-key.pem'),
      });
      await stranger.start();
      try {
        const before = await snapshot();
        const reply = await call(
          `${src()}/v1/enclaves/${enclave.id}/migrate`,
          'POST',
          bearer(),
          JSON.stringify({ to: stranger.controlUrl }),
        );
        assert.equal(reply.status, 502);
        assert.match(
          String(reply.body.error),
          /^PREPARE on http:\/\/127\.0\.0\.2:\d+ failed: .*missing or wrong control token; the hosts of a cluster must share one control token$/,
        );
        assert.deepEqual(await snapshot(), before, 'the source enclave is running again');
      } finally {
        await stranger.close();
      }
    });
    test('a destination answering PREPARE with a malformed reply: 502, and the source serves on', async () => {
      let prepareCalls = 0;
      const liar = http.createServer((_req, res) => {
        prepareCalls++;
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: enclave.id, ticket: 'not-hex', dataHost: '127.0.0.2', dataPort: 0 }));
      });
      await new Promise<void>((resolve) => liar.listen({ host: '127.0.0.2', port: 0 }, resolve));
      try {
        const before = await snapshot();
        const { port } = liar.address() as net.AddressInfo;
        const reply = await call(
          `${src()}/v1/enclaves/${enclave.id}/migrate`,
          'POST',
          bearer(),
          JSON.stringify({ to: `127.0.0.2:${port}` }),
        );
        assert.equal(prepareCalls, 1);
        assert.equal(reply.status, 502);
        assert.match(
          String(reply.body.error),
          /^PREPARE on http:\/\/127\.0\.0\.2:\d+ failed: malformed reply$/,
        );
        assert.deepEqual(await snapshot(), before);
      } finally {
        liar.close();
      }
    });
  });

  describe('peer port authentication', () => {
    let incoming: IncomingReply;
    const destinationState = async () =>
      (await cluster.client(cluster.destination).call<EnclaveInfo>('GET', `/v1/enclaves/${incoming.id}`))
        .state;

    before(async () => {
      // PREPARE as the source host would: an incoming enclave waiting for its data connection.
      incoming = await cluster.client(cluster.destination).call<IncomingReply>('POST', '/v1/incoming', {
        id: randomBytes(4).toString('hex'),
        name: 'peer-auth-target',
        app: 'kv',
        heapBytes: 4 * MiB,
        port: await freePortOnBoth(),
      });
    });

    const strangerToken = randomBytes(32).toString('hex');
    const otherTicket = randomBytes(TICKET_BYTES).toString('hex');
    const attacks = (): { name: string; bytes: Buffer; reason: string }[] => [
      {
        name: 'the right ticket with a MAC under another token',
        bytes: encodePreamble(incoming.ticket, peerAuth(strangerToken, incoming.ticket).toString('hex')),
        reason: 'wrong peer authentication',
      },
      {
        name: 'the right ticket with a zero MAC',
        bytes: encodePreamble(incoming.ticket, '00'.repeat(32)),
        reason: 'wrong peer authentication',
      },
      {
        name: 'the right ticket with the MAC of another ticket',
        bytes: encodePreamble(incoming.ticket, peerAuth(cluster.token, otherTicket).toString('hex')),
        reason: 'wrong peer authentication',
      },
      {
        name: 'an unknown ticket with a valid MAC',
        bytes: encodePreamble(otherTicket, peerAuth(cluster.token, otherTicket).toString('hex')),
        reason: 'no incoming enclave holds this ticket',
      },
      {
        name: 'the version-1 preamble (no MAC)',
        bytes: Buffer.concat([Buffer.from('CMIGDATA'), Buffer.from(incoming.ticket, 'hex')]),
        reason: 'not a constmig data preamble',
      },
    ];

    test('a wrong MAC or an unknown ticket is dropped before any enclave sees it', async () => {
      for (const attack of attacks()) {
        const outcome = await sendPreamble(cluster.destination.peerPort, attack.bytes);
        assert.equal(outcome.received, 0, `${attack.name}: no enclave answered`);
        assert.equal(await destinationState(), 'incoming', `${attack.name}: the enclave still waits`);
        await waitForLogLine(
          path.join(cluster.dir, '127.0.0.2', 'host.log'),
          (line) =>
            line.msg === 'peer connection refused' &&
            line.remote === outcome.local &&
            line.reason === attack.reason &&
            line.level === 40,
          attack.name,
        );
      }
    });

    test('the legitimate connection still reaches the incoming enclave afterwards', async () => {
      const outcome = await sendPreamble(
        cluster.destination.peerPort,
        encodePreamble(incoming.ticket, peerAuth(cluster.token, incoming.ticket).toString('hex')),
        { waitForData: true },
      );
      assert.ok(outcome.received > 0, 'the destination enclave spoke first (Hello)');
      // We hung up mid-handshake: the enclave that took the connection gives up and goes away.
      for (let i = 0; i < 250; i++) {
        const list = await cluster.client(cluster.destination).call<EnclaveInfo[]>('GET', '/v1/enclaves');
        if (!list.some((e) => e.id === incoming.id)) return;
        await sleep(20);
      }
      assert.fail('the incoming enclave is still there after its connection failed');
    });

    test('a real migration after the attacks succeeds', async () => {
      const report = await requestMigration(
        cluster.client(cluster.source),
        enclave.id,
        { to: cluster.destination.controlUrl, mode: 'stop-and-copy', verify: true },
        new MigrationProgressView(false),
      );
      assert.equal(report.verified, true);
      const onDestination = await cluster
        .client(cluster.destination)
        .call<EnclaveInfo>('GET', `/v1/enclaves/${enclave.id}`);
      assert.equal(onDestination.state, 'running');
    });
  });
});

describe('token file of `constmig host`', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-token-test-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const stateDir = path.join(dir, 'state');
  const tokenFile = path.join(stateDir, 'control-token');

  test('created 0600 (folder 0700) on first start, reused on the second, refused when 0644', async () => {
    const first = await startHost(['--state-dir', stateDir]);
    const token = fs.readFileSync(tokenFile, 'utf8').trim();
    try {
      assert.equal(first.listening.tokenFile, tokenFile, 'the listening line names the file');
      assert.ok(!first.line.includes(token), 'the listening line never shows the token');
      assert.match(token, /^[0-9a-f]{64}$/);
      assert.equal(fs.statSync(tokenFile).mode & 0o777, 0o600);
      assert.equal(fs.statSync(stateDir).mode & 0o777, 0o700);
      const control = String(first.listening.control);
      assert.equal((await call(`${control}/v1/enclaves`, 'GET', {})).status, 401);
      assert.equal(
        (await call(`${control}/v1/enclaves`, 'GET', { authorization: `Bearer ${token}` })).status,
        200,
      );
    } finally {
      await first.stop();
    }

    const second = await startHost(['--state-dir', stateDir]);
    try {
      assert.equal(fs.readFileSync(tokenFile, 'utf8').trim(), token, 'the same token');
      const control = String(second.listening.control);
      assert.equal(
        (await call(`${control}/v1/info`, 'GET', { authorization: `Bearer ${token}` })).status,
        200,
      );
    } finally {
      await second.stop();
    }

    fs.chmodSync(tokenFile, 0o644);
    const refused = await runCli(['host', '--listen', '127.0.0.1:0', '--state-dir', stateDir]);
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, '', 'never listened');
    assert.equal(
      refused.stderr,
      `constmig: error: token file ${tokenFile} is accessible by group or others (mode 0644); run: chmod 600 ${tokenFile}\n`,
    );
  });

  test('--token-file elsewhere: its folder is created 0700; a short token is refused', async () => {
    const custom = path.join(dir, 'keys', 'cluster-token');
    const host = await startHost(['--state-dir', path.join(dir, 'state2'), '--token-file', custom]);
    await host.stop();
    assert.equal(host.listening.tokenFile, custom);
    assert.equal(fs.statSync(custom).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.dirname(custom)).mode & 0o777, 0o700);

    const short = path.join(dir, 'short-token');
    fs.writeFileSync(short, 'secret\n', { mode: 0o600 });
    const refused = await runCli([
      'host',
      '--listen',
      '127.0.0.1:0',
      '--state-dir',
      stateDir,
      '--token-file',
      short,
    ]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /^constmig: error: token file .* cannot be used as a control token: it holds 6 characters, fewer than 32\n$/,
    );
  });
});

/** Raw HTTP over TCP: the request head, then (optionally) a chunked body fed slowly until the host answers. */
function rawExchange(
  host: HostDaemon,
  headLines: string[],
  chunkedBodyBytes = 0,
): Promise<{ head: string; body: string; closedByServer: boolean; bodyBytesSent: number }> {
  const { port } = new URL(host.controlUrl);
  return new Promise((resolve) => {
    const socket = net.connect({ host: host.options.bind, port: Number(port) });
    let received = '';
    let bodyBytesSent = 0;
    let answered = false;
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      received += d.toString('latin1');
      answered = true;
    });
    let closedByServer = true;
    const timer = setTimeout(() => {
      closedByServer = false;
      socket.destroy();
    }, 5000);
    socket.on('close', () => {
      clearTimeout(timer);
      const [head = '', body = ''] = received.split('\r\n\r\n');
      resolve({ head, body, closedByServer, bodyBytesSent });
    });
    socket.write(`${headLines.join('\r\n')}\r\n\r\n`);
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const pump = () => {
      if (answered || socket.destroyed || bodyBytesSent >= chunkedBodyBytes) return;
      socket.write(`${chunk.length.toString(16)}\r\n`);
      socket.write(chunk);
      socket.write('\r\n');
      bodyBytesSent += chunk.length;
      setTimeout(pump, 2);
    };
    pump();
  });
}

/** Connects to a peer port, sends the bytes, and reports whether anything came back before the close. */
function sendPreamble(
  port: number,
  bytes: Buffer,
  { waitForData = false } = {},
): Promise<{ received: number; local: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.2', port }, () => {
      const local = `${socket.localAddress}:${socket.localPort}`;
      let received = 0;
      socket.on('data', (d: Buffer) => {
        received += d.length;
        if (waitForData) socket.destroy();
      });
      socket.on('close', () => resolve({ received, local }));
      // A short (version-1) preamble is complete only when we say so.
      if (bytes.length < PREAMBLE_BYTES) socket.end(bytes);
      else socket.write(bytes);
    });
    socket.on('error', () => {});
    socket.setTimeout(5000, () => reject(new Error('the peer port neither answered nor closed')));
  });
}

async function waitForLogLine(
  file: string,
  accept: (line: Record<string, unknown>) => boolean,
  what: string,
): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
    if (lines.some((l) => accept(JSON.parse(l) as Record<string, unknown>))) return;
    await sleep(20);
  }
  assert.fail(`${what}: no matching warning in ${file}`);
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `constmig host` on an ephemeral port until its "listening" line; stop() ends it with SIGTERM. */
function startHost(
  args: string[],
): Promise<{ line: string; listening: Record<string, unknown>; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [CLI, 'host', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      const newline = stdout.indexOf('\n');
      if (newline === -1) return;
      const line = stdout.slice(0, newline);
      resolve({ line, listening: JSON.parse(line) as Record<string, unknown>, stop });
    });
    child.once('exit', (code) => reject(new Error(`constmig host exited (${code}) before listening`)));
  });
}
