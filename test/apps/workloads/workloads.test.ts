import { WORKLOAD_KINDS } from '../../../src/apps/registry.js';
import { workloadCompliance } from './workload-compliance.js';

for (const kind of WORKLOAD_KINDS) workloadCompliance(kind);
