/**
 * Parser for Intel SGX DCAP ECDSA quotes, versions 3 and 4 (layout of Intel's sgx_quote_3.h /
 * sgx_quote_4.h and of the DCAP QuoteVerification library). It checks structure only: whether the
 * quote was signed by genuine hardware is the job of a QuoteVerifier.
 */
import { AttestationError } from './backend.js';

export interface SgxReportBody {
  /** Hex, the CPU security version the report was made under. */
  cpuSvn: string;
  miscSelect: number;
  attributes: { flags: bigint; xfrm: bigint };
  /** The enclave was built debuggable: its memory can be read by whoever runs it. */
  debug: boolean;
  /** Hex SHA-256 of the enclave's initial contents (MRENCLAVE). */
  mrEnclave: string;
  /** Hex SHA-256 of the key that signed the enclave (MRSIGNER). */
  mrSigner: string;
  isvProdId: number;
  isvSvn: number;
  configSvn: number;
  reportData: Buffer;
}

export interface SgxQuote {
  version: 3 | 4;
  attestationKeyType: number;
  teeType: number;
  qeSvn: number;
  pceSvn: number;
  /** Hex; Intel's Quoting Enclave is 939a7233f79c4ca9940a0db3957f0607. */
  qeVendorId: string;
  body: SgxReportBody;
  /** Header and report body: the bytes the attestation key signs. */
  signedBytes: Buffer;
  signatureData: Buffer;
}

export class QuoteFormatError extends AttestationError {
  override name = 'QuoteFormatError';
}

const HEADER_BYTES = 48;
const REPORT_BODY_BYTES = 384;
const SIGNED_BYTES = HEADER_BYTES + REPORT_BODY_BYTES;
const SIGNATURE_LENGTH_BYTES = 4;
const MIN_QUOTE_BYTES = SIGNED_BYTES + SIGNATURE_LENGTH_BYTES;
/** An ECDSA-P256 quote's signature data starts with the signature and the raw attestation key. */
const MIN_ECDSA_SIGNATURE_DATA_BYTES = 64 + 64;

const ECDSA_P256_KEY_TYPE = 2;
const TEE_TYPE_SGX = 0x00000000;
const TEE_TYPE_TDX = 0x00000081;
const DEBUG_FLAG = 1n << 1n;

/** Offsets inside the 48-byte header. */
const HEADER = {
  version: 0,
  attestationKeyType: 2,
  teeType: 4, // v3: reserved, and Intel's verifier requires it to be 0 (SGX)
  qeSvn: 8,
  pceSvn: 10,
  qeVendorId: 12,
} as const;

/** Offsets inside the 384-byte SGX report body (sgx_report_body_t). */
const BODY = {
  cpuSvn: 0,
  miscSelect: 16,
  flags: 48,
  xfrm: 56,
  mrEnclave: 64,
  mrSigner: 128,
  isvProdId: 256,
  isvSvn: 258,
  configSvn: 260,
  reportData: 320,
} as const;

function hex(bytes: Buffer, offset: number, length: number): string {
  return bytes.subarray(offset, offset + length).toString('hex');
}

function checkHeader(bytes: Buffer): { version: 3 | 4; teeType: number } {
  const version = bytes.readUInt16LE(HEADER.version);
  if (version !== 3 && version !== 4) {
    throw new QuoteFormatError(`unsupported quote version ${version} (expected 3 or 4)`);
  }
  const keyType = bytes.readUInt16LE(HEADER.attestationKeyType);
  if (keyType !== ECDSA_P256_KEY_TYPE) {
    throw new QuoteFormatError(
      `unsupported attestation key type ${keyType} (expected ${ECDSA_P256_KEY_TYPE}, ECDSA-256-with-P-256)`,
    );
  }
  const teeType = bytes.readUInt32LE(HEADER.teeType);
  if (teeType === TEE_TYPE_TDX) {
    throw new QuoteFormatError('quote is a TDX quote (tee type 0x81), not an SGX enclave quote');
  }
  if (teeType !== TEE_TYPE_SGX) {
    const field = version === 3 ? 'reserved field' : 'tee type';
    throw new QuoteFormatError(`quote v${version} ${field} is 0x${teeType.toString(16)} (expected 0, SGX)`);
  }
  return { version, teeType };
}

function parseReportBody(bytes: Buffer): SgxReportBody {
  const flags = bytes.readBigUInt64LE(BODY.flags);
  return {
    cpuSvn: hex(bytes, BODY.cpuSvn, 16),
    miscSelect: bytes.readUInt32LE(BODY.miscSelect),
    attributes: { flags, xfrm: bytes.readBigUInt64LE(BODY.xfrm) },
    debug: (flags & DEBUG_FLAG) !== 0n,
    mrEnclave: hex(bytes, BODY.mrEnclave, 32),
    mrSigner: hex(bytes, BODY.mrSigner, 32),
    isvProdId: bytes.readUInt16LE(BODY.isvProdId),
    isvSvn: bytes.readUInt16LE(BODY.isvSvn),
    configSvn: bytes.readUInt16LE(BODY.configSvn),
    reportData: Buffer.from(bytes.subarray(BODY.reportData, BODY.reportData + 64)),
  };
}

function signatureDataOf(bytes: Buffer): Buffer {
  const declared = bytes.readUInt32LE(SIGNED_BYTES);
  const available = bytes.length - MIN_QUOTE_BYTES;
  if (declared > available) {
    throw new QuoteFormatError(
      `quote signature data length ${declared} exceeds the ${available} bytes after the report body`,
    );
  }
  if (declared < available) {
    throw new QuoteFormatError(`quote has ${available - declared} trailing bytes after the signature data`);
  }
  if (declared < MIN_ECDSA_SIGNATURE_DATA_BYTES) {
    throw new QuoteFormatError(
      `quote signature data is ${declared} bytes, shorter than an ECDSA signature and key (${MIN_ECDSA_SIGNATURE_DATA_BYTES})`,
    );
  }
  return Buffer.from(bytes.subarray(MIN_QUOTE_BYTES));
}

/** Parses a whole quote (no trailing bytes); every field is copied, so `bytes` may be reused. */
export function parseSgxQuote(bytes: Buffer): SgxQuote {
  if (bytes.length < MIN_QUOTE_BYTES) {
    throw new QuoteFormatError(
      `quote is ${bytes.length} bytes, too short for header, report body and signature length (${MIN_QUOTE_BYTES})`,
    );
  }
  const { version, teeType } = checkHeader(bytes);
  return {
    version,
    attestationKeyType: ECDSA_P256_KEY_TYPE,
    teeType,
    qeSvn: bytes.readUInt16LE(HEADER.qeSvn),
    pceSvn: bytes.readUInt16LE(HEADER.pceSvn),
    qeVendorId: hex(bytes, HEADER.qeVendorId, 16),
    body: parseReportBody(bytes.subarray(HEADER_BYTES, SIGNED_BYTES)),
    signedBytes: Buffer.from(bytes.subarray(0, SIGNED_BYTES)),
    signatureData: signatureDataOf(bytes),
  };
}
