/**
 * Builds SGX DCAP ECDSA quotes byte by byte from fields, with the offsets written out from Intel's
 * sgx_quote_3.h / sgx_quote_4.h and sgx_report_body_t (deliberately not shared with the parser, so a
 * wrong offset in either shows up as a failed round trip).
 */
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';

export interface QuoteFields {
  version: number;
  attestationKeyType: number;
  /** v4: tee type; v3: the reserved u32 at the same offset. */
  teeType: number;
  qeSvn: number;
  pceSvn: number;
  qeVendorId: Buffer;
  userData: Buffer;
  cpuSvn: Buffer;
  miscSelect: number;
  flags: bigint;
  xfrm: bigint;
  mrEnclave: Buffer;
  mrSigner: Buffer;
  isvProdId: number;
  isvSvn: number;
  configSvn: number;
  reportData: Buffer;
}

export const INTEL_QE_VENDOR_ID = Buffer.from('939a7233f79c4ca9940a0db3957f0607', 'hex');
/** SGX attributes flag bits: INITTED, DEBUG, MODE64BIT. */
export const FLAG_INITTED = 1n;
export const FLAG_DEBUG = 2n;
export const FLAG_MODE64BIT = 4n;

function filled(length: number, first: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (first + i) & 0xff));
}

/** A production (non-debug) SGX v3 quote's fields, every one distinct and non-zero. */
export function sampleFields(overrides: Partial<QuoteFields> = {}): QuoteFields {
  return {
    version: 3,
    attestationKeyType: 2,
    teeType: 0,
    qeSvn: 0x0a0b,
    pceSvn: 0x0c0d,
    qeVendorId: INTEL_QE_VENDOR_ID,
    userData: filled(20, 0x20),
    cpuSvn: filled(16, 0x40),
    miscSelect: 0x01020304,
    flags: FLAG_INITTED | FLAG_MODE64BIT,
    xfrm: 0xe7n,
    mrEnclave: filled(32, 0x60),
    mrSigner: filled(32, 0x90),
    isvProdId: 0x1234,
    isvSvn: 0x5678,
    configSvn: 0x9abc,
    reportData: filled(64, 0xb0),
    ...overrides,
  };
}

/** Header (48 B) and SGX report body (384 B): what the attestation key signs. */
export function buildSignedPart(f: QuoteFields): Buffer {
  const out = Buffer.alloc(432);
  out.writeUInt16LE(f.version, 0);
  out.writeUInt16LE(f.attestationKeyType, 2);
  out.writeUInt32LE(f.teeType, 4);
  out.writeUInt16LE(f.qeSvn, 8);
  out.writeUInt16LE(f.pceSvn, 10);
  f.qeVendorId.copy(out, 12);
  f.userData.copy(out, 28);
  const body = 48;
  f.cpuSvn.copy(out, body + 0);
  out.writeUInt32LE(f.miscSelect, body + 16);
  // body + 20: reserved (12), body + 32: isv_ext_prod_id (16), both left zero
  out.writeBigUInt64LE(f.flags, body + 48);
  out.writeBigUInt64LE(f.xfrm, body + 56);
  f.mrEnclave.copy(out, body + 64);
  // body + 96: reserved (32)
  f.mrSigner.copy(out, body + 128);
  // body + 160: reserved (32), body + 192: config_id (64)
  out.writeUInt16LE(f.isvProdId, body + 256);
  out.writeUInt16LE(f.isvSvn, body + 258);
  out.writeUInt16LE(f.configSvn, body + 260);
  // body + 262: reserved (42), body + 304: isv_family_id (16)
  f.reportData.copy(out, body + 320);
  return out;
}

function u16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16LE(value);
  return out;
}

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(value);
  return out;
}

const PCK_CERT_CHAIN = 5;
const QE_REPORT_CERTIFICATION_DATA = 6;
const FAKE_PCK_CHAIN = Buffer.from(
  '-----BEGIN CERTIFICATE-----\nnot a real PCK chain\n-----END CERTIFICATE-----\n',
);

/** QE report, its signature, QE auth data and certification data: zeros and a fake chain here. */
function qeReportCertificationData(): Buffer {
  const authData = Buffer.alloc(32, 0xaa);
  return Buffer.concat([
    Buffer.alloc(384),
    Buffer.alloc(64),
    u16(authData.length),
    authData,
    u16(PCK_CERT_CHAIN),
    u32(FAKE_PCK_CHAIN.length),
    FAKE_PCK_CHAIN,
  ]);
}

/** The raw X||Y (64 bytes) of a P-256 public key. */
export function rawP256PublicKey(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  return Buffer.concat([Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')]);
}

export function newAttestationKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/**
 * ECDSA signature data laid out as the version says: v3 carries the QE report certification data
 * inline after the key; v4 wraps it as certification data of type 6.
 */
export function buildSignatureData(
  signedPart: Buffer,
  version: number,
  attestationKey = newAttestationKey(),
) {
  const signature = sign('sha256', signedPart, { key: attestationKey.privateKey, dsaEncoding: 'ieee-p1363' });
  const qeData = qeReportCertificationData();
  const certification =
    version === 4 ? Buffer.concat([u16(QE_REPORT_CERTIFICATION_DATA), u32(qeData.length), qeData]) : qeData;
  return Buffer.concat([signature, rawP256PublicKey(attestationKey.publicKey), certification]);
}

/** A whole quote, signed by attestationKey (a fresh one by default) unless signatureData is given. */
export function buildQuote(
  fields: QuoteFields,
  opts: { attestationKey?: ReturnType<typeof newAttestationKey>; signatureData?: Buffer } = {},
): Buffer {
  const signed = buildSignedPart(fields);
  const signatureData = opts.signatureData ?? buildSignatureData(signed, fields.version, opts.attestationKey);
  return Buffer.concat([signed, u32(signatureData.length), signatureData]);
}
