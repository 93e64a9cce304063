import { type HeapAllocator, HeapFullError, MAX_ALLOCATION_BYTES } from '../../heap/allocator.js';
import type { SecureHeap } from '../../heap/secure-heap.js';
import { fillStore } from './fill.js';
import { renderInfo, type ServerFacts } from './info.js';
import { KvValueError } from './kv-errors.js';
import type { KvStore } from './kv-store.js';
import { INT64_MIN, parseRedisInteger } from './redis-integer.js';
import type { ReplyWriter } from './resp.js';

export interface CommandContext {
  readonly store: KvStore;
  readonly heap: SecureHeap;
  readonly allocator: HeapAllocator;
  facts(): ServerFacts;
}

/** What the connection does after a command: go on, or close once the replies are written (QUIT). */
export type CommandOutcome = 'continue' | 'close';

type Handler = (ctx: CommandContext, args: Buffer[], out: ReplyWriter) => CommandOutcome | undefined;

interface CommandSpec {
  /** Redis's convention: N means exactly N arguments (name included), -N means at least N. */
  arity: number;
  run: Handler;
}

export const OOM_ERROR = "OOM command not allowed when used memory > 'maxmemory'.";
const NOT_AN_INTEGER = 'ERR value is not an integer or out of range';
const SYNTAX_ERROR = 'ERR syntax error';

/** Runs one parsed request and writes its reply. Errors a client can cause become error replies. */
export function executeCommand(ctx: CommandContext, args: Buffer[], out: ReplyWriter): CommandOutcome {
  const name = args[0]!.toString('utf8');
  const command = COMMANDS.get(name.toLowerCase());
  if (!command) {
    out.error(unknownCommandMessage(name, args));
    return 'continue';
  }
  if (command.arity > 0 ? args.length !== command.arity : args.length < -command.arity) {
    out.error(wrongArity(name.toLowerCase()));
    return 'continue';
  }
  try {
    return command.run(ctx, args, out) ?? 'continue';
  } catch (err) {
    if (err instanceof KvValueError) out.error(err.message);
    else if (err instanceof HeapFullError) out.error(OOM_ERROR);
    else throw err;
    return 'continue';
  }
}

/** Redis 7's reply to an unknown command: the name and the first arguments, up to 128 bytes. */
function unknownCommandMessage(name: string, args: Buffer[]): string {
  let listed = '';
  for (let i = 1; i < args.length && listed.length < 128; i++) {
    listed += `'${args[i]!.toString('utf8').slice(0, 128 - listed.length)}' `;
  }
  return `ERR unknown command '${name.slice(0, 128)}', with args beginning with: ${listed}`;
}

function wrongArity(fullName: string): string {
  return `ERR wrong number of arguments for '${fullName}' command`;
}

function upper(arg: Buffer): string {
  return arg.toString('latin1').toUpperCase();
}

function integerArg(arg: Buffer): bigint {
  const value = parseRedisInteger(arg);
  if (value === null) throw new KvValueError(NOT_AN_INTEGER);
  return value;
}

const ping: Handler = (_ctx, args, out) => {
  if (args.length > 2) out.error(wrongArity('ping'));
  else if (args.length === 2) out.bulk(args[1]!);
  else out.simple('PONG');
  return 'continue';
};

const set: Handler = ({ store }, args, out) => {
  const key = args[1]!;
  const value = args[2]!;
  let condition: 'always' | 'if-absent' | 'if-present' = 'always';
  let returnOld = false;
  for (const option of args.slice(3).map(upper)) {
    if (option === 'NX' && condition !== 'if-present') condition = 'if-absent';
    else if (option === 'XX' && condition !== 'if-absent') condition = 'if-present';
    else if (option === 'GET') returnOld = true;
    // Without expiry there is no TTL to keep; EX, PX, EXAT and PXAT are not supported.
    else if (option !== 'KEEPTTL') {
      out.error(SYNTAX_ERROR);
      return 'continue';
    }
  }
  const old = returnOld ? store.get(key) : null;
  const present = returnOld ? old !== null : condition !== 'always' && store.exists(key);
  const applies = condition === 'always' || (condition === 'if-present') === present;
  if (applies) store.set(key, value);
  if (returnOld) out.bulk(old);
  else if (applies) out.simple('OK');
  else out.nullBulk();
  return 'continue';
};

function incrementBy(ctx: CommandContext, key: Buffer, by: bigint, out: ReplyWriter): CommandOutcome {
  out.integer(ctx.store.incrBy(key, by));
  return 'continue';
}

const config: Handler = ({ heap }, args, out) => {
  const sub = upper(args[1]!);
  if (sub !== 'GET') {
    out.error(`ERR unknown subcommand '${args[1]!.toString('utf8').slice(0, 128)}'. Try CONFIG HELP.`);
    return 'continue';
  }
  if (args.length < 3) {
    out.error(wrongArity('config|get'));
    return 'continue';
  }
  // The few parameters clients ask for (redis-benchmark reads save and appendonly); the rest is empty.
  const known: Record<string, string> = {
    save: '',
    appendonly: 'no',
    databases: '1',
    maxmemory: String(heap.byteLength),
    'maxmemory-policy': 'noeviction',
  };
  const names = [...new Set(args.slice(2).map((a) => a.toString('utf8').toLowerCase()))].filter(
    (n) => n in known,
  );
  out.arrayHeader(names.length * 2);
  for (const name of names) {
    out.bulk(name);
    out.bulk(known[name]!);
  }
  return 'continue';
};

const DEBUG_POPULATE_USAGE = "ERR unknown subcommand or wrong number of arguments for '%s'. Try DEBUG HELP.";

/** DEBUG POPULATE count [prefix] [size]: keys `<prefix>:0` .. `<prefix>:<count-1>`, existing ones kept. */
const debug: Handler = (ctx, args, out) => {
  const sub = args[1]!;
  if (upper(sub) !== 'POPULATE' || args.length > 5 || args.length < 3) {
    out.error(DEBUG_POPULATE_USAGE.replace('%s', sub.toString('utf8').slice(0, 128)));
    return 'continue';
  }
  const count = parseRedisInteger(args[2]!);
  const size = args[4] === undefined ? undefined : parseRedisInteger(args[4]);
  if (count === null || count < 0n || size === null || (size !== undefined && size < 0n)) {
    out.error('ERR value is out of range, must be positive');
    return 'continue';
  }
  if (size !== undefined && size > BigInt(MAX_ALLOCATION_BYTES)) {
    out.error(`ERR value size exceeds the ${MAX_ALLOCATION_BYTES} byte entry limit`);
    return 'continue';
  }
  const prefix = args[3]?.toString('latin1') ?? 'key';
  const filled = fillStore(ctx.store, ctx.heap, ctx.allocator, ctx.heap.byteLength, {
    count: Number(count),
    keyPrefix: `${prefix}:`,
    firstIndex: 0,
    ...(size === undefined ? {} : { valueSize: Number(size) }),
  });
  if (filled.memoryBound) out.error(OOM_ERROR);
  else out.simple('OK');
  return 'continue';
};

const COMMANDS = new Map<string, CommandSpec>([
  ['ping', { arity: -1, run: ping }],
  ['echo', { arity: 2, run: (_ctx, args, out) => void out.bulk(args[1]!) }],
  ['get', { arity: 2, run: ({ store }, args, out) => void out.bulk(store.get(args[1]!)) }],
  ['set', { arity: -3, run: set }],
  [
    'del',
    {
      arity: -2,
      run: ({ store }, args, out) => void out.integer(args.slice(1).filter((k) => store.delete(k)).length),
    },
  ],
  [
    'exists',
    {
      arity: -2,
      run: ({ store }, args, out) => void out.integer(args.slice(1).filter((k) => store.exists(k)).length),
    },
  ],
  ['incr', { arity: 2, run: (ctx, args, out) => incrementBy(ctx, args[1]!, 1n, out) }],
  ['decr', { arity: 2, run: (ctx, args, out) => incrementBy(ctx, args[1]!, -1n, out) }],
  ['incrby', { arity: 3, run: (ctx, args, out) => incrementBy(ctx, args[1]!, integerArg(args[2]!), out) }],
  [
    'decrby',
    {
      arity: 3,
      run: (ctx, args, out) => {
        const by = integerArg(args[2]!);
        if (by === INT64_MIN) throw new KvValueError('ERR decrement would overflow');
        return incrementBy(ctx, args[1]!, -by, out);
      },
    },
  ],
  [
    'mget',
    {
      arity: -2,
      run: ({ store }, args, out) => {
        out.arrayHeader(args.length - 1);
        for (let i = 1; i < args.length; i++) out.bulk(store.get(args[i]!));
        return 'continue';
      },
    },
  ],
  [
    'mset',
    {
      arity: -3,
      run: ({ store }, args, out) => {
        if (args.length % 2 === 0) {
          out.error(wrongArity('mset'));
          return 'continue';
        }
        const pairs: [Buffer, Buffer][] = [];
        for (let i = 1; i < args.length; i += 2) pairs.push([args[i]!, args[i + 1]!]);
        store.setMany(pairs);
        out.simple('OK');
        return 'continue';
      },
    },
  ],
  ['dbsize', { arity: 1, run: ({ store }, _args, out) => void out.integer(store.size) }],
  [
    'info',
    {
      arity: -1,
      run: (ctx, args, out) => {
        const sections = args.slice(1).map((a) => a.toString('utf8'));
        out.bulk(
          renderInfo(
            { store: ctx.store, heap: ctx.heap, allocator: ctx.allocator, facts: ctx.facts() },
            sections,
          ),
        );
        return 'continue';
      },
    },
  ],
  [
    'select',
    {
      arity: 2,
      run: (_ctx, args, out) => {
        if (integerArg(args[1]!) !== 0n) out.error('ERR DB index is out of range');
        else out.simple('OK');
        return 'continue';
      },
    },
  ],
  [
    'command',
    {
      arity: -1,
      // Enough for redis-cli, which only uses COMMAND DOCS for hints and copes with an empty answer.
      run: (_ctx, args, out) => {
        const sub = args[1] === undefined ? 'DOCS' : upper(args[1]);
        if (sub === 'COUNT') out.integer(COMMANDS.size);
        else if (sub === 'DOCS' || sub === 'INFO' || sub === 'LIST') out.arrayHeader(0);
        else
          out.error(`ERR unknown subcommand '${args[1]!.toString('utf8').slice(0, 128)}'. Try COMMAND HELP.`);
        return 'continue';
      },
    },
  ],
  ['config', { arity: -2, run: config }],
  ['debug', { arity: -2, run: debug }],
  [
    'quit',
    {
      arity: -1,
      run: (_ctx, _args, out) => {
        out.simple('OK');
        return 'close';
      },
    },
  ],
]);
