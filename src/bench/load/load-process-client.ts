import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { LoadOutcome, LoadParams, RunningLoad } from './bench-load.js';

/** The entry point of a load in a process of its own (its protocol is described there). */
export const LOAD_PROCESS_MAIN = fileURLToPath(new URL('./load-process.js', import.meta.url));

/** One line of load-process.ts's stdout. */
export type LoadProcessMessage = { startedAtMs: number } | { served: true } | LoadOutcome | { error: string };

/** Runs `node ARGS` somewhere, e.g. NetnsCluster.spawnNode inside a namespace. */
export type NodeSpawner = (args: string[], options: SpawnOptions) => ChildProcess;

/** Enough of the child's stderr to say why it ended. */
const STDERR_KEPT = 2000;

/**
 * Starts load-process.ts with `params` through `spawnNode` and resolves once its load runs. The
 * handle's commands go to the child's stdin, and each answer is the child's next line on stdout.
 */
export async function startLoadProcess(spawnNode: NodeSpawner, params: LoadParams): Promise<RunningLoad> {
  const child = spawnNode([LOAD_PROCESS_MAIN, JSON.stringify(params)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-STDERR_KEPT)));
  // A child that is gone shows as the end of its stdout (below); a write to it must not crash this one.
  child.stdin!.on('error', () => {});
  child.on('error', () => {});
  const exited = once(child, 'close').then(() => child);
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();

  const next = async (): Promise<LoadProcessMessage> => {
    const line = await lines.next();
    if (line.done) {
      await exited;
      const how = child.exitCode !== null ? `with code ${child.exitCode}` : `on ${child.signalCode}`;
      throw new Error(`the load process exited ${how}${stderr.trim() ? `: ${stderr.trim()}` : ''}`);
    }
    const message = JSON.parse(line.value) as LoadProcessMessage;
    if ('error' in message) throw new Error(`the load process: ${message.error}`);
    return message;
  };
  const command = (line: string) => child.stdin!.write(`${line}\n`);

  const started = await next();
  if (!('startedAtMs' in started)) throw new Error(`the load process began with ${JSON.stringify(started)}`);
  return {
    startedAtMs: started.startedAtMs,
    async servedAgain(timeoutMs) {
      command(`served ${timeoutMs}`);
      await next();
    },
    async stop(check) {
      command(check ? 'stop check' : 'stop');
      const outcome = await next();
      child.stdin!.end();
      await exited;
      if (!('result' in outcome)) throw new Error(`the load process answered ${JSON.stringify(outcome)}`);
      return outcome;
    },
  };
}
