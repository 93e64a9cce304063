import { describe, test } from 'node:test';
import { HEADER_BYTES } from '../../src/wire/frame.js';
import { useAttackBench, on } from './harness.js';

describe('a relay that attacks what the destination sends', { timeout: 60_000 }, () => {
  const bench = useAttackBench();

  test('flips a bit in PREFAULTED: the source refuses it', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(
      on('prefaulted', 0, { do: 'flip', offset: HEADER_BYTES + 5 }, 'to-source'),
    );
    await bench.expectRefused(kv, relay, {
      error: /migration failed: frame seq 0 failed authentication/,
      fired: [['flip', 'prefaulted']],
    });
  });

  test('drops PREFAULTED: the source gives up waiting and never stops', async () => {
    const kv = await bench.startKv();
    const relay = await bench.relay(on('prefaulted', 0, { do: 'drop' }, 'to-source'));
    await bench.expectRefused(kv, relay, {
      error: /migration failed: no answer to PREFAULT within \d+ ms/,
      fired: [['drop', 'prefaulted']],
    });
  });
});
