import { z } from 'zod';

/**
 * Canonical base64 of at most `maxBytes` bytes: one value has one spelling, because transcripts and
 * signatures cover the text, and the bound is checked before anything is decoded at length.
 */
export const canonicalBase64 = (maxBytes: number) =>
  z
    .string()
    .max(4 * Math.ceil(maxBytes / 3))
    .regex(/^[A-Za-z0-9+/]+={0,2}$/)
    .refine((text) => Buffer.from(text, 'base64').toString('base64') === text, 'not canonical base64')
    .refine((text) => Buffer.from(text, 'base64').length <= maxBytes, `longer than ${maxBytes} bytes`);
