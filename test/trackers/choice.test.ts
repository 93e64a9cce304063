import assert from 'node:assert/strict';
import { test } from 'node:test';
import { uffdAvailability } from '../../src/native/uffd.js';
import { chooseTracker, missCatcherFor, TrackerUnavailableError } from '../../src/trackers/choice.js';

const trustedKernel = { kernelInTcb: true, describe: () => 'sim (simulated enclave)' };
const sgx = { kernelInTcb: false, describe: () => 'gramine-sgx' };
const uffd = uffdAvailability();

test('without post-copy nothing is tracked, and the heap catches nothing', () => {
  const choice = chooseTracker('none', trustedKernel);
  assert.equal(choice.kind, null);
  assert.equal(missCatcherFor(choice.kind), 'none');
});

test('--tracker access is taken as asked, with present checks', () => {
  assert.deepEqual(chooseTracker('access', sgx), { kind: 'access', reason: 'asked for' });
  assert.equal(missCatcherFor('access'), 'present-checks');
});

test('where the kernel is outside the TEE the Fault Tracker is refused, and auto says why it took access', () => {
  assert.throws(
    () => chooseTracker('fault', sgx),
    (err: Error) =>
      err instanceof TrackerUnavailableError &&
      /under gramine-sgx the kernel is outside the TEE; use --tracker access/.test(err.message),
  );
  const auto = chooseTracker('auto', sgx);
  assert.equal(auto.kind, 'access');
  assert.match(auto.reason, /the kernel is outside the TEE/);
});

test('with a trusted kernel, auto and fault follow userfaultfd availability', () => {
  const auto = chooseTracker('auto', trustedKernel);
  if (uffd.ok) {
    assert.equal(auto.kind, 'fault');
    assert.match(auto.reason, new RegExp(`via ${uffd.via}`));
    assert.equal(chooseTracker('fault', trustedKernel).kind, 'fault');
    assert.equal(missCatcherFor('fault'), 'userfaultfd');
  } else {
    assert.deepEqual(auto, { kind: 'access', reason: uffd.reason });
    assert.throws(() => chooseTracker('fault', trustedKernel), TrackerUnavailableError);
  }
});
