import { z } from 'zod';

/**
 * Imported first by the enclave's entry points. zod compiles an object schema into a function the
 * first time it parses with it, and a destination parses START for the first time in the blackout:
 * 2-4 ms of downtime at 8 GiB (profiled, issue 6). Control messages are few and small, so parsing them
 * without compiling costs microseconds, every time. zod reads the setting when a schema is built,
 * hence before any other import.
 */
z.config({ jitless: true });
