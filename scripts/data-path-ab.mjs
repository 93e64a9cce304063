// The data path's CPU cost without sockets or processes, for A/B work on a busy machine (issue 6):
// per variant (a checkout with a built dist/), seal and digest 256 MiB of heap as the source does
// (sendExtent over every extent, the socket's copy included), then cut the sealed stream into 64 KiB reads and open, install and
// digest it as the destination does (FrameReader, PageInstaller). Variants run interleaved (the order
// reversed every repetition); each side's figure is heap MB per second of this thread's CPU time
// (process.cpuUsage), which a loaded machine disturbs far less than wall time.
//
//   MALLOC_MMAP_THRESHOLD_=33554432 REPS=8 node --expose-gc scripts/data-path-ab.mjs /path/base /path/new
//   VERIFY=0 ... measures without the page-set digest.
import { randomBytes } from 'node:crypto';
const dirs = process.argv.slice(2);
const BYTES = 256 * 2 ** 20;
const variants = [];
for (const d of dirs) {
  const m = async (p) => import(`${d}/dist/src/${p}`);
  variants.push({
    d,
    SecureHeap: (await m('heap/secure-heap.js')).SecureHeap,
    PageBitmap: (await m('heap/page-bitmap.js')).PageBitmap,
    PageSetDigest: (await m('heap/page-set-digest.js')).PageSetDigest,
    seal: await m('crypto/seal.js'),
    frame: await m('wire/frame.js'),
    extentsOf: (await m('migrate/extents.js')).extentsOf,
    sendExtent: (await m('migrate/page-frames.js')).sendExtent,
    PageInstaller: (await m('migrate/page-installer.js')).PageInstaller,
    res: { src: [], dst: [] },
  });
}
const key = randomBytes(32),
  mig = randomBytes(32),
  fill = randomBytes(1 << 20);
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
async function once(v) {
  const src = v.SecureHeap.create(BYTES),
    dst = v.SecureHeap.create(BYTES);
  const pages = src.pageCount,
    all = v.PageBitmap.create(pages);
  all.setRange(0, pages);
  for (let p = 0; p < pages; p += 256) src.rawPages(p, 256).set(fill);
  // The kernel's part of a send: the bytes copied into the socket, then the write is done.
  const wire = Buffer.allocUnsafe(BYTES + BYTES / 64);
  let wired = 0;
  const sink = {
    sealer: new v.seal.Sealer(key, mig),
    channel: {
      send: async (ps, written) => {
        for (const x of ps) wired += wire.set(x, wired) ?? x.byteLength;
        written?.();
      },
    },
  };
  const sd = process.env.VERIFY === '0' ? null : new v.PageSetDigest(pages);
  let t = cpu();
  for (const { first, count } of v.extentsOf(all, src)) await v.sendExtent(sink, src, first, count, 1, sd);
  v.res.src.push(cpu() - t);
  // the kernel's part: the stream re-cut in 64 KiB reads
  const stream = wire.subarray(0, wired);
  // The destination's heap is faulted in before the pages come (prefault).
  for (let p = 0; p < pages; p += 256) dst.rawPages(p, 256).fill(0);
  const reader = new v.frame.FrameReader(),
    opener = new v.seal.Opener(key, mig),
    dd = process.env.VERIFY === '0' ? null : new v.PageSetDigest(pages);
  const inst = new v.PageInstaller(dst, dd, () => {});
  t = cpu();
  for (let o = 0; o < stream.length; o += 65536) {
    reader.push(Buffer.from(stream.subarray(o, o + 65536)));
    for (let f = reader.next(); f; f = reader.next()) inst.install(f, opener, { kind: 'rounds' });
  }
  v.res.dst.push(cpu() - t);
  if (sd && sd.hex() !== dd.hex()) throw new Error('digest mismatch');
}
const reps = Number(process.env.REPS ?? 6);
for (let r = 0; r < reps; r++)
  for (const v of r % 2 ? [...variants].reverse() : variants) {
    await once(v);
    globalThis.gc?.();
  }
const med = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
for (const v of variants)
  console.log(
    v.d.padEnd(22),
    'src',
    (BYTES / 1e6 / (med(v.res.src) / 1000)).toFixed(0),
    'MB/s-cpu',
    'dst',
    (BYTES / 1e6 / (med(v.res.dst) / 1000)).toFixed(0),
    'MB/s-cpu',
    ' src ms',
    v.res.src.map(Math.round).join(' '),
    ' dst ms',
    v.res.dst.map(Math.round).join(' '),
  );
