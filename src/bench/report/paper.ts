/**
 * The paper's own figures, printed next to ours: ConstMig reports 77-96 % less downtime than MigSGX
 * (stop-and-copy) on its SGX application suite, and 98 % less on a 20 GB microbenchmark.
 */
export const PAPER_REDUCTION_BAND = [77, 96] as const;
export const PAPER_MICROBENCHMARK_REDUCTION = 98;

export const PAPER_CLAIM = `the ConstMig paper reports ${PAPER_REDUCTION_BAND[0]}-${PAPER_REDUCTION_BAND[1]} % less downtime than MigSGX (stop-and-copy) on its SGX application suite, and ${PAPER_MICROBENCHMARK_REDUCTION} % less on a 20 GB microbenchmark`;
