import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { javascriptBitmapKernels, nativeBitmapKernels } from '../../src/heap/bitmap-kernels.js';
import { loadBitmapAddon } from '../../src/native/bitmap.js';
import { bitmapKernelsCompliance } from './bitmap-kernels-compliance.js';

const load = loadBitmapAddon();
if (!load.ok) console.log(`native bitmap pass tests skipped: ${load.reason}`);

describe('bitmap passes: JavaScript', () => bitmapKernelsCompliance(javascriptBitmapKernels));

describe('bitmap passes: native addon', { skip: load.ok ? false : load.reason }, () => {
  if (load.ok) bitmapKernelsCompliance(nativeBitmapKernels(load.addon));
});

describe('bitmap passes: the choice', () => {
  const choiceIn = (env: NodeJS.ProcessEnv): { name: string; why: string } => {
    const module = fileURLToPath(new URL('../../src/heap/bitmap-kernels.js', import.meta.url));
    const script = `import(${JSON.stringify(module)}).then((m) => console.log(JSON.stringify(m.bitmapKernelsChoice())))`;
    return JSON.parse(
      execFileSync(process.execPath, ['-e', script], { env: { ...process.env, ...env } }).toString(),
    );
  };

  test('CONSTMIG_BITMAP=js forces the JavaScript passes, and says so', () => {
    assert.deepEqual(choiceIn({ CONSTMIG_BITMAP: 'js' }), { name: 'javascript', why: 'CONSTMIG_BITMAP=js' });
  });

  test('otherwise the addon is used where it loads, and the reason names it either way', () => {
    const choice = choiceIn({ CONSTMIG_BITMAP: '' });
    if (load.ok) assert.deepEqual(choice, { name: 'native', why: 'the page-bitmap addon loaded' });
    else assert.deepEqual(choice, { name: 'javascript', why: load.reason });
  });

  test('a missing addon falls back to JavaScript with the path in the reason', () => {
    const choice = choiceIn({
      CONSTMIG_BITMAP: '',
      CONSTMIG_BITMAP_ADDON: '/nonexistent/constmig_bitmap.node',
    });
    assert.equal(choice.name, 'javascript');
    assert.match(choice.why, /page-bitmap addon is missing at \/nonexistent\/constmig_bitmap\.node/);
  });
});
