#!/usr/bin/env node
import { Command, Option } from 'commander';
import { MIGRATION_MODES } from '../migrate/modes.js';
import { TRACKER_REQUESTS } from '../trackers/choice.js';
import { errorMessage, UserError } from '../util/errors.js';
import { VERSION } from '../version.js';
import { ALL_WORKLOADS, benchCommand, benchReportCommand } from './commands/bench.js';
import { demoCommand } from './commands/demo.js';
import { DEFAULT_SIM_ROOT_KEY, hostCommand } from './commands/host.js';
import { migrateCommand } from './commands/migrate.js';
import { psCommand } from './commands/ps.js';
import { runCommand } from './commands/run.js';
import { stopCommand } from './commands/stop.js';

/** Runs a command; a user mistake or an unreachable host is one line on stderr and exit 1. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const detail =
        process.env.CONSTMIG_DEBUG && !(err instanceof UserError) ? `\n${(err as Error).stack}` : '';
      process.stderr.write(`constmig: error: ${errorMessage(err)}${detail}\n`);
      process.exit(1);
    }
  };
}

const tokenFile = () =>
  new Option(
    '--token-file <file>',
    "file holding the hosts' control token (default: $CONSTMIG_TOKEN_FILE, else the token in $CONSTMIG_TOKEN)",
  );

const AUTHENTICATION_HELP = `
Authentication:
  Every host requires its control token on every call. \`constmig host\` creates it on first start
  (<state-dir>/control-token, mode 0600, or --token-file) and prints the file's path. Hosts that
  migrate to each other must share one token: copy the file, or start each with --token-file on it.
  Client commands read it from --token-file <file>, else $CONSTMIG_TOKEN_FILE, else $CONSTMIG_TOKEN.
  Example:
    constmig host --listen 127.0.0.1:7401 --token-file ~/.constmig/token &
    CONSTMIG_TOKEN_FILE=~/.constmig/token constmig ps --host 127.0.0.1:7401`;

const program = new Command('constmig')
  .description('Secure live migration of TEE enclave applications between hosts')
  .version(VERSION)
  .showHelpAfterError()
  // A command's options stop at its subcommand's name, so that `bench report --out` is report's own.
  .enablePositionalOptions()
  .addHelpText('after', AUTHENTICATION_HELP);

program
  .command('host')
  .description('run a host daemon: spawns enclaves, serves the control API, brokers migrations')
  .requiredOption('--listen <host:port>', 'control API address, e.g. 127.0.0.1:7401')
  .option(
    '--bind <address>',
    'address of every listener (control, peer, application ports); default: the --listen host',
  )
  .option('--peer-port <port>', 'port for incoming migration data (default: control port + 1)')
  .option(
    '--token-file <file>',
    'control token every caller must present (default: <state-dir>/control-token; created, mode 0600, if absent)',
  )
  .option('--state-dir <dir>', 'logs and the sim platform key (default: a folder under the system tmp dir)')
  .option(
    '--policy <file>',
    'attestation policy (JSON, see docs/security.md); default: same image only, platforms of our sim root',
  )
  .option(
    '--sim-root-key <file>',
    'sim root key that certifies this host (created if absent; share it between hosts that trust each other)',
    DEFAULT_SIM_ROOT_KEY,
  )
  .option(
    '--no-spare-enclave',
    'do not keep an enclave process started ahead of the next incoming migration (saves ~80 MB of RSS; PREPARE then waits 0.4-1 s for one to start)',
  )
  .action(action(hostCommand));

program
  .command('run')
  .description('start an application in a new enclave and print its id')
  .argument('<app>', 'application (kv)')
  .requiredOption('--host <url>', 'host daemon, e.g. http://127.0.0.1:7401')
  .requiredOption('--heap <size>', 'SecureHeap size, e.g. 1GiB')
  .requiredOption('--port <port>', 'application TCP port (kept when the application moves)')
  .option('--name <name>', 'a name for the enclave')
  .option('--fill <size>', 'fill the application with data up to this size first (e.g. 512MiB)')
  .option('--json', 'print the enclave description as JSON')
  .addOption(tokenFile())
  .action(action(runCommand));

program
  .command('ps')
  .description('list the enclaves of a host')
  .requiredOption('--host <url>', 'host daemon')
  .option('--json', 'print JSON')
  .addOption(tokenFile())
  .action(action(psCommand));

program
  .command('stop')
  .description('stop an enclave')
  .argument('<id>', 'enclave id')
  .requiredOption('--host <url>', 'host daemon')
  .addOption(tokenFile())
  .action(action(stopCommand));

program
  .command('migrate')
  .description('live-migrate an enclave to another host, with live progress and a report')
  .argument('<id>', 'enclave id')
  .requiredOption('--from <url>', 'source host daemon')
  .requiredOption('--to <url>', 'destination host daemon')
  .option('--mode <mode>', `migration mode (${MIGRATION_MODES.join(', ')})`, 'stop-and-copy')
  .option(
    '--data-address <host:port>',
    'connect the data path here instead of the address the destination advertises',
  )
  .option('--no-verify', 'skip the end-to-end content digest (faster; `verified` is then false)')
  .option('--max-downtime <ms>', 'pre-copy: stop iterating once the rest fits this blackout', '300')
  .option(
    '--bandwidth <rate>',
    'limit background pages (pre-copy rounds, post-copy push), e.g. 1gbit, 100MB/s',
  )
  .option(
    '--reconnect-timeout <ms>',
    'after START, how long to keep dialling a broken link before the source stays in doubt (default 60000)',
  )
  .option(
    '--tracker <kind>',
    `post-copy and hybrid: how the destination catches use-before-restore (${TRACKER_REQUESTS.join(', ')}; auto: fault where userfaultfd works)`,
    'auto',
  )
  .option('--json', 'print one JSON report instead of progress and a table')
  .addOption(tokenFile())
  .action(action(migrateCommand));

program
  .command('demo')
  .description('two hosts on this machine, kv under client load, one migration, verified, with a report')
  .option('--heap <size>', 'heap size, filled with data', '1GiB')
  .option('--mode <mode>', `migration mode (${MIGRATION_MODES.join(', ')})`, 'stop-and-copy')
  .option('--port <port>', 'kv port (default: one free on 127.0.0.1 and 127.0.0.2)')
  .option('--max-downtime <ms>', 'pre-copy: stop iterating once the rest fits this blackout', '300')
  .option('--bandwidth <rate>', 'limit background pages (pre-copy rounds, post-copy push), e.g. 1gbit')
  .option(
    '--tracker <kind>',
    `post-copy and hybrid: how the destination catches use-before-restore (${TRACKER_REQUESTS.join(', ')}; auto: fault where userfaultfd works)`,
    'auto',
  )
  .option('--timeline <file>', 'write the client throughput timeline (ops per 100 ms) as JSON')
  .option('--json', 'print one JSON report')
  .action(action(demoCommand));

const bench = program
  .command('bench')
  .description(
    'workloads x heap sizes x migration modes side by side on two local hosts, under client load: medians, ratios, results JSON',
  )
  .option(
    '--quick',
    'short profile: every workload and variant once at 64MiB,256MiB (within 10 minutes on 2 cores)',
  )
  .option('--full', 'long profile: every workload and variant at 64MiB,1GiB,8GiB (about an hour and more)')
  .option(
    '--workloads <list>',
    `comma-separated, each NAME or NAME:WRITE_SHARE (default ${ALL_WORKLOADS}; kv alone is YCSB-B, 5 % writes)`,
  )
  .option('--sizes <list>', 'heap sizes, comma-separated (default 256MiB,1GiB,4GiB)')
  .option('--modes <list>', `migration modes, comma-separated (default all: ${MIGRATION_MODES.join(',')})`)
  .option(
    '--trackers <list>',
    'the trackers post-copy and hybrid run with, each in turn (default access,fault)',
  )
  .option('--repeat <n>', 'migrations per workload, size and variant (default 3; --quick, --full: 1)')
  .option('--no-verify', 'skip the end-to-end content digest (on by default)')
  .option('--max-downtime <ms>', 'pre-copy and hybrid: the blackout the rounds aim for (default 300)')
  .option(
    '--link <rate>',
    'hosts in two network namespaces joined by a link shaped to this rate, e.g. 10gbit',
  )
  .option('--out <dir>', 'where to write the results JSON and the summary (default bench-results)')
  .action(action(benchCommand));

bench
  .command('report')
  .description('results.md and charts (SVG, PNG) from the results JSON of a `constmig bench` run')
  .argument('<results.json>', 'the raw JSON a run wrote')
  .option('--out <dir>', "where to write results.md and charts/ (default: the JSON's folder)")
  .option(
    '--measure-limits',
    "if the run ended before measuring this machine's AES-256-GCM, SHA-256 and memcpy rates, measure them now (results.md says so)",
  )
  .action(action(benchReportCommand));

await program.parseAsync(process.argv);
