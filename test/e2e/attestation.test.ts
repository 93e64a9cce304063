import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createPrivateKey, randomBytes, sign } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DESTINATION_BIND, freePortOnBoth, SOURCE_BIND } from '../../src/bench/local-cluster.js';
import { requestMigration } from '../../src/cli/commands/migrate.js';
import { MigrationProgressView } from '../../src/cli/migrate-progress.js';
import type { EnclaveInfo } from '../../src/host/api-schema.js';
import { HostClient } from '../../src/host/client.js';
import { HostDaemon } from '../../src/host/daemon.js';
import { computeMeasurement } from '../../src/tee/measurement.js';
import { upgradePayload } from '../../src/tee/policy.js';
import { generateEd25519Pem, spkiBase64 } from '../../src/tee/sim-root.js';
import { RespTestClient } from '../helpers/resp-test-client.js';

/**
 * Authenticity of the peer (DESIGN.md §2.5) between real host daemons: a destination running other
 * code, or on a platform of a root the policy does not trust, never receives the application, and
 * the source keeps serving all its data. A signed upgrade is the one way to migrate across images.
 */

const MiB = 2 ** 20;
/** dist/ of this build: dist/test/e2e → dist. */
const DIST = fileURLToPath(new URL('../..', import.meta.url));
const REPO = path.dirname(DIST);

interface Host {
  url: string;
  close: () => Promise<void>;
}

function inProcessHost(
  dir: string,
  bind: string,
  token: string,
  simRootKeyFile: string,
  policyFile?: string,
) {
  const daemon = new HostDaemon({
    listen: { host: bind, port: 0 },
    bind,
    peerPort: null,
    stateDir: path.join(dir, bind),
    token,
    logFile: path.join(dir, bind, 'host.log'),
    simRootKeyFile,
    policyFile,
  });
  return daemon;
}

/**
 * A copy of this build whose code differs by one comment, run as a separate `constmig host`: its
 * enclaves have another sim measurement, exactly as a modified image would.
 */
function variantBuild(dir: string): string {
  const variant = path.join(dir, 'variant');
  fs.cpSync(path.join(DIST, 'src'), path.join(variant, 'dist', 'src'), { recursive: true });
  fs.copyFileSync(path.join(REPO, 'package.json'), path.join(variant, 'package.json'));
  fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(variant, 'node_modules'));
  fs.appendFileSync(path.join(variant, 'dist', 'src', 'version.js'), '\n// a modified image\n');
  return path.join(variant, 'dist', 'src');
}

async function spawnHost(bundle: string, args: string[]): Promise<Host & { child: ChildProcess }> {
  const child = spawn(process.execPath, [path.join(bundle, 'cli', 'main.js'), 'host', ...args], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const lines = readline.createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`host exited with ${code}`)));
  });
  const { control } = JSON.parse(first) as { control: string };
  return {
    child,
    url: control,
    close: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

describe('attestation between host daemons', { timeout: 120_000 }, () => {
  let dir: string;
  const token = randomBytes(32).toString('hex');
  let sharedRootKey: string;
  let source: HostDaemon;
  const client = (url: string) => new HostClient(url, token);

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'constmig-attest-'));
    sharedRootKey = path.join(dir, 'sim-root-key.pem');
    source = inProcessHost(dir, SOURCE_BIND, token, sharedRootKey);
    await source.start();
  });
  after(async () => {
    await source.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Runs kv with known keys on the source; returns its info and a checker of those keys. */
  async function runKvWithKeys(): Promise<{ info: EnclaveInfo; stillServes: () => Promise<void> }> {
    const port = await freePortOnBoth();
    const info = await client(source.controlUrl).call<EnclaveInfo>('POST', '/v1/enclaves', {
      app: 'kv',
      heapBytes: 16 * MiB,
      port,
      fillBytes: 2 * MiB,
    });
    const resp = await RespTestClient.connect(port, SOURCE_BIND);
    assert.equal(await resp.command('SET', 'secret', 'stays home'), 'OK');
    const dbsize = await resp.command('DBSIZE');
    resp.close();
    return {
      info,
      stillServes: async () => {
        const again = await RespTestClient.connect(port, SOURCE_BIND);
        try {
          assert.deepEqual(await again.command('GET', 'secret'), Buffer.from('stays home'));
          assert.equal(await again.command('DBSIZE'), dbsize);
        } finally {
          again.close();
        }
        const [listed] = await client(source.controlUrl).call<EnclaveInfo[]>('GET', '/v1/enclaves');
        assert.equal(listed?.state, 'running');
      },
    };
  }

  const migrate = (id: string, to: string) =>
    requestMigration(
      client(source.controlUrl),
      id,
      { to, mode: 'stop-and-copy', verify: true },
      new MigrationProgressView(false),
    );

  async function assertNothingOn(url: string): Promise<void> {
    assert.deepEqual(await client(url).call<EnclaveInfo[]>('GET', '/v1/enclaves'), []);
  }

  test('a destination on a platform of an untrusted sim root is refused', async () => {
    const rogue = inProcessHost(dir, DESTINATION_BIND, token, path.join(dir, 'rogue-root.pem'));
    await rogue.start();
    try {
      const { info, stillServes } = await runKvWithKeys();
      await assert.rejects(
        migrate(info.id, rogue.controlUrl),
        /destination: source refused by policy: sim root [0-9a-f]{16} is not trusted by the policy/,
      );
      await stillServes();
      await assertNothingOn(rogue.controlUrl);
      await client(source.controlUrl).call('DELETE', `/v1/enclaves/${info.id}`);
    } finally {
      await rogue.close();
    }
  });

  describe('a destination running a modified image', () => {
    let bundle: string;
    let sourceMeasurement: string;
    let variantMeasurement: string;
    before(() => {
      bundle = variantBuild(dir);
      sourceMeasurement = computeMeasurement(path.join(DIST, 'src'), process.version);
      variantMeasurement = computeMeasurement(bundle, process.version);
      assert.notEqual(variantMeasurement, sourceMeasurement);
    });

    async function variantHost(policyFile?: string) {
      const tokenFile = path.join(dir, 'token');
      fs.writeFileSync(tokenFile, token, { mode: 0o600 });
      const args = ['--listen', `${DESTINATION_BIND}:0`, '--token-file', tokenFile];
      args.push('--sim-root-key', sharedRootKey, '--state-dir', path.join(dir, 'variant-state'));
      if (policyFile) args.push('--policy', policyFile);
      return spawnHost(bundle, args);
    }

    test('is refused by both sides, and the source keeps serving', async () => {
      const host = await variantHost();
      try {
        const { info, stillServes } = await runKvWithKeys();
        assert.equal(info.measurement, sourceMeasurement);
        await assert.rejects(
          migrate(info.id, host.url),
          new RegExp(`measurement ${variantMeasurement} may not receive from ${sourceMeasurement}`),
        );
        await stillServes();
        await assertNothingOn(host.url);
        await client(source.controlUrl).call('DELETE', `/v1/enclaves/${info.id}`);
      } finally {
        await host.close();
      }
    });

    test('is accepted when the policy of both hosts carries an upgrade signed by the image signer', async () => {
      const signer = generateEd25519Pem().privateKeyPem;
      const rootSpki = spkiBase64(createPrivateKey(fs.readFileSync(sharedRootKey, 'utf8')));
      const policyFile = path.join(dir, 'upgrade-policy.json');
      fs.writeFileSync(
        policyFile,
        JSON.stringify({
          version: 1,
          measurements: {
            imageSigners: [spkiBase64(createPrivateKey(signer))],
            upgrades: [
              {
                from: sourceMeasurement,
                to: variantMeasurement,
                signature: sign(
                  null,
                  upgradePayload(sourceMeasurement, variantMeasurement),
                  createPrivateKey(signer),
                ).toString('base64'),
              },
            ],
          },
          platforms: { sim: { roots: [rootSpki] } },
        }),
      );
      const upgradingSource = inProcessHost(dir, '127.0.0.3', token, sharedRootKey, policyFile);
      await upgradingSource.start();
      const host = await variantHost(policyFile);
      try {
        const port = await freePortOnBoth();
        const info = await client(upgradingSource.controlUrl).call<EnclaveInfo>('POST', '/v1/enclaves', {
          app: 'kv',
          heapBytes: 16 * MiB,
          port,
        });
        const report = await requestMigration(
          client(upgradingSource.controlUrl),
          info.id,
          { to: host.url, mode: 'stop-and-copy', verify: true },
          new MigrationProgressView(false),
        );
        assert.equal(report.verified, true);
        const [moved] = await client(host.url).call<EnclaveInfo[]>('GET', '/v1/enclaves');
        assert.equal(moved?.measurement, variantMeasurement);
      } finally {
        await host.close();
        await upgradingSource.close();
      }
    });
  });
});
