/**
 * A benchmark client load in a process of its own (`node load-process.js PARAMS_JSON`), for a client
 * that must run somewhere else than the harness: inside the source host's network namespace
 * (NetnsCluster.spawnNode). It starts the load (bench-load.ts, the same classes as in-process) and
 * speaks one JSON line per message on stdout, answering commands read one per line on stdin; the
 * parent side is load-process-client.ts, which holds the protocol.
 *
 *   stdout: {"startedAtMs": N}                      once the load runs
 *   stdin:  served MS   stdout: {"served": true}    once served again, or after MS
 *   stdin:  stop | stop check
 *           stdout: {"result": LoadResult, "check": LoadCheck | null} or {"error": "..."}; then exits
 *
 * Bad parameters: one line on stderr, exit code 2. stdin closing before `stop` stops the load.
 */
import readline from 'node:readline';
import { errorMessage } from '../../util/errors.js';
import { type LoadParams, parseLoadParams, startLoad } from './bench-load.js';
import type { LoadProcessMessage } from './load-process-client.js';

let params: LoadParams;
try {
  params = parseLoadParams(process.argv[2] ?? '');
} catch (err) {
  process.stderr.write(`load-process: ${errorMessage(err)}\n`);
  process.exit(2);
}

const send = (message: LoadProcessMessage) => process.stdout.write(`${JSON.stringify(message)}\n`);
const load = startLoad(params);
send({ startedAtMs: load.startedAtMs });

let stopping = false;
const stop = async (check: boolean) => {
  if (stopping) return;
  stopping = true;
  try {
    send(await load.stop(check));
  } catch (err) {
    send({ error: errorMessage(err) });
  }
  process.exit(0);
};

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const [command, arg] = line.trim().split(/\s+/);
  if (command === 'served') void load.servedAgain(Number(arg)).then(() => send({ served: true }));
  else if (command === 'stop') void stop(arg === 'check');
  else send({ error: `unknown command '${line.trim()}'` });
});
lines.on('close', () => void stop(false));
