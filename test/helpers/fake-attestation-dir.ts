/**
 * A stand-in for Gramine's /dev/attestation: a temp directory with plain files. Limitation: a plain
 * file cannot compute a quote when user_report_data is written, so the test writes, beforehand, the
 * quote it expects to be read (offerQuote). GramineTee checks that the quote it reads binds the report
 * data it wrote, so a test that offers the wrong quote fails loudly rather than passing by accident.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export class FakeAttestationDir {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'constmig-attestation-'));

  constructor(attestationType: string) {
    writeFileSync(path.join(this.dir, 'attestation_type'), attestationType);
  }

  /** The quote the next read of `quote` returns. */
  offerQuote(quote: Buffer): void {
    writeFileSync(path.join(this.dir, 'quote'), quote);
  }

  /** What the enclave last wrote to user_report_data. */
  writtenReportData(): Buffer {
    return readFileSync(path.join(this.dir, 'user_report_data'));
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
